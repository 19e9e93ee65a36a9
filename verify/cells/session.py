"""One model through every runtime on one shared input batch. The runners and the comparison are passed in;
each cell runs in a worker and comes back as a new, finished Cell."""
from __future__ import annotations

import logging
import re
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from converter.core.isolation import Limits, WorkerResult, run_isolated
from converter.core.outputs import Feeds
from converter.core.paddle_dygraph import CODE_FILE, PARAMS_FILE
from converter.core.samples import sample_feeds
from converter.core.vocabulary import ARTIFACTS, DEVICES, ONNX_ARTIFACTS, REFERENCE
from converter.manifest import ArtifactRecord, ModelRecord, integrity_problem
from converter.zoo import ModelEntry

from ..judge.accuracy import Score, drop_points, judge_precision
from ..judge.compare import (ERROR, FAIL, PASS, SHAPE, SIZE_SEPARATOR, SKIP, CompareFunc, Comparison, compare,
                             compare_outputs, output_and_size, with_reason, worst)
from ..judge.invariance import PROBE_BATCHES, batch_invariance, probe_feeds
from ..judge.kinds import output_kind
from ..judge.noise import NoiseFloor, judged_tolerance, reference_floors, reference_sample, with_noise_units
from ..judge.preprocessing import deployment_batch, reference_batch
from ..plan.cells import fixed_batch, plan_cells
from ..plan.inputs import CHUNK, ImageSet, InputFile, write_input_file
from ..results import Cell, ModelResult, PreprocessingCheck
from ..runners import Availability, DeviceUnavailable, LoadRequest, Runner
from ..tasks import Task, task_named
from .cache import CellCache, cell_facts, cell_value
from .localize import Divergence, LocalizeJob, run_localize_job
from .timing import (DEFAULT_BATCHES, MachineSpeed, Timing, TimingPolicy, WaitBudget, canary_readings, feeds_of,
                     measure_steady)

log = logging.getLogger(__name__)
# Normalised natural images have a standard deviation near 1 (pixels in 0-1 alone: about 0.25); one this small
# means a normalisation that flattens every input (a 0-255 std with 0-1 pixels), and a check that cannot fail.
MIN_INPUT_STD = 0.02
SAVED_SAMPLES = 256  # the preprocessed inputs are saved with the reports up to this many samples
CHECKED_IMAGES = 64  # the deployment preprocessing checks run on this many of the first images
LOCALIZED_SAMPLES = 64  # a failing cell is localised on its worst samples, at most this many
# Samples per call in a cell's parity pass; the first call is made again (a runtime must agree with itself). A batch
# of 8 costs a CPU runtime per image what a batch of 64 does, and the second run of 64 labelled images was a tenth
# of a cold verify.
PARITY_BATCH = 8
SWEEP_SEED = 3_000_017  # the shape sweep's generated inputs
PREPROCESSING_SEED = 4_000_037  # the other inputs beside the images of the deployment preprocessing check
Progress = Callable[[str], None]


class Lanes:
    """How many workers run at once in the whole run (over every model), and the wait for a free one."""

    def __init__(self, count: int = 1):
        self.count = count
        self._free = threading.BoundedSemaphore(count)

    def __enter__(self) -> None:
        self._free.acquire()

    def __exit__(self, *exc) -> None:
        self._free.release()


@dataclass
class Shared:
    """What the cells of a whole run share: the machine's full speed so far, the cache of cell results, and the
    lanes their workers run in."""

    speed: MachineSpeed = field(default_factory=MachineSpeed)
    cache: CellCache = field(default_factory=lambda: CellCache(None))
    wait: WaitBudget = field(default_factory=lambda: WaitBudget(TimingPolicy.run_wait_seconds))  # the whole run's
    progress: Progress | None = None  # hears what is running now, in a few words
    lanes: Lanes = field(default_factory=Lanes)
    gpu_lane: Lanes = field(default_factory=Lanes)  # one GPU cell at a time, in any lane: each is a CUDA context

    def before_timing(self) -> None:
        """Before the first cell this run times, the canary learns the machine (half a second); a run whose
        cells all come from the cache times nothing and never reads it."""
        if not self.speed.readings:
            self.speed.add(canary_readings(10))


@dataclass(frozen=True)
class SessionOptions:
    artifacts: Path
    devices: tuple[str, ...] = ("cpu", "cuda", "tensorrt")
    runtimes: tuple[str, ...] | None = None  # None: every runtime passed in
    threads: int = 1
    timing: bool = True
    policy: TimingPolicy = TimingPolicy()
    batches: tuple[int, ...] = DEFAULT_BATCHES  # timed batch sizes
    limits: Limits = Limits()  # per cell, unless the zoo entry sets its own


def verify_model(model: str, record: ModelRecord, entry: ModelEntry, images: ImageSet, options: SessionOptions,
                 availability: Availability, runners: Mapping[str, type[Runner]],
                 compare_func: CompareFunc = compare, stale: str | None = None,
                 shared: Shared | None = None, labels: list | None = None,
                 classes: list[str] | None = None) -> ModelResult:
    """Every cell of one model; `stale` says why the artifacts no longer match the zoo (then nothing runs);
    `shared` carries the machine's full speed and the cache from model to model; `labels` are the images'
    class indices when they are labelled, `classes` the model's class names (both read only by a task that
    scores labels)."""
    shared = shared or Shared()
    task = task_named(entry.task_name)
    result = ModelResult(model, trusted_pickle=record.trusted_pickle, outputs=task.output_order(entry),
                         classes=classes if task.labelled else None, labels=labels if task.labelled else None,
                         image_source=images.source if entry.image_input else f"{len(images)} generated samples",
                         accept_accuracy_drop=entry.accept_accuracy_drop,
                         sizes=[size_label(point) for point in entry.shape_points] if entry.dynamic else [],
                         output_kinds=entry.output_kinds, task=task.name)
    eager = record.artifacts.get("eager")
    result.flops_per_sample = eager.details.get("flops_per_sample") if eager is not None and eager.ok else None
    result.conversion_failures = {a: r.error or "failed" for a, r in record.artifacts.items() if r.failed}
    result.conversion_details = {a: r.error_detail for a, r in record.artifacts.items() if not r.ok and r.error_detail}
    result.artifact_bytes = {a: sum(f.size for f in r.files.values()) for a, r in record.artifacts.items() if r.ok}
    result.built_with = {a: text for a, r in record.artifacts.items() if r.ok and (text := built_with(r.details))}
    planned = plan_cells(model, record, runners, options, entry)
    if record.error or stale:
        return _stopped(result, planned, stale or f"model could not be built: {record.error}")

    with tempfile.TemporaryDirectory(prefix="parity-inputs-") as scratch:
        tell = _teller(shared.progress, model)
        inputs, spread = write_input_file(images, entry, Path(scratch) / "inputs.bin", progress=lambda done, total: tell(
            f"preprocessing {done}/{total} images" if entry.image_input else f"making {done}/{total} samples"))
        result.samples = len(inputs)
        result.input_names = list(images.names) if entry.image_input else [f"sample-{i}" for i in range(len(inputs))]
        if len(inputs) <= SAVED_SAMPLES:
            result.inputs = inputs.read()
        if spread is not None and spread < MIN_INPUT_STD:
            return _stopped(result, planned, f"the preprocessed inputs barely vary (std {spread:.3g} per channel "
                                             "over every image and pixel): every image looks alike to the model; "
                                             "check preprocess.mean/std (for pixels scaled to 0-1)")
        sweep = sweep_feeds(entry, images)
        _verify_cells(result, record, entry, task, images, inputs, sweep, planned, options, availability, runners,
                      compare_func, shared, result.labels, tell)
        shown = task.gallery(result) if entry.image_input and not result.error else []
        if shown:  # the report's thumbnails, before the inputs file goes
            result.gallery = dict(zip(shown, inputs.take(shown)[entry.image_input.name]))
    return result


def size_label(point: Mapping[str, int]) -> str:
    """A point of the shape sweep in words: 'sequence=77', 'height=320,width=288'."""
    return ",".join(f"{axis}={size}" for axis, size in point.items())


def sweep_feeds(entry: ModelEntry, images: ImageSet) -> dict[str, Feeds]:
    """The shape sweep's other points (the first is the run's own samples): PARITY_BATCH samples each, by their
    size label; an image input gets the run's first images preprocessed at the point's height and width."""
    from converter.core.images import preprocess_to

    image, sweep = entry.image_input, {}
    first = [images.image(i) for i in range(min(len(images), PARITY_BATCH))] if image is not None else []
    for point in entry.shape_points[1:]:
        given = {}
        if image is not None:
            height, width = image.size_at(point, 1)[2:]
            given[image.name] = preprocess_to(first, entry.preprocess, height, width)
        sweep[size_label(point)] = sample_feeds(entry, len(first) or PARITY_BATCH, SWEEP_SEED, point, given)
    return sweep


def _verify_cells(result: ModelResult, record: ModelRecord, entry: ModelEntry, task: Task, images: ImageSet,
                  inputs: InputFile,
                  sweep: dict[str, Feeds], planned: list[Cell], options: SessionOptions, availability: Availability,
                  runners: Mapping[str, type[Runner]], compare_func: CompareFunc, shared: Shared,
                  labels: list | None, tell: Progress) -> None:
    model, eager = result.model, record.artifacts.get("eager")
    problems = {artifact: integrity_problem(record, artifact, options.artifacts) for artifact in record.artifacts}
    reference_plan = next((c for c in planned if c.reference), None)
    if reference_plan is None or not eager.ok or problems["eager"]:
        why = (problems.get("eager") or result.conversion_failures.get("eager")
               or "no eager artifact in the manifest (add eager to formats)")
        _stopped(result, planned, f"no reference: {why}")
        return

    # The reference runs first; its comparison with its own second run also rejects a degenerate output.
    run = _CellRunner(entry, task, result.outputs, inputs, sweep, record.trusted_pickle, options, runners,
                      compare_func, shared, labels, tell, len(planned))
    reference_cell, reference = run(reference_plan, eager)
    result.noise_floor = run.noise_floor
    if reference_cell.status != PASS:
        _stopped(result, planned, f"reference (torch eager, CPU): {reference_cell.detail}", reference_cell)
        return
    result.inputs_digest = inputs.digest
    result.reference_sample = {name: reference_sample(reference[name]) for name in result.noise_floor}
    task.on_reference(result, entry, reference)
    reference_path = options.artifacts / eager.path
    deployments, gated = entry.deployment_checks
    if deployments and task.judges_deployments:
        tell("checking the deployment preprocessing")
        with shared.lanes:
            result.preprocessing = check_preprocessing(model, entry, task, reference_path, images,
                                                       record.trusted_pickle, options, runners[REFERENCE[0]],
                                                       shared.cache, eager.files)
    elif deployments and gated:  # declared, and nothing to judge them by: an ERROR that blocks, never a silent pass
        result.preprocessing = [PreprocessingCheck(model, d.name, d.library, ERROR, f"the {task.name} task does not "
                                                   "judge deployment preprocessing (remove deployments or choose a "
                                                   "task that does)", gated=True) for d in deployments]

    def finished(plan: Cell) -> Cell:
        if plan.reference:
            return reference_cell
        artifact = record.artifacts[plan.artifact]
        skip = runners[plan.runtime].unavailable(plan.device, availability)
        if artifact.skipped:
            return replace(plan, status=SKIP, detail=f"{plan.artifact} was not built: {artifact.error}")
        if not artifact.ok:
            return replace(plan, status=ERROR, conversion_failed=True,
                           detail=f"conversion to {plan.artifact} failed (see the conversion failures)")
        if problems[plan.artifact]:
            return replace(plan, status=ERROR, detail=problems[plan.artifact])
        if skip:
            return replace(plan, status=SKIP, detail=skip)
        cell, output = run(plan, artifact, reference, reference_cell.accuracy)
        cell = replace(cell, emulated=emulated_precision(cell, availability))
        if cell.status == FAIL and cell.precision == "fp32" and output is not None:  # reduced: differs by design
            feeds = _failing_feeds(cell, entry, task, reference, output, inputs, sweep)
            tell(f"localising {cell.runtime} on {cell.artifact}")
            with shared.lanes:
                cell = replace(cell, divergence=_localize(cell, entry, reference_path.parent,
                                                          options.artifacts / artifact.path, feeds,
                                                          record.trusted_pickle, options, result.noise_floor))
        return cell
    if shared.lanes.count == 1:
        result.cells = [finished(plan) for plan in planned]
    else:  # parity only: this model's cells side by side too, in the run's lanes (in the planned order)
        with ThreadPoolExecutor(shared.lanes.count, thread_name_prefix=f"cells-{model}") as pool:
            result.cells = list(pool.map(finished, planned))


def emulated_precision(cell: Cell, availability: Availability) -> str:
    """Why the cell's reduced precision ran without native instructions on this CPU ("" where it had them): its
    speed says nothing about a CPU that has them, and bf16 there is slower than fp32."""
    cpu = availability.cpu
    if cell.device == "cpu" and cell.precision == "bf16" and cell.status != SKIP and cpu.known and not cpu.bf16:
        return f"bf16 emulated: this CPU ({cpu.model}) has no bf16 instructions (avx512_bf16, amx_bf16)"
    return ""


def _failing_feeds(cell: Cell, entry: ModelEntry, task: Task, reference: Feeds, output: Feeds, inputs: InputFile,
                   sweep: dict[str, Feeds]) -> Feeds:
    """What a failing cell is localised on: the run's samples that differ most where it fails at the first size,
    else the inputs of the first other size where it fails."""
    failing = [key for key, c in cell.comparisons.items() if c.elementwise_failed]
    sizes = [output_and_size(key)[1] for key in failing]
    if failing and all(sizes):
        return sweep[sizes[0]]
    name = task.primary_output(entry) or next((key for key, size in zip(failing, sizes) if not size),
                                              entry.output_names[0])
    return inputs.take(worst_samples(reference[name], output[name], LOCALIZED_SAMPLES))


def worst_samples(reference: np.ndarray, output: np.ndarray, count: int) -> list[int]:
    """Every sample's index when there are at most `count`, else the `count` whose output differs most, in order."""
    if len(reference) <= count:
        return list(range(len(reference)))
    difference = np.abs(output.astype(np.float64) - reference).reshape(len(reference), -1).max(axis=1)
    return sorted(int(i) for i in np.argsort(-difference, kind="stable")[:count])


def _teller(progress: Progress | None, model: str) -> Progress:
    return (lambda text: None) if progress is None else (lambda text: progress(f"{model}: {text}"))


def _stopped(result: ModelResult, planned: list[Cell], error: str, reference: Cell | None = None) -> ModelResult:
    """The model cannot be verified: every planned cell (but the reference that ran, if any) is an ERROR."""
    result.error = error
    result.cells = [reference if reference is not None and cell.reference else replace(cell, status=ERROR, detail=error)
                    for cell in planned]
    return result


# runtime -> how its artifact is opened to read each layer's value: OpenVINO's and Paddle's own (float32) values; a
# Paddle artifact through x2paddle's generated program, which the paddle folder keeps with its weights when
# paddle_dygraph is built too. Another runtime on an ONNX file is localised in that file through ONNX Runtime: it
# finds where the file departs from the model, not a fault of the runtime's own kernels.
LOCALIZABLE = {"onnxruntime": "onnx", "torchscript": "torchscript", "openvino": "openvino",
               "paddle-inference": "paddle", "paddle-jit": "paddle", "paddle-dygraph": "paddle"}


def built_with(details: dict) -> str:
    """How an artifact was built, where its exporter records a choice (Paddle's route, the ONNX exporter)."""
    text = details.get("converter") or details.get("exporter") or ""
    if details.get("calibration"):
        text += f"; calibration: {details['calibration']}"
    if details.get("direct_route_error"):
        text += f"; the direct route failed first: {details['direct_route_error']}"
    return text


def _localize(cell: Cell, entry: ModelEntry, reference_folder: Path, artifact: Path, feeds: Feeds,
              trust: bool, options: SessionOptions, floors: Mapping[str, NoiseFloor] | None = None) -> Divergence:
    failing = [(name, c) for name, c in cell.comparisons.items() if c.elementwise_failed]
    if not failing:
        unrunnable = next((name for name, c in cell.comparisons.items() if SHAPE in c.failed_checks), None)
        if unrunnable is not None:
            return Divergence(False, f"not localised: the runtime could not run the inputs of {unrunnable} at all "
                                     "(its error names the operation)")
        if any(c.matched_kind and c.status != PASS for c in cell.comparisons.values()):
            return Divergence(False, "not localised: detections and masks are judged by matching, not element by "
                                     "element as a layer's values would be")
        return Divergence(False, "not localised: the cell fails only on cosine, top-1 or neighbours, and every value "
                                 "is within the elementwise tolerance that each layer would be held to")
    opened_as = LOCALIZABLE.get(cell.runtime) or ("onnx" if cell.artifact in ONNX_ARTIFACTS else None)
    if opened_as == "paddle":
        artifact = artifact.with_name(CODE_FILE)
        if not artifact.with_name(PARAMS_FILE).is_file():
            return Divergence(False, f"not localised: {cell.artifact} keeps x2paddle's program ({CODE_FILE}) "
                                     f"without its dygraph weights ({PARAMS_FILE}); add paddle_dygraph to the zoo's "
                                     "formats to localise Paddle layer by layer")
    if opened_as is None:
        if ARTIFACTS[cell.artifact].requires in ONNX_ARTIFACTS:  # a TVM library, a TensorRT engine
            return Divergence(False, f"layer localisation does not apply to {cell.artifact}, compiled code without "
                                     f"per-layer outputs; the ONNX model it was built from "
                                     f"({ARTIFACTS[cell.artifact].requires}) is localised in its onnxruntime cell")
        return Divergence(False, f"layer localisation is not implemented for {cell.runtime} on {cell.artifact}")
    output = output_and_size(failing[0][0])[0]
    job = LocalizeJob(opened_as, reference_folder, artifact,
                      feeds if fixed_batch(entry, cell.artifact) is None else probe_feeds(feeds, 1),
                      judged_tolerance(entry, cell.runtime, cell.artifact, cell.device, output, floors or {}), trust,
                      options.threads)
    outcome = run_isolated(run_localize_job, job, limits=entry.limits.over(options.limits))
    if not outcome.ok:
        log.debug("localisation of %s failed:\n%s", cell.key, outcome.traceback)
        return Divergence(False, f"localisation failed: {outcome.message}")
    return outcome.value


@dataclass(frozen=True)
class ReferenceJob:
    """The reference model on several input batches (one per preprocessing), in a worker: one output each."""

    runner: type[Runner]
    request: LoadRequest
    batches: dict[str, np.ndarray]  # the image input's, by preprocessing
    output: str
    others: Feeds = field(default_factory=dict)  # the model's other inputs for these samples


def run_reference_job(job: ReferenceJob) -> dict[str, np.ndarray]:
    runner = job.runner()
    runner.load(job.request)
    image = next(name for name in job.request.inputs if name not in job.others)
    return {name: runner.run({**job.others, image: batch})[job.output] for name, batch in job.batches.items()}


def check_preprocessing(model: str, entry: ModelEntry, task: Task, reference_path: Path, images: ImageSet,
                        trust: bool, options: SessionOptions, reference_runner: type[Runner],
                        cache: CellCache | None = None, files: Mapping | None = None) -> list[PreprocessingCheck]:
    """Each deployment preprocessing against the reference transform, through the reference model, judged by
    the task on its primary output. The deployments the zoo declares gate; without any declared, the default
    ones run as information."""
    deployments, gated = entry.deployment_checks
    if not deployments:
        return []
    failed: dict[str, str] = {}
    first = [images.image(index) for index in range(min(len(images), CHECKED_IMAGES))]
    batches = {"": reference_batch(first, entry.preprocess)}  # "" cannot be a deployment's name
    for deployment in deployments:
        try:
            batches[deployment.name] = deployment_batch(first, deployment, entry.preprocess)
        except Exception as exc:  # a deployment's settings that its library cannot apply
            failed[deployment.name] = f"preprocessing failed: {exc}"
    request = LoadRequest(reference_path, "cpu", options.threads, entry.input_names, tuple(entry.output_names), trust)
    image = entry.image_input.name
    others = {name: array for name, array in sample_feeds(entry, len(first), PREPROCESSING_SEED,
                                                          given={image: batches[""]}).items() if name != image}
    cache = cache or CellCache(None)
    output = task.primary_output(entry)
    key = cache.key("logits", {"runner": _qualified(reference_runner), "files": _hashes(files),
                               "request": _request_parts(request), "logits": output}, {**batches, **others})
    found = cache.load(key) if files else None
    if found is not None:
        outcome = WorkerResult(True, value=found[1])
    else:
        outcome = run_isolated(run_reference_job, ReferenceJob(reference_runner, request, batches, output, others),
                               limits=entry.limits.over(options.limits))
        if outcome.ok and files:
            cache.store(key, {}, outcome.value)
    checks = []
    for deployment in deployments:
        base = PreprocessingCheck(model, deployment.name, deployment.library, ERROR, "", gated=gated)
        if deployment.name in failed:
            checks.append(replace(base, detail=failed[deployment.name]))
        elif not outcome.ok:
            checks.append(replace(base, detail=f"reference model could not run: {outcome.message}"))
        else:
            outputs = outcome.value
            comparison = task.judge_deployment(entry, batches[""], batches[deployment.name], outputs[""],
                                               outputs[deployment.name], deployment.tolerance)
            checks.append(replace(base, status=comparison.status, detail=comparison.detail, comparison=comparison))
    return checks


@dataclass(frozen=True)
class CellJob:
    """Everything a worker needs for one cell; it pickles (the runner class goes by reference, the inputs as a
    file's name: the worker reads them CHUNK samples at a time)."""

    runner: type[Runner]
    request: LoadRequest
    inputs: InputFile
    timing: bool
    policy: TimingPolicy
    batches: tuple[int, ...]
    full_speed: float | None  # the machine's full canary GFLOP/s so far in this run (None: not known yet)
    max_batch: int | None = None  # an artifact built with a fixed batch size takes the samples this many at a time
    wait_seconds: float = TimingPolicy.run_wait_seconds  # left in this run for waiting on the machine's speed
    progress_file: Path | None = None  # where the worker says how far it is
    sweep: dict[str, Feeds] = field(default_factory=dict)  # the shape sweep's other sizes: a few samples each
    noise: bool = False  # the reference: its first samples computed otherwise too, for its noise floor


def run_cell_job(job: CellJob) -> dict:
    """In the worker: load, run every sample PARITY_BATCH at a time, run the first batch again (a runtime must agree
    with itself), run the first samples alone and in an odd batch, run the other sizes of the shape sweep (an
    error there is that size's answer, not the cell's), time. Returns plain data."""
    tell = _progress_writer(job.progress_file)
    tell("loading")
    runner = job.runner()
    try:
        runner.load(job.request)
    except DeviceUnavailable as exc:
        return {"skip": str(exc)}
    run = runner.run if job.max_batch is None else in_chunks(runner.run, job.max_batch)
    samples = len(job.inputs)
    parts = []
    for start in range(0, samples, CHUNK):  # read CHUNK samples at a time, run PARITY_BATCH at a time
        chunk = job.inputs.read(start, start + CHUNK)
        count = min(start + CHUNK, samples) - start
        parts += [run(slice_feeds(chunk, at, at + PARITY_BATCH)) for at in range(0, count, PARITY_BATCH)]
        tell(f"{min(start + CHUNK, samples)}/{samples} samples")
    output = concatenated(parts)
    head = job.inputs.read(0, max((*job.batches, *PROBE_BATCHES, PARITY_BATCH)))
    again = run(probe_feeds(head, PARITY_BATCH))
    sweep: dict[str, Feeds | str] = {}
    for label, feeds in job.sweep.items():
        tell(f"at {label}")
        try:
            sweep[label] = run(feeds)
        except Exception as exc:  # a runtime that cannot take this size: that size FAILs, the cell goes on
            sweep[label] = runtime_failure(exc)
    # the same first samples alone and in an odd batch (an artifact built for batch 1 has nothing to compare)
    probes = {size: run(probe_feeds(head, size)) for size in PROBE_BATCHES
              if job.max_batch is None and size < samples}
    if job.noise:
        tell("measuring the noise floor")
    noise = runner.noise_variants(probe_feeds(head, PARITY_BATCH)) if job.noise else {}
    timings: list[Timing] = []
    canaries: list[float] = []
    budget = WaitBudget(job.wait_seconds)
    for size in job.batches if job.timing else ():
        tell(f"timing batch {size}")
        # one batch at a time, in the same worker, on the samples every runtime gets (repeated to fill a batch)
        timing, readings = measure_steady(run, feeds_of(head, size), job.policy, job.full_speed, budget=budget)
        timings.append(timing)
        canaries += readings
    return {"output": output, "again": again, "config": runner.describe(), "timings": timings, "canaries": canaries,
            "waited": job.wait_seconds - budget.left, "probes": probes, "sweep": sweep, "noise": noise}


# Where a runtime's error names the operation that could not run: ONNX Runtime, OpenVINO, TorchScript, torch.export
FAILED_OPERATION = ((re.compile(r"running (\w+) node\. Name:'([^']+)'"), "its {0} node '{1}' failed"),
                    (re.compile(r"\] (\w+) node with name '([^']+)'"), "its {0} node '{1}' failed"),
                    (re.compile(r"^\s*(\S.*?)\s*$\n\s*~+ <--- HERE", re.MULTILINE), "it failed at `{0}`"),
                    (re.compile(r"Guard failed: (.*)$", re.MULTILINE), "the program's shape guard {0} failed"))


def runtime_failure(exc: Exception) -> str:
    """A runtime's error in one short line, naming the operation that failed where the message says it."""
    text = str(exc)
    for pattern, words in FAILED_OPERATION:
        found = pattern.search(text)
        if found:
            return f"{words.format(*(group[:160] for group in found.groups()))} ({type(exc).__name__})"
    return " ".join(f"{type(exc).__name__}: {text}".split())[:300]


def _progress_writer(path: Path | None) -> Progress:
    def tell(text: str) -> None:
        if path is not None:
            path.write_text(text)
    return tell


def in_chunks(run, size: int):
    """`run` over the samples `size` at a time, the outputs concatenated: for artifacts with a fixed batch."""
    def chunked(feeds: Feeds) -> Feeds:
        total = len(next(iter(feeds.values())))
        parts = [run(slice_feeds(feeds, start, start + size)) for start in range(0, total, size)]
        return concatenated(parts)
    return chunked


def slice_feeds(feeds: Mapping[str, np.ndarray], start: int, stop: int) -> Feeds:
    """Samples start to stop of every input, contiguous."""
    return {name: np.ascontiguousarray(array[start:stop]) for name, array in feeds.items()}


def concatenated(parts: list[Feeds]) -> Feeds:
    """Per output, its arrays from `parts` one after another (the outputs of consecutive chunks of samples)."""
    return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}


@dataclass
class _CellRunner:
    """Runs planned cells of one model in workers and compares them: returns the finished cell and its outputs."""

    entry: ModelEntry
    task: Task
    order: list[str]  # the outputs in the report's order
    inputs: InputFile
    sweep: dict[str, Feeds]  # the shape sweep's other sizes, by label
    trust: bool
    options: SessionOptions
    runners: Mapping[str, type[Runner]]
    compare_func: CompareFunc
    shared: Shared
    labels: list | None = None
    tell: Progress = lambda text: None
    planned: int = 0  # cells in this model, for the progress line
    counted: int = 0  # cells run so far
    noise_floor: dict[str, NoiseFloor] = field(default_factory=dict)  # the reference's, once it has run
    _counting: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, plan: Cell, artifact: ArtifactRecord, reference: Feeds | None = None,
                 reference_accuracy: Score | None = None) -> tuple[Cell, Feeds | None]:
        """The finished cell and its outputs: each declared output by name, and at the sweep's other sizes as
        'name @ size' (see with_sizes)."""
        entry, options = self.entry, self.options
        request = LoadRequest(options.artifacts / artifact.path, plan.device, options.threads, entry.input_names,
                              tuple(entry.output_names), self.trust)
        runner, max_batch = self.runners[plan.runtime], fixed_batch(entry, plan.artifact)
        fixed_shape = entry.is_fixed_shape(plan.artifact)  # built at the export size: the other sizes are SKIP
        sweep_feeds = {} if fixed_shape else self.sweep
        cache = self.shared.cache
        key = cache.key("cell", {"runner": _qualified(runner), "files": _hashes(artifact.files),
                                 "request": _request_parts(request), "timing": options.timing,
                                 "policy": asdict(options.policy), "batches": options.batches,
                                 "max_batch": max_batch, "inputs": [self.inputs.digest, len(self.inputs),
                                                                    repr(self.inputs.fields)]},
                        {f"{label}/{name}": array for label, feeds in sweep_feeds.items()
                         for name, array in feeds.items()})
        found = cache.load(key)
        if found is not None:
            value = cell_value(*found)
        else:
            with self._counting:
                self.counted += 1
                what = f"cell {self.counted}/{self.planned} {plan.runtime} on {plan.artifact} ({plan.device})"
            self.tell(what)
            progress_file = self.inputs.path.with_name(f"progress-{plan.runtime}-{plan.artifact}-{plan.device}.txt")
            progress_file.unlink(missing_ok=True)

            def heard() -> None:
                try:
                    self.tell(f"{what}: {progress_file.read_text()}")
                except OSError:
                    pass
            if options.timing:
                self.shared.before_timing()
            job = CellJob(runner, request, self.inputs, options.timing, options.policy, options.batches,
                          self.shared.speed.full, max_batch, self.shared.wait.left, progress_file, sweep_feeds,
                          noise=plan.reference and any(not output_kind(kind).matched
                                                       for kind in entry.output_kinds.values()))
            with self.shared.lanes, (self.shared.gpu_lane if DEVICES[plan.device].gpu else nullcontext()):
                outcome = run_isolated(run_cell_job, job, on_wait=heard,
                                       limits=entry.limits.over(options.limits, gpu=DEVICES[plan.device].gpu))
            if not outcome.ok:  # one runtime failing (even crashing or hanging) must not stop the others
                log.debug("%s failed:\n%s", plan.key, outcome.traceback)
                return replace(plan, status=ERROR, detail=outcome.message), None
            value = outcome.value
            if "skip" in value:
                return replace(plan, status=SKIP, detail=value["skip"]), None
            self.shared.speed.add(value["canaries"])
            self.shared.wait.spend(value["waited"])
            cache.store(key, *cell_facts(value))
        ran = replace(plan, config=value["config"], timings=tuple(value["timings"]), cached=value.get("cached"))
        output, again, sweep = value["output"], value["again"], value.get("sweep", {})
        samples, names, kinds = len(self.inputs), entry.output_names, entry.output_kinds
        problem = output_problem(output, kinds, samples) or output_problem(again, kinds, min(samples, PARITY_BATCH))
        if problem:
            return replace(ran, status=ERROR, detail=problem), None
        # at another size, an error or outputs that do not fit (a batch read from a baked-in shape) fail that size
        misfits = {label: f"the runtime failed: {outputs}" if isinstance(outputs, str) else
                   output_problem(outputs, kinds, len(next(iter(self.sweep[label].values()))))
                   for label, outputs in sweep.items()}
        sweep = {label: outputs for label, outputs in sweep.items() if not misfits[label]}
        failed_sizes = {label: problem for label, problem in misfits.items() if problem}
        if plan.reference and failed_sizes:
            label, error = next(iter(failed_sizes.items()))
            return replace(ran, status=ERROR, detail=f"the model itself fails at {label} (check dynamic): {error}"), None
        ran = replace(ran, **self.task.cell_facts(entry, output, self.labels))
        budget = entry.budget_for(plan.precision)
        if plan.reference:
            self.noise_floor = reference_floors(probe_feeds(output, PARITY_BATCH), value.get("probes", {}),
                                                value.get("noise", {}), kinds)
        tolerances = {name: judged_tolerance(entry, plan.runtime, plan.artifact, plan.device, name, self.noise_floor)
                      for name in names}
        if budget is not None and not plan.reference:  # detections and masks keep their checks, at its limits
            tolerances = {name: budget.limit(tolerance) for name, tolerance in tolerances.items()}
        full = with_sizes(output, sweep)
        if plan.reference:
            # the reference is compared with its own second run: eager PyTorch must be deterministic
            comparisons = compare_outputs(probe_feeds(output, PARITY_BATCH), again, tolerances, kinds,
                                          self.compare_func, vacuous=False)
            comparisons = {name: c if c.status != FAIL else with_reason(
                c, FAIL, "two runs on the same input differ (left in train mode? dropout or batch statistics "
                         f"active?): {c.reason}") for name, c in comparisons.items()}
        else:
            sized = {key: tolerances[output_and_size(key)[0]] for key in reference}
            sized_kinds = {key: kinds[output_and_size(key)[0]] for key in reference}
            present = {key: array for key, array in reference.items() if key in full}
            comparisons = compare_outputs(present, full, sized, sized_kinds, self.compare_func)
            if plan.precision == "fp32":
                comparisons = with_noise_units(comparisons, present, full, self.noise_floor)
            for key in reference:  # at a size the runtime could not take (or returned no outputs for)
                label = output_and_size(key)[1]
                if key in full:
                    continue
                if fixed_shape:
                    comparisons[key] = Comparison(SKIP, f"not run at {label}: the zoo builds {plan.artifact} at "
                                                        "the export size only (fixed_shape)")
                    continue
                error = failed_sizes.get(label, "the runtime returned nothing at this size")
                comparisons[key] = Comparison(FAIL, error, failures=(error,), failed_checks=(SHAPE,))
            first = probe_feeds(output, PARITY_BATCH)
            if worst(comparisons)[0] == PASS and any(not np.array_equal(first[n], again[n]) for n in output):
                repeat = compare_outputs(first, again, tolerances, kinds, self.compare_func, vacuous=False)
                comparisons = {name: c if repeat.get(name, c).status == PASS else with_reason(
                    c, repeat[name].status, f"not deterministic: {repeat[name].reason}")
                    for name, c in comparisons.items()}
        sizes = ["", *self.sweep]  # the report's order: size by size, the task's order within each
        comparisons = {key: comparisons[key] for key in sorted(comparisons, key=lambda key: (
            sizes.index(output_and_size(key)[1]), self.order.index(output_and_size(key)[0])))}
        judged = {name: c for name, c in comparisons.items() if c.status != SKIP}  # the sizes it was not built for
        if budget is not None and not plan.reference:
            status, detail = judge_precision(judged, budget, plan.precision,
                                             drop_points(reference_accuracy, ran.accuracy),
                                             self.task.agreement(entry, reference, output))
            # each output's verdict is the budget's (its metrics stay: how far from fp32 it is)
            comparisons = {name: with_reason(c, status, detail) if name in judged else c
                           for name, c in comparisons.items()}
        else:
            status, detail = worst(judged)
        agreed: bool | None = None
        if max_batch is not None:
            invariance = f"not checked: {plan.artifact} was built for batch {max_batch} only"
        else:
            agreed, invariance = batch_invariance(output, value.get("probes", {}), tolerances, budget, kinds)
            # the reference's own batch variance is PyTorch's: reported, not blocking (it is the ground truth)
            if agreed is False and status == PASS and not plan.reference:
                status, detail = FAIL, f"not batch-invariant: {invariance}"
        return replace(ran, status=status, detail=detail, comparisons=comparisons, batch_invariance=invariance,
                       batch_invariant=agreed), full


def with_sizes(output: Feeds, sweep: Mapping[str, Feeds | str]) -> Feeds:
    """A cell's outputs at the first size by name, then at each other size it ran as 'name @ size'."""
    return {**output, **{f"{name}{SIZE_SEPARATOR}{label}": array for label, outputs in sweep.items()
                         if not isinstance(outputs, str) for name, array in outputs.items()}}


def _qualified(runner: type) -> str:
    return f"{runner.__module__}:{runner.__qualname__}"


def _hashes(files: Mapping | None) -> dict[str, str]:
    return {name: record.sha256 for name, record in (files or {}).items()}


def _request_parts(request: LoadRequest) -> dict:
    return {"device": request.device, "threads": request.threads, "inputs": request.inputs,
            "outputs": request.outputs, "trust": request.trust_pickle}


def output_problem(outputs: object, kinds: Mapping[str, str], samples: int) -> str | None:
    """A result counts only as every declared output (`kinds`: each one's kind), a non-empty numeric array with one
    row per sample; class scores floating point, (samples, classes)."""
    declared = list(kinds)
    if not isinstance(outputs, dict) or sorted(outputs) != sorted(declared):
        got = sorted(outputs) if isinstance(outputs, dict) else type(outputs).__name__
        return f"runtime returned outputs {got}, expected {sorted(declared)}"
    for name in declared:
        output = outputs[name]
        if not isinstance(output, np.ndarray):
            return f"output '{name}': runtime returned {type(output).__name__}, expected an array"
        classes = output_kind(kinds[name]).classes
        if output.dtype.kind not in ("f" if classes else "fiub"):
            expected = "floating point" if classes else "numbers"
            return f"output '{name}': runtime returned dtype {output.dtype}, expected {expected}"
        if output.ndim < 1 or output.shape[0] != samples or output.size == 0 or (classes and output.ndim != 2):
            expected = f"({samples}, classes)" if classes else f"({samples}, ...)"
            return f"output '{name}': runtime returned shape {output.shape}, expected {expected}"
    return None
