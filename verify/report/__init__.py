"""Reporting: the markdown report, CSVs, JUnit and the summary, charts, What to ship, the results files a shard
writes and the merge of shards. Pure functions of the results but for the writers of files."""
