"""What changed between two runs: cells whose status changed, outputs whose difference from the reference moved
beyond the noise floor, timings that moved beyond both runs' intervals, tool versions. Pure: two RunRecords in,
plain data out."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..judge.noise import sample_units
from .records import CellRecord, RunRecord

# An output drifted when its difference from the reference moved by more than this many noise floors: a
# reordering of float32 arithmetic moves it by one or two (the default zoo's clean cells sit at 0.6-2.0), a 0.05%
# change of resnet18's classifier weights by 226 (docs/measurements.md).
DRIFT_UNITS = 10.0
MIN_SLOWDOWN = 0.05  # a timing moved when its median changed by more than this, beyond both runs' 95% intervals
FAIL_ON = ("status", "drift", "slowdown")
ABSENT = "absent"  # a cell's status in a run that did not have it


@dataclass(frozen=True)
class StatusChange:
    key: str
    before: str
    after: str
    detail: str


@dataclass(frozen=True)
class Drift:
    key: str
    output: str
    units_before: float
    units_after: float
    rel_before: float
    rel_after: float


@dataclass(frozen=True)
class TimingChange:
    key: str
    batch: int
    p50_before: float
    p50_after: float
    interval_before: tuple[float, float]
    interval_after: tuple[float, float]

    @property
    def ratio(self) -> float:
        return self.p50_after / self.p50_before


@dataclass
class RunDiff:
    before: RunRecord
    after: RunRecord
    status: list[StatusChange] = field(default_factory=list)
    drift: list[Drift] = field(default_factory=list)
    slowdown: list[TimingChange] = field(default_factory=list)
    speedup: list[TimingChange] = field(default_factory=list)
    tools: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> (before, after)
    reference_changed: list[str] = field(default_factory=list)  # reference outputs that moved beyond their floor
    added: list[str] = field(default_factory=list)  # cells only in the later run (those gone are status changes)
    timings_compared: str = ""  # why timings were not compared, or "" when they were

    def failing(self, fail_on: tuple[str, ...]) -> list[str]:
        """The `fail_on` categories that found something, or (slowdown) could not be checked."""
        found = [what for what in fail_on if getattr(self, what)]
        if "slowdown" in fail_on and not self.slowdown and self.timings_compared:
            found.append(f"slowdown not checked ({self.timings_compared})")
        return found


def diff_runs(before: RunRecord, after: RunRecord, drift_units: float = DRIFT_UNITS,
              min_slowdown: float = MIN_SLOWDOWN) -> RunDiff:
    result = RunDiff(before, after)
    old = {cell.key: cell for cell in before.cells}
    new = {cell.key: cell for cell in after.cells}
    result.added.extend(key for key in new if key not in old)
    result.status.extend(StatusChange(key, cell.status, ABSENT, "not in the later run") for key, cell in old.items()
                         if key not in new)
    same_machine = before.machine == after.machine
    untimed = [run.run_id for run in (before, after) if not run.timed]
    if not same_machine:
        result.timings_compared = f"timings not compared: another machine ({before.machine} against {after.machine})"
    elif untimed:
        result.timings_compared = f"timings not compared: run {' and '.join(untimed)} timed nothing (--no-timing)"
    compared = 0  # (cell, batch) timings found in both runs
    for key, cell in new.items():
        earlier = old.get(key)
        if earlier is None:
            continue
        if earlier.status != cell.status:
            result.status.append(StatusChange(key, earlier.status, cell.status, cell.detail))
        result.drift.extend(_drifts(earlier, cell, drift_units))
        if not result.timings_compared:
            compared += len(earlier.batches & cell.batches)
            for change in timing_changes(earlier, cell, min_slowdown):
                (result.slowdown if change.ratio > 1 else result.speedup).append(change)
    if not result.timings_compared and not compared:
        result.timings_compared = "timings not compared: no cell was timed at the same batch size in both runs"
    result.tools.update({name: (before.tools.get(name, "-"), after.tools.get(name, "-"))
                         for name in sorted(set(before.tools) | set(after.tools))
                         if before.tools.get(name) != after.tools.get(name)})
    for model in after.models:  # the reference itself, on the same inputs, beyond its noise floor
        earlier = before.model(model.model)
        if earlier is None or not earlier.inputs_digest or earlier.inputs_digest != model.inputs_digest:
            continue
        for output, values in model.reference_sample.items():
            floor = model.noise_floor.get(output)
            units = sample_units(earlier.reference_sample.get(output, []), values, floor) if floor else None
            if units is not None and units > drift_units:
                result.reference_changed.append(f"{model.model} '{output}' ({units:.0f} noise floors)")
    return result


def _drifts(before: CellRecord, after: CellRecord, drift_units: float) -> list[Drift]:
    found = []
    for output, now in after.outputs.items():
        then = before.outputs.get(output)
        if then is None or now.noise_units is None or then.noise_units is None:
            continue
        if abs(now.noise_units - then.noise_units) > drift_units:
            found.append(Drift(after.key, output, then.noise_units, now.noise_units, then.max_rel_diff or 0.0,
                               now.max_rel_diff or 0.0))
    return found


def timing_changes(before: CellRecord, after: CellRecord, min_change: float) -> list[TimingChange]:
    """The batches whose median moved by more than `min_change` with the two runs' 95% intervals apart."""
    earlier = {t.batch: t for t in before.timings}
    changes = []
    for now in after.timings:
        then = earlier.get(now.batch)
        if then is None:
            continue
        slower = now.ci_low_ms > then.ci_high_ms and now.p50_ms > then.p50_ms * (1 + min_change)
        faster = now.ci_high_ms < then.ci_low_ms and now.p50_ms < then.p50_ms / (1 + min_change)
        if slower or faster:
            changes.append(TimingChange(after.key, now.batch, then.p50_ms, now.p50_ms,
                                        (then.ci_low_ms, then.ci_high_ms), (now.ci_low_ms, now.ci_high_ms)))
    return changes
