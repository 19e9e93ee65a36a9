"""The history as the verifier uses it: a run recorded, a run found by reference, and the performance gate
against a baseline run."""
from __future__ import annotations

from pathlib import Path

from converter.zoo import ModelEntry

from ..judge.gate import decide, with_regressions
from .diff import MIN_SLOWDOWN, timing_changes
from .records import MERGED, RUN, SHARD, RunRecord, run_record
from .store import LATEST, HistoryError, HistoryStore


def record_of(verified, kind: str | None = None) -> RunRecord:
    """A finished VerifyRun as the history keeps it (a shard's run as a shard, unless `kind` says otherwise)."""
    scope = verified.scope
    return run_record(verified.results, verified.verdict, verified.environment, verified.provenance,
                      scope.zoo_sha256, kind or (SHARD if scope.shard else RUN))


def find_run(reference: str, store: HistoryStore | None) -> RunRecord:
    """A run by a history reference (`last`, `last-pass`, either with ~N, an id or its start) or a report folder of
    `python -m verify` (its results.json); HistoryError or ResultsFileError naming what is missing."""
    from ..report.results_file import read_results

    folder = Path(reference)
    if not is_latest(reference) and folder.is_dir():
        stored = read_results(folder)
        verdict = decide(stored.results, stored.entries, stored.left_out,
                         accept_partial=bool(stored.scope.settings.get("partial")))
        verdict = with_regressions(verdict, stored.baseline.get("blocking", []), stored.baseline.get("notes", []))
        return run_record(stored.results, verdict, stored.environment, stored.provenance, stored.scope.zoo_sha256,
                          SHARD if stored.scope.shard else MERGED if "merged_from" in stored.provenance else RUN)
    if store is None:
        raise HistoryError(f"{reference}: not a report folder, and no history to look it up in")
    return store.load(reference)


def is_latest(reference: str) -> bool:
    """Whether `reference` is `last` or `last-pass`, with or without ~N."""
    latest, tilde, back = reference.partition("~")
    return latest in LATEST and (not tilde or back.isdigit())


def gate_on_baseline(verified, baseline: RunRecord | None, missing: str = "") -> None:
    """The performance gate: `verified`'s verdict also blocks the deployed cells slower than in `baseline` where
    the zoo sets max_slowdown (baseline_regressions); other slowdowns become notes. No baseline (`missing` says
    why: a history without a passing run yet) is a note. The lines are kept on the run (a merge of shards
    applies them again)."""
    blocking, notes = (baseline_regressions(baseline, record_of(verified), verified.entries) if baseline is not None
                       else ([], [f"--baseline: nothing compared: {missing}"]))
    verified.baseline = {"blocking": blocking, "notes": notes}
    verified.verdict = with_regressions(verified.verdict, blocking, notes)


def baseline_regressions(baseline: RunRecord, current: RunRecord,
                         entries: dict[str, ModelEntry]) -> tuple[list[str], list[str]]:
    """(blocking, notes): the cells slower than in `baseline` by more than MIN_SLOWDOWN, beyond both runs' 95%
    intervals. One blocks where its model's zoo entry sets `max_slowdown`, it is slower by more than that, the cell
    is deployed and both timings were taken at the machine's full speed; any other is a note. What could not be
    compared (another machine, an untimed run, cells the baseline lacks) is a note too: a gate that compared
    nothing says so."""
    name = f"--baseline {baseline.run_id}"
    if baseline.machine != current.machine:
        return [], [f"{name}: timings not compared, it ran on another machine ({baseline.machine}; this run: "
                    f"{current.machine})"]
    for run, which in ((current, "this run"), (baseline, "the baseline run")):
        if not run.timed:
            return [], [f"{name}: {which} timed nothing (--no-timing), so no timing was compared"]
    blocking, notes = [], []
    absent = [cell.key for cell in current.cells  # timed here, and at none of these batch sizes in the baseline
              if cell.timings and not cell.batches & getattr(baseline.cell(cell.key), "batches", set())]
    if absent:
        notes.append(f"{name}: {len(absent)} timed cell(s) not timed in the baseline, not compared: "
                     + ", ".join(absent[:5]) + (" ..." if len(absent) > 5 else ""))
    for cell in current.cells:
        earlier = baseline.cell(cell.key)
        if earlier is None:
            continue
        entry = entries.get(cell.model)
        limit = entry.max_slowdown if entry is not None else None
        steady = {t.batch for t in earlier.timings if t.stable} & {t.batch for t in cell.timings if t.stable}
        for change in timing_changes(earlier, cell, MIN_SLOWDOWN if limit is None else min(limit, MIN_SLOWDOWN)):
            if change.ratio <= 1:
                continue
            line = (f"{cell.key} batch {change.batch}: p50 {change.p50_before:.2f} -> {change.p50_after:.2f} ms "
                    f"({100 * (change.ratio - 1):+.0f}%), beyond both runs' 95% intervals, against baseline run "
                    f"{baseline.run_id}")
            if limit is None or not cell.gated:
                notes.append(f"{line} (information: set max_slowdown in the zoo to gate on it)")
            elif change.ratio <= 1 + limit:
                notes.append(f"{line} (within the zoo's max_slowdown: {limit:.0%})")
            elif change.batch not in steady:
                notes.append(f"{line} (over the zoo's max_slowdown, {limit:.0%}, but a timing was not steady: the "
                             "machine ran slow or the interval was wide; not blocking)")
            else:
                blocking.append(f"{line} (the zoo's max_slowdown: {limit:.0%})")
    return blocking, notes
