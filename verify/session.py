"""One model through every runtime on one shared input batch."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from converter.isolation import Limits, run_isolated
from converter.manifest import ModelRecord, file_sha256
from converter.zoo import ModelEntry

from .compare import ERROR, FAIL, PASS, SKIP, compare
from .inputs import ImageSet, preprocess, save_inputs
from .localize import PADDLE_UNAVAILABLE, Divergence, LocalizeJob, run_localize_job
from .preprocessing import deployment_batch, judge, reference_batch
from .results import Cell, ModelResult, PreprocessingCheck
from .runners import REFERENCE, RUNNERS, Availability, DeviceUnavailable, LoadRequest, Runner
from .timing import Timing, batch_of, measure

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VerifyOptions:
    artifacts: Path
    report: Path
    devices: tuple[str, ...] = ("cpu", "cuda", "tensorrt")
    runtimes: tuple[str, ...] | None = None  # None: every registered runtime
    threads: int = 1
    timing: bool = True
    warmup: int = 2
    runs: int = 10
    throughput_batch: int = 8
    limits: Limits = Limits()  # per cell, unless the zoo entry sets its own


def plan_cells(model: str, record: ModelRecord, options: VerifyOptions) -> list[Cell]:
    """Every (artifact, runtime, device) this model has, as unstarted cells."""
    cells = []
    for name, runner in RUNNERS.items():
        if options.runtimes is not None and name not in options.runtimes and name != REFERENCE[0]:
            continue  # the reference runtime always runs
        for artifact in runner.artifacts:
            if artifact not in record.artifacts:
                continue
            for device in runner.devices:
                if device in options.devices or (name, artifact, device) == REFERENCE:
                    cells.append(Cell(model, artifact, name, device, status="", detail=""))
    return cells


def verify_model(model: str, record: ModelRecord, entry: ModelEntry, images: ImageSet, options: VerifyOptions,
                 availability: Availability, stale: str | None = None) -> ModelResult:
    """Every cell of one model; `stale` says why the artifacts no longer match the zoo (then nothing runs)."""
    result = ModelResult(model, trusted_pickle=bool(record.source.get("trusted_pickle")))
    result.conversion_failures = {a: r.error or "failed" for a, r in record.artifacts.items() if not r.ok}
    result.cells = plan_cells(model, record, options)
    if record.error or stale:
        result.error = stale or f"model could not be built: {record.error}"
        return _finish_all(result, ERROR, result.error)

    batch = preprocess(images.images, entry.preprocess)
    result.samples = len(batch)
    inputs_path = options.report / "inputs" / f"{model}.npz"
    save_inputs(inputs_path, batch, images.names)
    result.inputs_file = str(inputs_path.relative_to(options.report))

    problems = {artifact: _integrity_problem(record, artifact, options.artifacts) for artifact in record.artifacts}
    reference_cell = next(c for c in result.cells if (c.runtime, c.artifact, c.device) == REFERENCE) \
        if "eager" in record.artifacts else None
    if reference_cell is None or not record.artifacts["eager"].ok or problems["eager"]:
        why = (problems.get("eager") or result.conversion_failures.get("eager")
               or "no eager artifact in the manifest (add eager to formats)")
        result.error = f"no reference: {why}"
        return _finish_all(result, ERROR, result.error)

    # The reference runs first; its comparison with its own second run also rejects a degenerate output.
    reference_cell.reference = True
    reference = _run_cell(reference_cell, entry, record.artifacts["eager"].path, batch, result.trusted_pickle, options)
    if reference_cell.status != PASS:
        result.error = f"reference (torch eager, CPU): {reference_cell.detail}"
        return _finish_all(result, ERROR, result.error, keep=reference_cell)
    reference_path = options.artifacts / record.artifacts["eager"].path
    result.preprocessing = check_preprocessing(model, entry, reference_path, images, result.trusted_pickle, options)

    for cell in result.cells:
        if cell is reference_cell:
            continue
        artifact = record.artifacts[cell.artifact]
        skip = RUNNERS[cell.runtime].unavailable(cell.device, availability)
        if not artifact.ok:
            cell.status, cell.detail, cell.conversion_failed = ERROR, f"conversion failed: {artifact.error}", True
        elif problems[cell.artifact]:
            cell.status, cell.detail = ERROR, problems[cell.artifact]
        elif skip:
            cell.status, cell.detail = SKIP, skip
        else:
            _run_cell(cell, entry, artifact.path, batch, result.trusted_pickle, options, reference)
            if cell.status == FAIL:
                cell.divergence = _localize(cell, entry, reference_path.parent, options.artifacts / artifact.path, batch,
                                            result.trusted_pickle, options)
    return result


LOCALIZABLE = {"onnxruntime": "onnx", "torchscript": "torchscript"}  # runtime -> how its artifact is opened


def _localize(cell: Cell, entry: ModelEntry, reference_folder: Path, artifact: Path, batch: np.ndarray,
              trust: bool, options: VerifyOptions) -> Divergence:
    if not cell.comparison.elementwise_failed:
        return Divergence(False, "not localised: the cell fails only on cosine or top-1, and every logit is within "
                                 "the elementwise tolerance that each layer would be held to")
    if cell.runtime not in LOCALIZABLE:
        if cell.runtime.startswith("paddle"):
            return Divergence(False, f"layer localisation {PADDLE_UNAVAILABLE}")
        return Divergence(False, f"layer localisation is not implemented for {cell.runtime}")
    job = LocalizeJob(LOCALIZABLE[cell.runtime], reference_folder, artifact, batch,
                      entry.tolerance_for(cell.runtime, cell.device), trust, options.threads)
    outcome = run_isolated(run_localize_job, job, limits=entry.limits.over(options.limits))
    if not outcome.ok:
        log.debug("localisation of %s failed:\n%s", cell.key, outcome.traceback)
        return Divergence(False, f"localisation failed: {outcome.message}")
    return outcome.value


@dataclass(frozen=True)
class LogitsJob:
    """The reference model on several input batches (one per preprocessing), in a worker."""

    runner: type[Runner]
    request: LoadRequest
    batches: dict[str, np.ndarray]


def run_logits_job(job: LogitsJob) -> dict[str, np.ndarray]:
    runner = job.runner()
    runner.load(job.request)
    return {name: runner.run(batch) for name, batch in job.batches.items()}


def check_preprocessing(model: str, entry: ModelEntry, reference_path: Path, images: ImageSet, trust: bool,
                        options: VerifyOptions) -> list[PreprocessingCheck]:
    """Each deployment preprocessing the zoo names against the reference transform, through the reference."""
    if not entry.deployments:
        return []
    checks = {d.name: PreprocessingCheck(model, d.name, d.library, "", "") for d in entry.deployments}
    batches = {"": reference_batch(images.images, entry.preprocess)}  # "" cannot be a deployment's name
    for deployment in entry.deployments:
        try:
            batches[deployment.name] = deployment_batch(images.images, deployment, entry.preprocess)
        except Exception as exc:  # a deployment's settings that its library cannot apply
            checks[deployment.name].status, checks[deployment.name].detail = ERROR, f"preprocessing failed: {exc}"
    request = LoadRequest(reference_path, "cpu", options.threads, entry.input.name, trust)
    outcome = run_isolated(run_logits_job, LogitsJob(RUNNERS[REFERENCE[0]], request, batches),
                           limits=entry.limits.over(options.limits))
    for deployment in entry.deployments:
        check = checks[deployment.name]
        if check.status:
            continue
        if not outcome.ok:
            check.status, check.detail = ERROR, f"reference model could not run: {outcome.message}"
            continue
        logits = outcome.value
        check.comparison = judge(batches[""], batches[deployment.name], logits[""], logits[deployment.name],
                                 deployment.tolerance)
        check.status, check.detail = check.comparison.status, check.comparison.detail
    return list(checks.values())


def _finish_all(result: ModelResult, status: str, detail: str, keep: Cell | None = None) -> ModelResult:
    for cell in result.cells:
        if cell is not keep:
            cell.status, cell.detail = status, detail
    return result


def _integrity_problem(record: ModelRecord, artifact: str, root: Path) -> str | None:
    """An artifact must be what the converter recorded: built from this model's weights, files unchanged."""
    art = record.artifacts[artifact]
    if not art.ok:
        return None
    weights = record.source.get("weights_sha256")
    if art.source_sha256 != weights:
        return "built from other weights than the current reference: re-run the converter"
    for rel in [art.path, *art.files]:
        if not (root / rel).resolve().is_relative_to(root.resolve()):
            return f"manifest path escapes the artifacts folder: {rel}"
    for rel, info in art.files.items():
        path = root / rel
        if not path.is_file():
            return f"artifact file missing: {rel}"
        if path.stat().st_size != info.size or file_sha256(path) != info.sha256:
            return f"artifact file changed since conversion (sha256 mismatch): {rel}"
    return None


@dataclass(frozen=True)
class CellJob:
    """Everything a worker needs for one cell; it pickles (the runner class goes by reference)."""

    runner: type[Runner]
    request: LoadRequest
    batch: np.ndarray
    timing: bool
    warmup: int
    runs: int
    throughput_batch: int


def run_cell_job(job: CellJob) -> dict:
    """In the worker: load, run twice (a runtime must agree with itself), time. Returns plain data."""
    runner = job.runner()
    try:
        runner.load(job.request)
    except DeviceUnavailable as exc:
        return {"skip": str(exc)}
    output, again = runner.run(job.batch), runner.run(job.batch)
    timings: list[Timing] = []
    if job.timing:
        timings = [measure(runner.run, batch_of(job.batch, size), job.warmup, job.runs)
                   for size in sorted({1, job.throughput_batch})]
    return {"output": output, "again": again, "config": runner.describe(), "timings": timings}


def _run_cell(cell: Cell, entry: ModelEntry, path: str, batch: np.ndarray, trust: bool,
              options: VerifyOptions, reference: np.ndarray | None = None) -> np.ndarray | None:
    """Run the cell in a worker, then compare. Fills the cell; returns the output when there is one."""
    request = LoadRequest(options.artifacts / path, cell.device, options.threads, entry.input.name, trust)
    job = CellJob(RUNNERS[cell.runtime], request, batch, options.timing, options.warmup, options.runs,
                  options.throughput_batch)
    outcome = run_isolated(run_cell_job, job, limits=entry.limits.over(options.limits, gpu=cell.device != "cpu"))
    if not outcome.ok:  # one runtime failing (even crashing or hanging) must not stop the others
        log.debug("%s failed:\n%s", cell.key, outcome.traceback)
        cell.status, cell.detail = ERROR, outcome.message
        return None
    value = outcome.value
    if "skip" in value:
        cell.status, cell.detail = SKIP, value["skip"]
        return None
    cell.config, cell.timings = value["config"], value["timings"]
    output, again = value["output"], value["again"]
    problem = output_problem(output, len(batch)) or output_problem(again, len(batch))
    if problem:
        cell.status, cell.detail = ERROR, problem
        return None
    tolerance = entry.tolerance_for(cell.runtime, cell.device)
    if cell.reference:
        # the reference is compared with its own second run: eager PyTorch must be deterministic
        cell.comparison = compare(output, again, tolerance)
        if cell.comparison.status == FAIL:
            cell.comparison.reason = ("two runs on the same input differ (left in train mode? dropout or batch "
                                      f"statistics active?): {cell.comparison.reason}")
    else:
        cell.comparison = compare(reference, output, tolerance)
        if cell.comparison.status == PASS and not np.array_equal(output, again):
            repeat = compare(output, again, tolerance)
            if repeat.status != PASS:
                cell.comparison.status, cell.comparison.reason = repeat.status, f"not deterministic: {repeat.reason}"
    cell.status, cell.detail = cell.comparison.status, cell.comparison.reason
    return output


def output_problem(output: object, samples: int) -> str | None:
    """A result counts only as a non-empty floating (samples, classes) array."""
    if not isinstance(output, np.ndarray):
        return f"runtime returned {type(output).__name__}, expected an array"
    if output.dtype.kind != "f":
        return f"runtime returned dtype {output.dtype}, expected floating point"
    if output.ndim != 2 or output.shape[0] != samples or output.shape[1] == 0:
        return f"runtime returned shape {output.shape}, expected ({samples}, classes)"
    return None
