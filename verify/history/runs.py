"""The history as the verifier uses it: a run recorded, a run found by reference, and the performance gate
against a baseline run."""
from __future__ import annotations

from pathlib import Path

from converter.zoo import ModelEntry

from ..judge.gate import decide, with_regressions
from .diff import MIN_SLOWDOWN, timing_changes
from .records import MERGED, RUN, SHARD, RunRecord, run_record
from .store import HistoryError, HistoryStore


def record_of(verified, kind: str | None = None) -> RunRecord:
    """A finished VerifyRun as the history keeps it (a shard's run as a shard, unless `kind` says otherwise)."""
    scope = verified.scope
    return run_record(verified.results, verified.verdict, verified.environment, verified.provenance,
                      scope.zoo_sha256, kind or (SHARD if scope.shard else RUN))


def find_run(reference: str, store: HistoryStore | None) -> RunRecord:
    """A run by a history reference (an id, `last`, `last-pass`) or a report folder of `python -m verify` (its
    results.json); HistoryError or ResultsFileError naming what is missing."""
    from ..report.results_file import read_results

    folder = Path(reference)
    if folder.is_dir():
        stored = read_results(folder)
        verdict = decide(stored.results, stored.entries, stored.left_out,
                         accept_partial=bool(stored.scope.settings.get("partial")))
        return run_record(stored.results, verdict, stored.environment, stored.provenance, stored.scope.zoo_sha256,
                          SHARD if stored.scope.shard else MERGED if "merged_from" in stored.provenance else RUN)
    if store is None:
        raise HistoryError(f"{reference}: not a report folder, and no history to look it up in")
    return store.load(reference)


def gate_on_baseline(verified, baseline: RunRecord) -> None:
    """The performance gate: `verified`'s verdict also blocks the deployed cells slower than in `baseline` where
    the zoo sets max_slowdown (baseline_regressions); other slowdowns become notes."""
    verified.verdict = with_regressions(verified.verdict,
                                        *baseline_regressions(baseline, record_of(verified), verified.entries))


def baseline_regressions(baseline: RunRecord, current: RunRecord,
                         entries: dict[str, ModelEntry]) -> tuple[list[str], list[str]]:
    """(blocking, notes): the cells slower than in `baseline` beyond both runs' 95% intervals. One blocks where its
    model's zoo entry sets `max_slowdown` (and it is slower by more than that) and the cell is deployed; any other
    slowdown of more than MIN_SLOWDOWN is a note."""
    if baseline.machine != current.machine:
        return [], [f"--baseline {baseline.run_id}: timings not compared, it ran on another machine "
                    f"({baseline.machine}; this run: {current.machine})"]
    if not any(cell.timings for cell in current.cells):
        return [], [f"--baseline {baseline.run_id}: this run timed nothing (--no-timing), so nothing was compared"]
    blocking, notes = [], []
    for cell in current.cells:
        earlier = baseline.cell(cell.key)
        if earlier is None:
            continue
        entry = entries.get(cell.model)
        limit = entry.max_slowdown if entry is not None else None
        for change in timing_changes(earlier, cell, MIN_SLOWDOWN if limit is None else limit):
            if change.ratio <= 1:
                continue
            line = (f"{cell.key} batch {change.batch}: p50 {change.p50_before:.2f} -> {change.p50_after:.2f} ms "
                    f"({100 * (change.ratio - 1):+.0f}%), beyond both runs' 95% intervals, against baseline run "
                    f"{baseline.run_id}")
            if limit is not None and cell.gated:
                blocking.append(f"{line} (the zoo's max_slowdown: {limit:.0%})")
            else:
                notes.append(f"{line} (information: set max_slowdown in the zoo to gate on it)")
    return blocking, notes
