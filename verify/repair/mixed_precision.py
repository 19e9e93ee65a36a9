"""Mixed-precision repair of an ONNX int8 or fp16 artifact outside its budget: the candidate nodes, builds that leave
some of them in float32 (the converter's own functions, so the zoo change rebuilds the same model), and the search's
two questions answered on the verifier's inputs: how far a build is from the fp32 model, and whether the budget
holds (the gate's own comparison and budget judgement)."""
from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from converter.core.outputs import Feeds
from converter.exporters.onnx_precision import FOR_ONNXRUNTIME, QdqQuantiser, calibration_inputs, fp16_candidates, \
    to_fp16
from converter.zoo import ModelEntry

from ..judge.accuracy import drop_points, judge_precision
from ..judge.compare import PASS, compare_outputs, per_sample_cosine
from ..plan.inputs import CHUNK
from ..tasks import task_named
from .onnxruntime_cpu import batch_of, cpu_session
from .search import Kept, SearchResult, search

# the zoo field each repairable artifact's kept nodes go in, and the precision its budget is
LATENCY_BATCH = 8  # the builds' latency is timed on this many samples
RANKING_SAMPLES = 8  # a node's cost is measured on the first few samples: ranking builds one model per node
REPAIRABLE = {"onnx_int8": ("int8", "int8_keep_fp32"), "onnx_fp16": ("fp16", "fp16_keep_fp32")}


@dataclass(frozen=True)
class MixedPrecision:
    """One search's outcome, before the gate's proof."""

    artifact: str
    precision: str
    candidates: int  # nodes that run in reduced precision and could stay in float32
    result: SearchResult
    zoo_field: str  # onnx.<zoo_field>: the nodes to keep
    latency_ms: dict[str, float]  # ONNX Runtime: 'fp32', the artifact's precision, 'mixed'
    latency_batch: int  # the samples each was timed on
    seconds: float


class OnnxBuilds:
    """Builds of one model's reduced-precision ONNX artifact with chosen nodes left in float32, into `scratch`."""

    def __init__(self, artifact: str, entry: ModelEntry, fp32_path: Path, scratch: Path) -> None:
        import onnx

        self.artifact, self.scratch, self.count = artifact, scratch, 0
        if artifact == "onnx_int8":
            self.quantiser = QdqQuantiser(fp32_path, calibration_inputs(entry)[0], FOR_ONNXRUNTIME, scratch)
            full = self.build(())
            self.candidates = self.quantiser.quantised_nodes(full)
        else:
            self.fp32 = onnx.load(str(fp32_path))
            self.candidates = fp16_candidates(self.fp32)

    def build(self, kept: Kept) -> Path:
        import onnx

        self.count += 1
        path = self.scratch / f"try-{self.count}.onnx"
        if self.artifact == "onnx_int8":
            self.quantiser.build(path, kept)
        else:
            onnx.save(to_fp16(self.fp32, kept), str(path))
        return path


def run_onnx(path: Path, feeds: Feeds, threads: int, chunk: int = CHUNK) -> dict[str, np.ndarray]:
    """Every output of the ONNX model at `path` on `feeds`, by name (ONNX Runtime, CPU), `chunk` samples at a time,
    or one at a time where the model takes a fixed batch of 1."""
    session = cpu_session(path, threads)
    names = [output.name for output in session.get_outputs()]
    step = batch_of(session, chunk)
    samples = len(next(iter(feeds.values())))
    parts = [session.run(names, {name: array[start:start + step] for name, array in feeds.items()})
             for start in range(0, samples, step)]
    return {name: np.concatenate([part[index] for part in parts]) for index, name in enumerate(names)}


def distance(reference: Mapping[str, np.ndarray], outputs: Mapping[str, np.ndarray]) -> float:
    """How far `outputs` are from `reference`: 1 - the lowest per-sample cosine over every output, over the values
    finite in both (a detector pads its scores with -inf); 2 where a value is NaN or Inf in one and not the other."""
    worst = 0.0
    for name, ref in reference.items():
        ref = ref.reshape(len(ref), -1).astype(np.float64)
        got = outputs[name].reshape(len(ref), -1).astype(np.float64)
        finite = np.isfinite(ref) & np.isfinite(got)
        if (~finite & ~(ref == got)).any():
            return 2.0
        cosine = float(per_sample_cosine(np.where(finite, ref, 0.0), np.where(finite, got, 0.0)).min())
        worst = max(worst, 1.0 - cosine)
    return worst


def budget_judge(entry: ModelEntry, artifact: str, precision: str, reference: Mapping[str, np.ndarray],
                 labels: list | None) -> Callable[[Mapping[str, np.ndarray]], tuple[str, str]]:
    """The gate's verdict on a reduced-precision cell's outputs at the run's first size: each output compared at its
    tolerance with the budget's limits, then the budget (accuracy drop with labels, agreement, cosines)."""
    task, budget = task_named(entry.task_name), entry.budget_for(precision)
    names, kinds = list(reference), entry.output_kinds
    tolerances = {name: budget.limit(entry.tolerance_for("onnxruntime", artifact, "cpu", name)) for name in names}
    reference_accuracy = task.cell_facts(entry, dict(reference), labels).get("accuracy")

    def judge(outputs: Mapping[str, np.ndarray]) -> tuple[str, str]:
        comparisons = compare_outputs(reference, {name: outputs[name] for name in names}, tolerances, kinds)
        accuracy = task.cell_facts(entry, dict(outputs), labels).get("accuracy")
        return judge_precision(comparisons, budget, precision, drop_points(reference_accuracy, accuracy),
                               task.agreement(entry, dict(reference), dict(outputs)))
    return judge


def search_mixed_precision(artifact: str, entry: ModelEntry, fp32_path: Path, feeds: Feeds, labels: list | None,
                           seconds: float, threads: int, scratch: Path,
                           progress: Callable[[str], None] = lambda text: None) -> MixedPrecision:
    """The fewest nodes of `artifact` to keep in float32 for its budget to hold on `feeds`, compared with the fp32
    ONNX model (which passed the gate; the gate's own run proves the result), in `seconds` at most."""
    started = time.monotonic()
    precision, field = REPAIRABLE[artifact]
    builds = OnnxBuilds(artifact, entry, fp32_path, scratch)
    reference = {name: array for name, array in run_onnx(fp32_path, feeds, threads).items()
                 if name in entry.output_names}
    judge = budget_judge(entry, artifact, precision, reference, labels)
    ranked = [0]

    few = {name: array[:RANKING_SAMPLES] for name, array in feeds.items()}
    few_reference = {name: array[:RANKING_SAMPLES] for name, array in reference.items()}

    def outputs(kept: Kept, on: Feeds = feeds) -> dict[str, np.ndarray]:
        path = builds.build(kept)
        try:
            return run_onnx(path, on, threads)
        finally:
            path.unlink()

    def cost(node: str) -> float:  # the node alone in reduced precision, on the first few samples
        progress(f"ranking: {ranked[0]}/{len(builds.candidates)} nodes")
        ranked[0] += 1
        kept = tuple(other for other in builds.candidates if other != node)
        return distance(few_reference, outputs(kept, few))

    def passes(kept: Kept) -> tuple[bool, str]:
        progress(f"trying {len(kept)} node(s) in float32")
        status, detail = judge(outputs(kept))
        return status == PASS, detail

    result = search(builds.candidates, cost, passes, seconds)
    timed = {"fp32": _latency(fp32_path, feeds, threads), precision: _latency(builds.build(()), feeds, threads)}
    if result.kept is not None:
        timed["mixed"] = _latency(builds.build(result.kept), feeds, threads)
    return MixedPrecision(artifact, precision, len(builds.candidates), result, field,
                          {name: ms for name, (ms, _) in timed.items()}, timed["fp32"][1], time.monotonic() - started)


def _latency(path: Path, feeds: Feeds, threads: int, runs: int = 5) -> tuple[float, int]:
    """The median milliseconds of one ONNX Runtime run over the first LATENCY_BATCH samples of `feeds` (one, where the
    model takes a fixed batch of 1), after a warm-up: a figure within this run, to compare the three builds, not a
    benchmark. Returns the milliseconds and the batch."""
    session = cpu_session(path, threads)
    feeds = {name: array[:batch_of(session, LATENCY_BATCH)] for name, array in feeds.items()}
    session.run(None, dict(feeds))
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        session.run(None, dict(feeds))
        times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times)), len(next(iter(feeds.values())))
