"""The run history (verify.history): recording runs atomically and concurrently, refusing files that are not ours
or newer, diffs between runs, the performance gate against a baseline, and the noise floor's tolerances on a real
converted model (a 0.05% weight change: inside the hand tolerance, named by diff, blocked by `tolerance: auto`)."""
from __future__ import annotations

import multiprocessing
import os
import signal
import sqlite3
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.conftest import convert_tiny_zoo, private_copy, tiny_entry
from verify.runners.onnxruntime_runner import OnnxRuntimeRunner
from verify.__main__ import main
from verify.history.diff import diff_runs
from verify.history.records import RUN, SHARD, CellRecord, ModelRecord, OutputRecord, RunRecord, TimingRecord
from verify.history.runs import baseline_regressions
from verify.history.store import HistoryError, HistoryStore
from verify.judge.noise import FAR_ABOVE, NoiseFloor, derived_limits, noise_floor, noise_units, reference_floors

KEY = "m/onnx/onnxruntime@cpu"


def record(run_id: str, passed: bool = True, units: float = 1.2, p50: float = 10.0, kind: str = RUN,
           machine: str = "cpu x, 2 threads", tools: dict | None = None, status: str = "PASS",
           stable: bool = True, reference: tuple = (1.0, -2.0, 3.0)) -> RunRecord:
    timing = TimingRecord(1, p50, p50 * 0.98, p50 * 1.02, stable, 20)
    cell = CellRecord(KEY, "m", "onnx", "onnxruntime", "cpu", "fp32", True, status, "detail",
                      {"logits": OutputRecord(status, units * 1e-6, units * 1e-6, 0.99999, units)}, [timing])
    floor = NoiseFloor(1e-6, 3e-6, 8, {"float64": 1e-6})
    return RunRecord(run_id, kind, "2026-12-04T05:00:00", "PASS" if passed else "BLOCKED", passed, "abc123", "f00d",
                     machine, tools or {"torch": "2.14.1", "onnxruntime": "1.23.0"}, {"cpu": "cpu x"}, {"command": "c"},
                     [ModelRecord("m", "classification", None, 8, {"logits": floor}, "in", {"logits": list(reference)})],
                     [cell])


# ---- the store ----

def test_runs_are_found_by_id_last_and_last_pass_and_shards_are_not_last(tmp_path):
    store = HistoryStore(tmp_path / "h.sqlite")
    for run in (record("20261204T0500Z-aa"), record("20261204T0501Z-bb", passed=False),
                record("20261204T0502Z-cc", kind=SHARD)):
        store.record(run)
    assert store.load("last").run_id == "20261204T0501Z-bb"
    assert store.load("last-pass").run_id == "20261204T0500Z-aa"
    assert store.load("20261204T0502").kind == SHARD  # a unique start of an id
    assert store.load("last~1").run_id == "20261204T0500Z-aa" and store.load("last-pass~0").run_id == "20261204T0500Z-aa"
    with pytest.raises(HistoryError, match="no passing run recorded 1 before the last"):
        store.load("last-pass~1")
    with pytest.raises(HistoryError, match="3 runs start with"):
        store.load("2026")
    with pytest.raises(HistoryError, match="no run 'nope'"):
        store.load("nope")
    with pytest.raises(HistoryError, match="already recorded"):
        store.record(record("20261204T0500Z-aa"))
    loaded = store.load("last-pass")
    assert loaded == record("20261204T0500Z-aa")  # every field comes back as it went in
    assert [p.run_id for p in store.cell_points("m")] == ["20261204T0500Z-aa", "20261204T0501Z-bb"]
    assert store.cell_points("other") == []


def _write_runs(path: str, prefix: str, count: int) -> None:
    store = HistoryStore(path)
    for i in range(count):
        store.record(record(f"{prefix}-{i:02d}"))


def test_writers_wait_for_each_other_and_are_all_recorded(tmp_path):
    """Two writers start while a third holds the history's write lock: they wait for it, and every run is kept."""
    path = tmp_path / "shared" / "h.sqlite"
    HistoryStore(path).record(record("first"))
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    context = multiprocessing.get_context("spawn")
    writers = [context.Process(target=_write_runs, args=(str(path), prefix, 10)) for prefix in ("ci-a", "ci-b")]
    for writer in writers:
        writer.start()
    time.sleep(1.5)  # both are started and waiting on the lock
    assert all(writer.is_alive() for writer in writers)
    holder.execute("COMMIT")
    holder.close()
    for writer in writers:
        writer.join(120)
        assert writer.exitcode == 0
    ids = {run_id for _, run_id, *_ in HistoryStore(path).runs()}
    assert ids == {"first"} | {f"{prefix}-{i:02d}" for prefix in ("ci-a", "ci-b") for i in range(10)}


def _killed_while_recording(path: str) -> None:
    """Records a run, but the process is killed after its run row is written and before its cells are."""
    store = HistoryStore(path)

    class Dying(sqlite3.Connection):
        def executemany(self, *args, **kwargs):
            os.kill(os.getpid(), signal.SIGKILL)

    real = sqlite3.connect
    sqlite3.connect = lambda *a, **k: real(*a, factory=Dying, **k)
    store.record(record("half"))


def test_a_run_killed_while_it_is_recorded_leaves_no_half_run(tmp_path):
    path = tmp_path / "h.sqlite"
    HistoryStore(path).record(record("earlier"))
    process = multiprocessing.get_context("spawn").Process(target=_killed_while_recording, args=(str(path),))
    process.start()
    process.join(60)
    assert process.exitcode == -signal.SIGKILL
    store = HistoryStore(path)
    assert [run_id for _, run_id, *_ in store.runs()] == ["earlier"]
    assert store.load("last") == record("earlier")
    with sqlite3.connect(path) as connection:
        assert connection.execute("SELECT count(*) FROM cells").fetchone()[0] == 1
    store.record(record("after"))  # and the history takes the next run
    assert store.load("last").run_id == "after"


@pytest.mark.parametrize("damage, message", [
    ("newer", "written by a newer Parity Workbench (history schema 99; this one reads up to 1)"),
    ("corrupt", "not a readable SQLite database"),
    ("foreign", "another SQLite database, not a Parity Workbench history"),
])
def test_a_newer_corrupt_or_foreign_history_is_one_line_and_left_as_it_is(tmp_path, capsys, damage, message):
    path = tmp_path / "h.sqlite"
    if damage == "corrupt":
        HistoryStore(path).record(record("one"))
        path.write_bytes(path.read_bytes()[:100] + b"\x00garbage" * 64)
    elif damage == "newer":
        HistoryStore(path).record(record("one"))
        with sqlite3.connect(path) as connection:
            connection.execute("PRAGMA user_version = 99")
    else:
        with sqlite3.connect(path) as connection:
            connection.execute("CREATE TABLE notes (text TEXT)")
    before = path.read_bytes()
    for argv in (["history", "--history", str(path)], ["diff", "last", "last", "--history", str(path)],
                 ["--report", str(tmp_path / "r"), "--artifacts", str(tmp_path / "none"), "--history", str(path)]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0] and str(path) in err[0], err
    assert path.read_bytes() == before
    assert not (tmp_path / "r" / "report.md").exists()  # refused before the run, not after it


def test_an_empty_damaged_or_read_only_history_is_one_line(tmp_path, capsys):
    empty = tmp_path / "empty.sqlite"
    empty.touch()  # an empty file: no history yet, and the first run makes it one
    assert main(["history", "--history", str(empty)]) == 2
    assert "no run recorded yet" in capsys.readouterr().err
    HistoryStore(empty).record(record("one"))
    assert HistoryStore(empty).load("last").run_id == "one"
    deep = tmp_path / "deep.sqlite"  # a header that reads, pages further in that do not
    store = HistoryStore(deep)
    for i in range(30):
        store.record(record(f"run-{i}"))
    data = bytearray(deep.read_bytes())
    data[8192:] = b"\xff" * (len(data) - 8192)
    deep.write_bytes(bytes(data))
    for argv in (["history", "--history", str(deep)], ["diff", "last", "last~1", "--history", str(deep)]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and str(deep) in err[0] and "left as it is" in err[0], err


def test_a_read_only_history_or_a_held_lock_stops_the_run_before_it_starts(tmp_path, monkeypatch):
    path = tmp_path / "h.sqlite"
    HistoryStore(path).record(record("one"))
    real = sqlite3.connect  # read-only as the file system would make it (a chmod does not stop root)
    monkeypatch.setattr(sqlite3, "connect", lambda file, **kw: real(f"file:{file}?mode=ro", uri=True, **kw))
    with pytest.raises(HistoryError, match=r"h.sqlite: attempt to write a readonly database; nothing was changed"):
        HistoryStore(path, writing=True)
    monkeypatch.setattr(sqlite3, "connect", real)
    monkeypatch.setattr("verify.history.store.BUSY_SECONDS", 0.2)
    holder = real(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(HistoryError, match="another run held its lock for over 0.2 s"):
            HistoryStore(path, writing=True)
        assert HistoryStore(path).load("last").run_id == "one"  # a reader is not stopped by a writer
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    HistoryStore(path, writing=True).record(record("two"))
    nowhere = tmp_path / "ro"
    nowhere.mkdir()
    monkeypatch.setattr(os, "access", lambda folder, mode: Path(folder) != nowhere)
    with pytest.raises(HistoryError, match="cannot be made: .* is not writable"):
        HistoryStore(nowhere / "sub" / "h.sqlite", writing=True)
    assert not (nowhere / "sub").exists()  # nothing made before the run


def test_run_references(tmp_path):
    store = HistoryStore(tmp_path / "h.sqlite")
    for run_id in ("Run-A1", "run-b1"):
        store.record(record(run_id))
    assert store.load("Run").run_id == "Run-A1" and store.load("run").run_id == "run-b1"  # case-sensitive
    for reference in ("last~", "last~99999999999999999999", "last~x"):
        with pytest.raises(HistoryError):
            store.load(reference)


def test_history_urls(tmp_path):
    assert HistoryStore(f"sqlite:///{tmp_path}/h.sqlite").path == tmp_path / "h.sqlite"
    with pytest.raises(HistoryError, match="only a file path or an sqlite:///path URL"):
        HistoryStore("postgresql://ci@db/parity")


# ---- diffs and the baseline gate: pure ----

def test_diff_names_status_drift_slowdown_and_tool_versions():
    before = record("a")
    after = record("b", units=400.0, p50=13.0, tools={"torch": "2.14.1", "onnxruntime": "1.24.0"}, status="FAIL")
    diff = diff_runs(before, after)
    assert [(c.key, c.before, c.after) for c in diff.status] == [(KEY, "PASS", "FAIL")]
    assert [(d.key, d.output, d.units_before, d.units_after) for d in diff.drift] == [(KEY, "logits", 1.2, 400.0)]
    assert [(c.batch, c.p50_before, c.p50_after) for c in diff.slowdown] == [(1, 10.0, 13.0)]
    assert diff.tools == {"onnxruntime": ("1.23.0", "1.24.0")}
    assert not diff.reference_changed  # the same reference answer
    moved = diff_runs(before, record("g", reference=(1.0, -2.0, 3.001)))  # 0.001 is hundreds of floors
    assert len(moved.reference_changed) == 1 and moved.reference_changed[0].startswith("m 'logits' (")
    assert not diff_runs(before, record("h", reference=(1.0, -2.0, 3.0 + 1e-6))).reference_changed  # rounding
    assert diff.failing(("drift", "slowdown", "status")) == ["drift", "slowdown", "status"]
    same = diff_runs(before, record("c", units=3.0, p50=10.1))  # within 10 floors; inside both intervals
    assert not same.drift and not same.slowdown and not same.status and same.failing(("drift", "slowdown")) == []
    elsewhere = diff_runs(before, record("d", p50=30.0, machine="cpu y, 2 threads"))
    assert not elsewhere.slowdown and "another machine" in elsewhere.timings_compared
    assert elsewhere.failing(("slowdown",)) == [f"slowdown not checked ({elsewhere.timings_compared})"]
    other_batch = record("e", p50=30.0)
    other_batch.cells[0].timings[0] = TimingRecord(8, 30.0, 29.0, 31.0, True, 20)
    unmatched = diff_runs(before, other_batch)  # nothing timed at the same batch size: not a pass
    assert "no cell was timed at the same batch size" in unmatched.timings_compared
    assert unmatched.failing(("slowdown",))
    gone = record("f")
    gone.cells.clear()
    assert [(c.key, c.after) for c in diff_runs(before, gone).status] == [(KEY, "absent")]


def test_baseline_blocks_only_where_the_zoo_sets_max_slowdown(write_zoo):
    from converter.zoo import load_zoo

    entries = {e.name: e for e in load_zoo(write_zoo([tiny_entry("m", max_slowdown=0.1)])).models}
    blocking, notes = baseline_regressions(record("base"), record("now", p50=12.0), entries)
    assert len(blocking) == 1 and "+20%" in blocking[0] and "max_slowdown: 10%" in blocking[0] and not notes
    blocking, notes = baseline_regressions(record("base"), record("now", p50=10.8), entries)
    assert not blocking and "(within the zoo's max_slowdown: 10%)" in notes[0]  # 8% slower: a note
    blocking, notes = baseline_regressions(record("base"), record("now", p50=12.0, stable=False), entries)
    assert not blocking and "a timing was not steady" in notes[0]  # the machine slowed it: not blocking
    entries = {e.name: e for e in load_zoo(write_zoo([tiny_entry("m")])).models}
    blocking, notes = baseline_regressions(record("base"), record("now", p50=12.0), entries)
    assert not blocking and "set max_slowdown" in notes[0]
    blocking, notes = baseline_regressions(record("base"), record("now", p50=50.0, machine="other"), entries)
    assert not blocking and "another machine" in notes[0]
    lacking = record("base")
    lacking.cells[0] = CellRecord("m/other/x@cpu", "m", "other", "x", "cpu", "fp32", True, "PASS", "", {},
                                  lacking.cells[0].timings)
    blocking, notes = baseline_regressions(lacking, record("now", p50=50.0), entries)
    assert not blocking and "1 timed cell(s) not timed in the baseline, not compared: " + KEY in notes[0]
    entries = {e.name: e for e in load_zoo(write_zoo([tiny_entry("m", max_slowdown=0.02)])).models}
    blocking, notes = baseline_regressions(record("base"), record("now", p50=10.45), entries)
    assert "max_slowdown: 2%" in blocking[0]  # a limit under the 5% reporting threshold still gates


# ---- the noise floor: pure ----

def test_noise_floor_is_the_largest_move_relative_to_each_sample():
    rng = np.random.default_rng(0)
    reference = rng.standard_normal((8, 10)).astype(np.float32) * np.arange(1, 9, dtype=np.float32)[:, None]
    moved = reference.copy()
    moved[3, 2] += 1e-5 * np.abs(reference[3]).max()
    floor = noise_floor(reference, {"float64": moved.astype(np.float64), "threads=1": reference[:3],
                                    "reversed": "RuntimeError: no"})
    assert floor.rel == pytest.approx(1e-5, rel=1e-3) and floor.worst_source == "float64"
    assert floor.sources["threads=1"] == 0.0 and floor.missing == {"reversed": "RuntimeError: no"}
    assert floor.abs == pytest.approx(1e-5 * np.abs(reference[3]).max(), rel=1e-3)
    identical = noise_floor(reference, {"threads=1": reference})
    assert identical.rel == pytest.approx(np.finfo(np.float32).eps)  # never below float32's own rounding
    assert identical.abs == pytest.approx(np.finfo(np.float32).eps * np.median(np.abs(reference).max(axis=1)))
    assert noise_floor(reference, {"float64": "fails"}) is None
    assert derived_limits(20.0, floor) == {"atol": 20 * floor.abs, "rtol": 20 * floor.rel}
    # a difference of one floor at the worst element is one unit; tolerance: auto passes up to its multiple
    one = reference.astype(np.float64)
    one[5, 0] += floor.abs + floor.rel * np.abs(reference[5]).max()
    assert noise_units(reference, one, floor) == pytest.approx(1.0)
    assert noise_units(reference, reference, floor) == 0.0
    floors = reference_floors({"logits": reference, "boxes": reference}, {1: {"logits": reference[:1]}},
                              {"float64": {"logits": moved, "boxes": moved}}, {"logits": "logits", "boxes": "boxes"})
    assert list(floors) == ["logits"] and set(floors["logits"].sources) == {"batch=1", "float64"}
    assert FAR_ABOVE == 50.0


def test_tolerance_auto_merges_with_the_defaults_and_holds_cpu_cells_only(write_zoo):
    from converter.zoo import load_zoo
    from verify.judge.noise import judged_tolerance

    entry = load_zoo(write_zoo([tiny_entry("m", tolerance="auto")],
                               defaults={"tolerance": {"min_cosine": 0.9999, "atol": 1e-3}})).models[0]
    assert entry.tolerance.auto and entry.tolerance.min_cosine == 0.9999
    floors = {"logits": NoiseFloor(2e-6, 5e-6, 8, {"float64": 2e-6})}
    cpu = judged_tolerance(entry, "onnxruntime", "onnx", "cpu", "logits", floors)
    assert (cpu.atol, cpu.rtol, cpu.min_cosine) == (pytest.approx(1e-4), pytest.approx(4e-5), 0.9999)
    gpu = judged_tolerance(entry, "onnxruntime", "onnx", "cuda", "logits", floors)
    assert (gpu.atol, gpu.rtol) == (1e-3, 1e-3)  # the floor is the CPU reference's: a GPU keeps the zoo's values
    assert judged_tolerance(entry, "onnxruntime", "onnx", "cpu", "logits", {}).atol == 1e-3  # no floor: the zoo's


# ---- on a converted model ----

@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    return convert_tiny_zoo(tmp_path_factory.mktemp("history"),
                            [tiny_entry(formats=["eager", "onnx"], onnx={"simplify": False}, deployments=[])])


def _verify(root: Path, report: str, *extra: str) -> int:
    return main(["--report", str(root / report), "--artifacts", str(root / "artifacts"), "--zoo", str(root / "zoo.yaml"),
                 "--runtimes", "torch,onnxruntime", "--devices", "cpu", "--partial", "--no-timing",
                 "--num-images", "6", *extra])


def test_a_weight_changed_by_five_hundredths_of_a_percent(converted, tmp_path, capsys):
    """Inside the hand tolerance (the gate passes), hundreds of noise floors away: diff names the cell as drifted,
    the report flags it, and `tolerance: auto` blocks it."""
    from verify.selftest.faults import resign, scale_conv_weight

    import onnx

    root = private_copy(converted, tmp_path)
    assert _verify(root, "r1") == 0 and _verify(root, "r2", "--no-cache") == 0  # measured again, not reused
    path = next((root / "artifacts" / "tiny").glob("onnx*/model.onnx"))
    model = onnx.load(str(path))
    scale_conv_weight(model, next(n.name for n in model.graph.node if n.op_type == "Conv"), 1.0005)
    onnx.save(model, str(path))
    resign(root / "artifacts", "onnx", "tiny")
    assert _verify(root, "r3") == 0  # inside atol 1e-4 + rtol 1e-3
    report = (root / "r3" / "report.md").read_text()
    assert "tiny/onnx/onnxruntime@cpu: 'logits' passes its tolerance but differs by" in report
    capsys.readouterr()
    history = ["--history", str(root / "artifacts" / "history.sqlite")]
    assert main(["diff", str(root / "r1"), str(root / "r2"), "--fail-on", "drift", *history]) == 0
    capsys.readouterr()
    assert main(["diff", str(root / "r2"), "last", "--fail-on", "drift", *history]) == 1
    out = capsys.readouterr().out
    drifted = out.split("drifted beyond the noise floor (1):")[1].splitlines()[1]
    assert drifted.startswith("  tiny/onnx/onnxruntime@cpu 'logits':") and "noise floors" in drifted
    units = float(drifted.split("->")[1].split()[0])
    assert units > 100
    zoo = yaml.safe_load((root / "zoo.yaml").read_text())
    zoo["models"][0]["tolerance"] = "auto"
    (root / "zoo.yaml").write_text(yaml.safe_dump(zoo))
    assert _verify(root, "r4") == 1
    frame = __import__("pandas").read_csv(root / "r4" / "parity.csv")
    row = frame[(frame.artifact == "onnx") & (frame.runtime == "onnxruntime")].iloc[0]
    assert row.status == "FAIL" and row.tolerance_from == "noise floor x20" and row.rtol < 1e-4
    assert row.noise_units == pytest.approx(units, rel=0.01)
    # the performance gate through the command line: an untimed run compares nothing, and says so
    assert _verify(root, "r5", "--baseline", "last-pass") == 1  # still blocked by auto; the note is the point
    notes = __import__("json").loads((root / "r5" / "summary.json").read_text())["notes"]
    assert any("this run timed nothing (--no-timing), so no timing was compared" in note for note in notes), notes
    assert _verify(root, "r6", "--baseline", "last-pass", "--history", str(tmp_path / "new.sqlite")) == 1
    notes = __import__("json").loads((root / "r6" / "summary.json").read_text())["notes"]
    assert any(note.startswith("--baseline: nothing compared:") and "no run recorded yet" in note
               for note in notes), notes
    assert main(["history", "--model", "tiny", "--report", str(root / "h"), *history]) == 0
    assert len(HistoryStore(root / "artifacts" / "history.sqlite").runs()) == 5
    assert (root / "h" / "tiny-history.png").stat().st_size > 10_000
    assert "### tiny/onnx/onnxruntime@cpu (status changed)" in (root / "h" / "history.md").read_text()


class Sleeping(OnnxRuntimeRunner):
    """ONNX Runtime with 20 ms added to every call: a runtime that got slower."""

    def run(self, feeds):
        time.sleep(0.02)
        return super().run(feeds)


def test_a_slowed_runtime_is_named_by_diff_and_blocked_by_the_baseline_gate(converted, tmp_path, capsys,
                                                                             monkeypatch):
    from verify.api import VerifyOptions, run
    from verify.cells.timing import TimingPolicy
    from verify.history.runs import gate_on_baseline, record_of
    from verify.runners import registered_runners
    root = private_copy(converted, tmp_path)
    zoo = yaml.safe_load((root / "zoo.yaml").read_text())
    zoo["models"][0]["max_slowdown"] = 0.5
    (root / "zoo.yaml").write_text(yaml.safe_dump(zoo))
    store = HistoryStore(root / "history.sqlite")
    runners = {name: runner for name, runner in registered_runners().items() if name in ("torch", "onnxruntime")}
    options = VerifyOptions(artifacts=root / "artifacts", zoo=root / "zoo.yaml", devices=("cpu",), num_images=4,
                            partial=True, batches=(1,), run_id="",
                            policy=TimingPolicy(min_seconds=0.05, max_seconds=0.3, run_wait_seconds=0,
                                                max_interval=1.0, max_drift=1.0))  # steady on a busy machine
    monkeypatch.setattr("verify.api.remembered_peak", lambda *args: {})  # the machine's peak: not tested here
    baseline = run(options, runners=runners)
    assert baseline.verdict.passed
    store.record(record_of(baseline))
    slowed = run(options, runners={**runners, "onnxruntime": Sleeping})
    gate_on_baseline(slowed, store.load("last-pass"))
    assert not slowed.verdict.passed
    assert any("tiny/onnx/onnxruntime@cpu batch 1" in line and "max_slowdown: 50%" in line
               for line in slowed.verdict.blocking), slowed.verdict.blocking
    store.record(record_of(slowed))
    assert main(["diff", "last-pass", "last", "--fail-on", "slowdown", "--history", str(store.path)]) == 1
    assert "slower beyond both runs' 95% intervals (1):\n  tiny/onnx/onnxruntime@cpu batch 1" in capsys.readouterr().out
