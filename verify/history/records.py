"""A verify run as plain data for the history: its provenance, and per cell its status, its outputs' differences
from the reference (also in units of the reference's noise floor) and its timings. Pure: no I/O."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..judge.gate import Verdict
from ..judge.noise import NoiseFloor
from ..results import ModelResult

RUN, SHARD, MERGED = "run", "shard", "merged"  # what a recorded run is: `last` and `last-pass` skip shards


@dataclass(frozen=True)
class OutputRecord:
    status: str
    max_abs_diff: float | None = None
    max_rel_diff: float | None = None
    cosine: float | None = None
    noise_units: float | None = None  # max_rel_diff in units of the reference's noise floor (float32 cells)


@dataclass(frozen=True)
class TimingRecord:
    batch: int
    p50_ms: float
    ci_low_ms: float  # the 95% interval of the median
    ci_high_ms: float
    stable: bool
    runs: int


@dataclass(frozen=True)
class CellRecord:
    key: str  # model/artifact/runtime@device
    model: str
    artifact: str
    runtime: str
    device: str
    precision: str
    gated: bool
    status: str
    detail: str
    outputs: dict[str, OutputRecord] = field(default_factory=dict)
    timings: list[TimingRecord] = field(default_factory=list)
    cached: bool = False  # its outputs and timings were an earlier run's (the cell cache)

    @property
    def batches(self) -> set[int]:
        """The batch sizes it was timed at."""
        return {timing.batch for timing in self.timings}

    @property
    def worst(self) -> OutputRecord | None:
        """The output furthest from the reference (by noise units where known, else by max |diff|)."""
        measured = [o for o in self.outputs.values() if o.max_abs_diff is not None]
        return max(measured, key=lambda o: (o.noise_units if o.noise_units is not None else -1,
                                            o.max_abs_diff), default=None)


@dataclass(frozen=True)
class ModelRecord:
    model: str
    task: str
    error: str | None
    samples: int
    noise_floor: dict[str, NoiseFloor] = field(default_factory=dict)
    inputs_digest: str = ""  # what every runtime got
    reference_sample: dict[str, list[float]] = field(default_factory=dict)  # its first sample's first values


@dataclass(frozen=True)
class RunRecord:
    run_id: str
    kind: str  # RUN, SHARD or MERGED
    date: str
    verdict: str  # PASS, BLOCKED, with "(partial)" for a narrowed run
    passed: bool
    commit: str
    zoo_sha256: str
    machine: str  # the CPU, the threads and the GPU: timings compare only between runs on the same
    tools: dict[str, str]  # framework and runtime versions
    environment: dict  # the CPU's model and flags, the GPU, the platform, ...
    provenance: dict  # command, zoo, images, shard, ...
    models: list[ModelRecord] = field(default_factory=list)
    cells: list[CellRecord] = field(default_factory=list)

    @property
    def timed(self) -> bool:
        """Whether any cell was timed (not a --no-timing run)."""
        return any(cell.timings for cell in self.cells)

    def cell(self, key: str) -> CellRecord | None:
        return next((cell for cell in self.cells if cell.key == key), None)

    def model(self, name: str) -> ModelRecord | None:
        return next((model for model in self.models if model.model == name), None)


def run_record(results: list[ModelResult], verdict: Verdict, environment: dict, provenance: dict,
               zoo_sha256: str, kind: str = RUN) -> RunRecord:
    """One finished run (or a merge of shards) as the history keeps it."""
    tools = {key.removeprefix("version."): str(value) for key, value in environment.items()
             if key.startswith("version.")}
    gpu = environment.get("gpu", "none")
    machine = f"{environment.get('cpu', '?')}, {environment.get('threads', '?')} threads" + (
        f", {gpu}" if gpu not in ("none", "", None) else "")
    models = [ModelRecord(r.model, r.task, r.error, r.samples, dict(r.noise_floor), r.inputs_digest,
                          dict(r.reference_sample)) for r in results]
    cells = [_cell_record(result, cell) for result in results for cell in result.cells]
    return RunRecord(provenance.get("run_id", ""), kind, provenance.get("date", ""), verdict.label, verdict.passed,
                     provenance.get("commit", ""), zoo_sha256, machine, tools,
                     {k: v for k, v in environment.items() if not k.startswith("version.")},
                     {k: str(v) for k, v in provenance.items()}, models, cells)


def _cell_record(result: ModelResult, cell) -> CellRecord:
    outputs = {key: OutputRecord(c.status, _number(c.max_abs_diff), _number(c.max_rel_diff), _number(c.cosine),
                                 result.noise_units(cell, key))
               for key, c in cell.comparisons.items()}
    timings = [TimingRecord(t.batch, t.p50_ms, t.ci_low_ms, t.ci_high_ms, t.stable, t.runs) for t in cell.timings]
    return CellRecord(cell.key, cell.model, cell.artifact, cell.runtime, cell.device, cell.precision, cell.gated,
                      cell.status, cell.detail[:500], outputs, timings, bool(cell.cached))


def _number(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)
