"""The run history: every verify run (and every merge of shards) recorded with its provenance in one SQLite
database, and what two runs of it differ in. `records` turns a run into plain data, `store` keeps it, `diff`
compares two runs and `tables` shows them: each testable without a model."""
