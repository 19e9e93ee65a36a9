"""The history database: one SQLite file (default `ARTIFACTS/history.sqlite`), written by every verify run and
every merge of shards.

- A run is written in one transaction: a run killed on the way leaves no trace, and the runs before it intact.
- Writers wait for each other (SQLite's lock, up to BUSY_SECONDS): shards on one machine, or CI jobs on a shared
  disk, are all recorded. The rollback journal is kept (not WAL, whose shared memory fails on network disks).
- A file that is not this history (another SQLite database, a corrupt one, not SQLite at all) or that a newer
  workbench wrote (a newer schema) is a HistoryError naming the file; it is never changed or replaced.
"""
from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from converter.core.errors import WorkbenchError

from ..report.plain import from_plain, to_plain
from .records import RUN, MERGED, RunRecord

SCHEMA = 1
APPLICATION_ID = 0x50574231  # 'PWB1': this workbench's history, in the SQLite header
BUSY_SECONDS = 120.0
FILE_NAME = "history.sqlite"
LATEST = ("last", "last-pass")  # the run references besides ids and results folders (each with ~N: N before)

# runs: seq is the order they were recorded in, record the whole RunRecord as JSON; cells: one row per cell of a
# run, its worst output and its first timed batch (what `history` shows)
TABLES = """
CREATE TABLE runs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    date TEXT NOT NULL,
    verdict TEXT NOT NULL,
    passed INTEGER NOT NULL,
    commit_id TEXT NOT NULL,
    zoo_sha256 TEXT NOT NULL,
    machine TEXT NOT NULL,
    record TEXT NOT NULL
);
CREATE TABLE cells (
    seq INTEGER NOT NULL REFERENCES runs(seq),
    key TEXT NOT NULL,
    model TEXT NOT NULL,
    runtime TEXT NOT NULL,
    artifact TEXT NOT NULL,
    device TEXT NOT NULL,
    precision TEXT NOT NULL,
    status TEXT NOT NULL,
    max_abs_diff REAL,
    noise_units REAL,
    p50_ms REAL,
    batch INTEGER,
    PRIMARY KEY (seq, key)
);
CREATE INDEX cells_by_model ON cells (model, key, seq);
"""


class HistoryError(WorkbenchError):
    """A history file that cannot be used as it is (a usage error: exit code 2); it is left untouched."""


class NoSuchRun(HistoryError):
    """The history holds no run the reference names (none yet, or none passing)."""


@dataclass(frozen=True)
class CellPoint:
    """One cell in one recorded run: a point of its history."""

    seq: int
    run_id: str
    date: str
    key: str
    model: str
    runtime: str
    artifact: str
    device: str
    precision: str
    status: str
    max_abs_diff: float | None
    noise_units: float | None
    p50_ms: float | None
    batch: int | None


def history_path(location: str | Path) -> Path:
    """The file a `--history` value names: a path, or an `sqlite:///path` URL. Other URLs are a HistoryError."""
    text = str(location)
    if "://" in text:
        scheme, _, rest = text.partition("://")
        if scheme != "sqlite" or not rest.startswith("/"):
            raise HistoryError(f"--history {text}: only a file path or an sqlite:///path URL is supported "
                               "(a server database is not)")
        return Path(rest[1:] if rest.startswith("//") else rest)
    return Path(text)


class HistoryStore:
    """The history in one SQLite file. Opening checks it (HistoryError when it is not ours or is newer); a new
    file is made on the first record()."""

    def __init__(self, location: str | Path, writing: bool = False):
        """`writing`: the caller will record(): the file (or its folder) must take a write, and its lock is taken
        and let go at once (waiting for a writer that holds it), so that a run that could not be recorded does not
        start."""
        self.path = history_path(location)
        with self._reading():  # checked now: a history that cannot be used stops a run before it starts
            pass
        if writing and self.path.exists():
            with self._connect() as connection:
                connection.execute("BEGIN IMMEDIATE")
                try:  # a write that changes nothing, and is rolled back: a read-only file refuses it
                    version = connection.execute("PRAGMA user_version").fetchone()[0]
                    connection.execute(f"PRAGMA user_version = {int(version)}")
                finally:
                    connection.execute("ROLLBACK")
        elif writing:  # made on the first record(), in a folder made then: nothing is made before the run
            folder = next(parent for parent in self.path.parents if parent.exists())
            if not os.access(folder, os.W_OK):
                raise HistoryError(f"{self.path}: cannot be made: {folder} is not writable")

    def record(self, run: RunRecord) -> int:
        """Add a run, all of it or nothing; returns its sequence number. A run id already recorded is a
        HistoryError (nothing is replaced)."""
        plain = json.dumps(to_plain(run, {}), default=str)
        with self._connect(create=True) as connection:
            try:
                connection.execute("BEGIN IMMEDIATE")  # the write lock now: a concurrent writer waits its turn
                if not self._check(connection):
                    for statement in filter(str.strip, TABLES.split(";")):  # in this transaction
                        connection.execute(statement)
                    connection.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                    connection.execute(f"PRAGMA user_version = {SCHEMA}")
                if connection.execute("SELECT 1 FROM runs WHERE run_id = ?", (run.run_id,)).fetchone():
                    raise HistoryError(f"{self.path}: run {run.run_id} is already recorded")
                seq = connection.execute(
                    "INSERT INTO runs (run_id, kind, date, verdict, passed, commit_id, zoo_sha256, machine, record) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (run.run_id, run.kind, run.date, run.verdict, int(run.passed), run.commit, run.zoo_sha256,
                     run.machine, plain)).lastrowid
                connection.executemany(
                    "INSERT INTO cells VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [(seq, cell.key, cell.model, cell.runtime, cell.artifact, cell.device, cell.precision,
                      cell.status, worst.max_abs_diff if (worst := cell.worst) else None,
                      worst.noise_units if worst else None,
                      cell.timings[0].p50_ms if cell.timings else None,
                      cell.timings[0].batch if cell.timings else None) for cell in run.cells])
                connection.execute("COMMIT")
            except BaseException:
                if connection.in_transaction:
                    connection.execute("ROLLBACK")
                raise
        return seq

    def runs(self, limit: int | None = None) -> list[tuple[int, str, str, str, str, str]]:
        """(seq, run id, kind, date, verdict, machine) of the recorded runs, oldest first (the last `limit`)."""
        with self._reading() as connection:
            if connection is None:
                return []
            rows = connection.execute("SELECT seq, run_id, kind, date, verdict, machine FROM runs ORDER BY seq DESC"
                                      + (f" LIMIT {int(limit)}" if limit else "")).fetchall()
        return rows[::-1]

    def load(self, reference: str) -> RunRecord:
        """A recorded run by its id (or a unique start of it), `last` (the last run or merge, not a shard) or
        `last-pass` (the last one that passed), each with `~N` for the Nth before it (`last~1`: the one before the
        last); HistoryError when there is none."""
        latest, tilde, back = reference.partition("~")
        if latest in LATEST and back.isdigit() and int(back) > 1_000_000_000:
            raise NoSuchRun(f"{self.path}: no run {reference!r}")
        with self._reading() as connection:
            if connection is None:
                raise NoSuchRun(f"{self.path}: no run recorded yet (a verify run records one)")
            kinds = f"kind IN ('{RUN}', '{MERGED}')"
            if latest in LATEST and (not tilde or back.isdigit()):
                passed = " AND passed = 1" if latest == "last-pass" else ""
                row = connection.execute(f"SELECT record FROM runs WHERE {kinds}{passed} ORDER BY seq DESC "
                                         "LIMIT 1 OFFSET ?", (int(back or 0),)).fetchone()
            else:
                rows = connection.execute("SELECT record FROM runs WHERE run_id = ?", (reference,)).fetchall() or \
                    connection.execute("SELECT record FROM runs WHERE substr(run_id, 1, ?) = ? ORDER BY seq",
                                       (len(reference), reference)).fetchall()
                if len(rows) > 1:
                    raise HistoryError(f"{self.path}: {len(rows)} runs start with {reference!r}: give more of the id")
                row = rows[0] if rows else None
        if row is None:
            what = (f"no run {reference!r}" if latest not in LATEST else
                    f"no {'passing ' if latest == 'last-pass' else ''}run recorded" + (f" {back} before the last"
                                                                                        if back else ""))
            raise NoSuchRun(f"{self.path}: {what} (`python -m verify history` lists the runs)")
        return self._decode(row[0])

    def cell_points(self, model: str | None = None, limit: int | None = None) -> list[CellPoint]:
        """Every cell of the last `limit` runs and merges (of one model), oldest first."""
        with self._reading() as connection:
            if connection is None:
                return []
            seqs = [row[0] for row in connection.execute(
                f"SELECT seq FROM runs WHERE kind IN ('{RUN}', '{MERGED}') ORDER BY seq DESC"
                + (f" LIMIT {int(limit)}" if limit else "")).fetchall()]
            if not seqs:
                return []
            rows = connection.execute(
                "SELECT runs.seq, run_id, date, key, model, runtime, artifact, device, precision, status, "
                "max_abs_diff, noise_units, p50_ms, batch FROM cells JOIN runs USING (seq) "
                f"WHERE runs.seq >= ? AND kind IN ('{RUN}', '{MERGED}') {'AND model = ?' if model else ''} "
                "ORDER BY runs.seq, key",
                (min(seqs), model) if model else (min(seqs),)).fetchall()
        return [CellPoint(*row) for row in rows]

    def _decode(self, text: str) -> RunRecord:
        try:
            return from_plain(RunRecord, json.loads(text), {})
        except (ValueError, TypeError, KeyError) as exc:
            raise HistoryError(f"{self.path}: a run record this workbench cannot read: {exc}") from None

    @contextmanager
    def _connect(self, create: bool = False) -> Iterator[sqlite3.Connection]:
        """A connection to the file; every SQLite or file error on the way, a HistoryError naming the file."""
        try:
            if create:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            elif not self.path.exists():
                raise HistoryError(f"{self.path}: no such file")
            connection = sqlite3.connect(self.path, timeout=BUSY_SECONDS, isolation_level=None)
        except (sqlite3.Error, OSError) as exc:
            raise HistoryError(f"{self.path}: cannot be opened: {exc}") from None
        try:
            yield connection
        except sqlite3.OperationalError as exc:
            raise HistoryError(_failure(self.path, exc)) from None
        except sqlite3.DatabaseError as exc:
            raise HistoryError(f"{self.path}: a damaged SQLite database ({exc}); it is left as it is (move it away, "
                               "or give another --history)") from None
        except OSError as exc:
            raise HistoryError(f"{self.path}: {exc}") from None
        finally:
            connection.close()

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection | None]:
        """A connection to a checked history, or None where there is none yet (no file, or an empty one)."""
        if not self.path.exists():
            yield None
            return
        with self._connect() as connection:
            yield connection if self._check(connection) else None

    def _check(self, connection: sqlite3.Connection) -> bool:
        """Whether the file holds this history (False: an empty file, to be made); HistoryError otherwise."""
        try:
            application, version = (connection.execute(f"PRAGMA {name}").fetchone()[0]
                                    for name in ("application_id", "user_version"))
            tables = connection.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        except sqlite3.OperationalError as exc:
            raise HistoryError(_failure(self.path, exc)) from None
        except sqlite3.DatabaseError as exc:
            raise HistoryError(f"{self.path}: not a readable SQLite database ({exc}): corrupt, or another kind of "
                               "file; it is left as it is (move it away, or give another --history)") from None
        if application == 0 and version == 0 and tables == 0:
            return False
        if application != APPLICATION_ID:
            raise HistoryError(f"{self.path}: another SQLite database, not a Parity Workbench history; it is left "
                               "as it is (give another --history)")
        if version > SCHEMA:
            raise HistoryError(f"{self.path}: written by a newer Parity Workbench (history schema {version}; this "
                               f"one reads up to {SCHEMA}); it is left as it is: upgrade the workbench to use it")
        return True


def _failure(path: Path, exc: sqlite3.OperationalError) -> str:
    """An SQLite operational error in words: a lock held too long, a read-only or full disk, or what it says."""
    text = str(exc)
    if "locked" in text or "busy" in text:
        return (f"{path}: another run held its lock for over {BUSY_SECONDS:g} s ({text}); nothing was changed, run "
                "again")
    return f"{path}: {text}; nothing was changed"
