"""The verifier as a library: `run(options)` returns a VerifyRun (results, verdict, environment) and
`write_reports(run, folder)` writes them. `python -m verify` is a thin shell over these two; a notebook, a CI
plugin or the self-test calls them directly, passing its own runners and comparison if it wants."""
from __future__ import annotations

import json
import logging
import os
import traceback
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from pathlib import Path

from converter.core.errors import WorkbenchError
from converter.core.files import atomic_write
from converter.core.shards import Shard
from converter.core.isolation import Limits, preload
from converter.core.vocabulary import DEVICES, REFERENCE, RUNTIMES
from converter.manifest import read_manifest
from converter.zoo import ModelEntry

from .cells.cache import CACHE_FOLDER, CellCache, machine_fingerprint
from .cells.environment import describe_machine, describe_run, physical_cores
from .cells.peak import PeakMeasurement, describe_peak, measure_peak
from .cells.session import Lanes, SessionOptions, Shared, verify_model
from .cells.speed_memory import SPEED_FILE, remember_speed, remembered_speed
from .cells.timing import DEFAULT_BATCHES, TimingPolicy, WaitBudget
from .judge.compare import ERROR, CompareFunc, compare
from .judge.gate import Verdict, decide
from .plan.cells import plan_cells
from .plan.entries import ResolvedEntries, resolve_entries
from .plan.inputs import ImageSet, InputError, load_images, save_inputs, synthetic_images
from .report.charts import write_timing_charts, write_tradeoff_charts
from .report.ci import junit_xml, step_summary
from .report.markdown import inputs_file, markdown, parity_frame, preprocessing_frame, summary
from .report.results_file import RunScope, write_results
from .report.timing_report import timing_frame
from .results import ModelResult
from .runners import Availability, Runner, registered_runners
from .tasks import every_task, task_named

log = logging.getLogger(__name__)
# What the cell, peak and localisation workers import beyond the frameworks (half a second): once, in the fork
# server, not in every cell's worker. Asked for on import, so that it holds wherever the fork server starts later
# (a test session converts before it verifies). Not openvino: see converter.core.openvino_cpu.without_telemetry.
WORKER_MODULES = ("verify.cells.session", "verify.cells.peak")
PEAK_KEPT_S = 86400.0  # how long a run reuses the machine's peak an earlier one measured
preload(*WORKER_MODULES)


class OptionsError(WorkbenchError):
    """Options the verifier cannot run with (a usage error: exit code 2)."""


@dataclass(frozen=True)
class VerifyOptions:
    artifacts: Path = Path("artifacts")
    zoo: Path | None = None  # tolerances, waivers and preprocessing; None: the zoo file the manifest names
    images: Path | None = None  # a folder of images; None: `num_images` seeded synthetic ones
    num_images: int = 8
    models: tuple[str, ...] | None = None  # None: every model in the manifest
    runtimes: tuple[str, ...] | None = None  # None: every runtime passed in; the reference always runs
    devices: tuple[str, ...] | None = None  # None: every registered device (unavailable ones SKIP)
    threads: int = 0  # per runtime; 0: the physical cores
    timing: bool = True
    policy: TimingPolicy = TimingPolicy()
    batches: tuple[int, ...] = DEFAULT_BATCHES  # timed batch sizes
    limits: Limits = Limits()  # per cell, unless the zoo entry sets its own
    partial: bool = False  # accept a run that leaves models, runtimes or devices out as a (partial) verdict
    command: str | None = None  # the command line, for the report's provenance
    trusted_modules: tuple[str, ...] = ()  # as the zoo's trusted_modules (--trust-module)
    cache: bool = True  # reuse the results of cells whose inputs are unchanged (artifacts/.cache/verify)
    run_id: str = ""  # stamped on every report file (empty: a new one)
    shard: Shard | None = None  # only this shard's models, by name hash (join the shards with verify.report.merge)


@dataclass
class VerifyRun:
    results: list[ModelResult]
    verdict: Verdict
    environment: dict
    entries: dict[str, ModelEntry] = field(default_factory=dict)
    provenance: dict = field(default_factory=dict)  # what was tested, when, with what
    scope: RunScope = field(default_factory=RunScope)  # which models of which zoo, as which shard
    drawn_charts: Path | None = None  # charts drawn before, by what they show (with the cell cache)
    kept_inputs: Path | None = None  # inputs files written before, by what they hold (with the cell cache)
    repairs: list = field(default_factory=list)  # verify.repair.run.Repair, when --repair searched the failing cells
    # the performance gate's lines against a baseline run ({"blocking": [...], "notes": [...]}; verify.history.runs):
    # in the verdict already, and kept so that a merge of shards applies them again
    baseline: dict = field(default_factory=dict)


def run(options: VerifyOptions, runners: Mapping[str, type[Runner]] | None = None,
        compare_func: CompareFunc = compare, availability: Availability | None = None,
        on_model: Callable[[ModelResult, Verdict], None] | None = None,
        on_progress: Callable[[str], None] | None = None) -> VerifyRun:
    """Verify every selected model. OptionsError, ManifestError, ZooError or InputError when the options cannot
    run; an unexpected error inside one model makes that model an ERROR and the others still run.
    `on_model(result, verdict)` hears of each model as it finishes, with that model's own verdict;
    `on_progress(text)` what runs now, about every second."""
    runners = dict(registered_runners() if runners is None else runners)
    _check(options, runners)
    manifest = read_manifest(options.artifacts)
    unknown = [m for m in options.models or () if m not in manifest.models]
    if unknown:
        raise OptionsError(f"--models: {unknown} not in {options.artifacts / 'manifest.json'} "
                           f"(has: {sorted(manifest.models)})")
    entries = resolve_entries(manifest, options.zoo, str(options.artifacts / "manifest.json"), options.trusted_modules)
    names = options.models or list(manifest.models)
    if options.shard is not None:
        names = options.shard.select(names)
    images = load_images(options.images) if options.images else synthetic_images(options.num_images)
    _check_distinct(images, options.images or "--num-images")
    inputs = model_inputs(entries, names, images)
    threads = options.threads or physical_cores()
    # --devices naming a GPU asks the frameworks even where no device node shows one (a node made on first use)
    availability = availability or Availability.probe(
        gpu_visible=True if set(options.devices or ()) & {"cuda", "tensorrt"} else None)
    session = SessionOptions(artifacts=options.artifacts, devices=options.devices or availability.devices,
                             runtimes=options.runtimes, threads=threads, timing=options.timing,
                             policy=options.policy, batches=options.batches,
                             limits=options.limits)
    left_out = _left_out(options, manifest, runners)
    by_name = {name: resolved.entry for name, resolved in entries.items()}
    shared = Shared(cache=CellCache(options.artifacts / CACHE_FOLDER if options.cache else None),
                    wait=WaitBudget(options.policy.run_wait_seconds), progress=on_progress)
    peak = {}
    speed_file, machine = options.artifacts / SPEED_FILE, machine_fingerprint() if options.timing else {}
    if options.timing and names:  # before any cell, each kernel in a worker of its own
        shared.speed.known = remembered_speed(speed_file, machine)
        peak = remembered_peak(shared.cache, threads, {cell.precision for name in names for cell in plan_cells(
            name, manifest.models[name], runners, session, by_name.get(name)) if cell.device == "cpu"})

    def verify_one(name: str, session: SessionOptions) -> ModelResult:
        resolved, record = entries[name], manifest.models[name]
        try:
            model_images, labels, classes, note = inputs[name]
            result = verify_model(name, record, resolved.entry, model_images, session, availability, runners,
                                  compare_func, stale=resolved.stale, shared=shared, labels=labels, classes=classes)
            result.accuracy_note = note
        except Exception as exc:  # a bug or a broken file in one model must not lose the others' results
            log.debug("verifying %s failed:\n%s", name, traceback.format_exc())
            error = f"unexpected {type(exc).__name__}: {' '.join(str(exc).split())}"
            cells = [replace(cell, status=ERROR, detail=error)
                     for cell in plan_cells(name, record, runners, session, by_name.get(name))]
            entry = by_name.get(name)
            result = ModelResult(name, cells=cells, error=error, task=entry.task_name if entry else "classification")
        return result

    lanes = side_by_side(options.timing, min(threads, physical_cores()))
    threads_each, jobs = max(1, threads // lanes), max(1, min(lanes, len(names)))
    shared.lanes = Lanes(lanes)
    done: dict[str, ModelResult] = {}
    # Parity alone: the cells run side by side, of one model and of several, the cores split between them (a
    # cell's own work is mostly one thread: loading, compiling, Python). Timing needs the machine to itself: one
    # cell at a time.
    pool = ThreadPoolExecutor(max_workers=jobs)
    try:
        futures = {pool.submit(verify_one, name, replace(session, threads=threads_each)): name
                   for name in names}
        for future in as_completed(futures):
            result = done[futures[future]] = future.result()
            if on_model is not None:
                on_model(result, decide([result], by_name))
    except BaseException:  # Ctrl-C (or a failing on_model): the models not started yet never start
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()
    results = [done[name] for name in names]
    shared.cache.prune()
    verdict = decide(results, by_name, left_out, accept_partial=options.partial)
    provenance = describe_run(options.command, options.artifacts / "manifest.json",
                              options.zoo or Path(manifest.zoo.get("path", "")), images, left_out,
                              options.run_id)
    scope = _scope(options, entries, names)
    if options.shard is not None:
        provenance["shard"] = (f"{options.shard} ({len(names)} of the zoo's {len(scope.zoo_models)} models; "
                               "`python -m verify merge` joins the shards' reports)")
    environment = describe_machine(threads)
    if lanes > 1:
        environment["cells_side_by_side"] = (f"{lanes} (parity only: each runtime on {threads_each} of the "
                                             f"{threads} threads; {jobs} models at once)")
    absent = [device for device in DEVICES if device not in session.devices]
    environment["devices"] = ", ".join(session.devices) + (
        f" ({'asked for' if options.devices else 'present here'}; not run: {', '.join(absent)}, except cells the zoo "
        "requires)" if absent else "")
    if options.timing and names:
        environment["timing_method"] = options.policy.describe()
        environment.update(describe_peak(peak))
        readings = shared.speed.readings
        waited = options.policy.run_wait_seconds - shared.wait.left
        speed = shared.speed
        remember_speed(speed_file, machine, speed.seen, speed.known)
        earlier = (f" (an earlier run's: this run's own best was {speed.seen:.0f}, so the machine ran slow "
                   "throughout)" if speed.known and speed.seen and speed.known > speed.seen * 1.02 else "")
        environment["machine_speed"] = (
            "not read: no cell was timed in this run" if not readings else
            f"matmul canary at full speed {speed.full:.0f} GFLOP/s{earlier}; {len(readings)} readings from "
            f"{min(readings):.0f} to {max(readings):.0f}; {waited:.0f} s of the {options.policy.run_wait_seconds:g} s "
            "allowed spent waiting for full speed or timing again"
            + (" (all of it: later batches were timed at once)" if shared.wait.left <= 0 else ""))
    kept = options.artifacts / CACHE_FOLDER if options.cache else None
    return VerifyRun(results, verdict, environment, by_name, provenance, scope,
                     kept and kept / "charts", kept and kept / "inputs")


def remembered_peak(cache: CellCache, threads: int, precisions: set[str]) -> PeakMeasurement:
    """The machine's peak GFLOP/s per precision: an earlier run's, for a day, where the machine, tools and code are
    the same (the cache's key), else measured now (about 10 s) and kept."""
    key = cache.key("peak", {"threads": threads, "precisions": sorted(precisions)}, {})
    found = cache.load(key, max_age_s=PEAK_KEPT_S)  # a peak read in a slow spell is not kept for ever
    if found is not None:
        try:
            return PeakMeasurement.from_facts(found[0])
        except (KeyError, TypeError, ValueError):  # an entry this code cannot read: measured again
            pass
    peak = measure_peak(threads, precisions=precisions)
    # a kernel that fails here (no bf16 instructions) fails on every run on this machine: kept as it is
    cache.store(key, peak.facts(), {})
    return peak


def side_by_side(timing: bool, threads: int) -> int:
    """How many cells run at once: one when timing (each figure needs the machine to itself), else as many as
    there are `threads` (the run's, at most the physical cores) to give each at least one (2 cores: 2)."""
    return 1 if timing else max(1, threads)


def _scope(options: VerifyOptions, entries: ResolvedEntries, names: list[str]) -> RunScope:
    settings = {"models": list(options.models) if options.models else None,
                "runtimes": list(options.runtimes) if options.runtimes else None,
                "devices": list(options.devices) if options.devices else None,
                "images": str(options.images) if options.images else None,
                "num_images": None if options.images else options.num_images,
                "timing": options.timing, "batches": list(options.batches), "partial": options.partial}
    return RunScope(options.shard, entries.zoo_models, entries.zoo_sha256, list(names), settings)


def _check_distinct(images: ImageSet, origin: object) -> None:
    if images.distinct is None:  # load_images finds out while it reads a folder; others are looked at here
        images.distinct = _some_differ(images)
    if not images.distinct:  # one input cannot show that an output depends on the input, nor catch most reorderings
        raise OptionsError(f"{origin}: at least 2 distinct images are needed")


def _some_differ(images: ImageSet) -> bool:
    first = None
    for image in images:  # one at a time: a large set is not held whole
        if first is None:
            first = image
        elif image.size != first.size or image.tobytes() != first.tobytes():
            return True
    return False


def model_inputs(entries: dict, names: list[str], images: ImageSet
                 ) -> dict[str, tuple[ImageSet, list[int] | None, list[str] | None, str | None]]:
    """Per model: its images (the zoo entry's own `images` folder, else the run's), their class indices when
    labelled, its class names, and why a labelled set gives no accuracy. Checked before any cell runs: a class
    folder that matches none of a model's classes is an InputError naming the folder and the model."""
    loaded: dict[str, ImageSet] = {}
    chosen = {}
    for name in names:
        entry = entries[name].entry
        own = images
        if entry.images is not None:
            if entry.images not in loaded:
                loaded[entry.images] = load_images(Path(entry.images))
                _check_distinct(loaded[entry.images], f"{entry.images} (model '{name}', field images)")
            own = loaded[entry.images]
        try:
            classes = entry.class_names()
        except ValueError as exc:
            raise InputError(f"model '{name}': classes_file: {exc}") from None
        # labelled images label nothing a text model sees, nor a model whose task scores no labels
        scored = entry.image_input is not None and task_named(entry.task_name).labelled
        labels = task_named(entry.task_name).read_labels(entry, own, classes) if scored else None
        note = None
        if own.labelled and classes is None and scored:
            note = ("the images are labelled, but the model has no class names (set classes or classes_file): "
                    "accuracy not measured")
        chosen[name] = (own, labels, classes, note)
    return chosen


def _left_out(options: VerifyOptions, manifest, runners: Mapping[str, type[Runner]]) -> str | None:
    """What the filters leave out of what the manifest holds and this verifier could run, in words."""
    models = [m for m in manifest.models if options.models and m not in options.models]
    built = {a for name, record in manifest.models.items() if name not in models for a in record.artifacts}
    runtimes = [r for r in runners if options.runtimes is not None and r not in options.runtimes
                and set(RUNTIMES[r].artifacts) & built and r != REFERENCE[0]]
    devices = [d for d in DEVICES if options.devices is not None and d not in options.devices]
    parts = [f"{kind} {', '.join(names)}" for kind, names in (("models", models), ("runtimes", runtimes),
                                                               ("devices", devices)) if names]
    return "; ".join(parts) or None


def _check(options: VerifyOptions, runners: Mapping[str, type[Runner]]) -> None:
    if options.num_images < 1 or not options.batches or min(options.batches) < 1:
        raise OptionsError("--batches and --num-images must be at least 1")
    for flag, values, known in (("--devices", options.devices, DEVICES.names()),
                                ("--runtimes", options.runtimes, tuple(runners))):
        unknown = [v for v in values or () if v not in known]
        if unknown:
            raise OptionsError(f"{flag}: unknown {unknown} (choose from {', '.join(known)})")
    unregistered = [name for name in runners if name not in RUNTIMES]
    if unregistered:
        raise OptionsError(f"runners {unregistered} are not registered runtimes ({', '.join(RUNTIMES)})")


def write_reports(verified: VerifyRun, folder: Path) -> Path:
    """report.md, parity.csv, junit.xml, timing.csv, preprocessing.csv, summary.json, inputs/<model>.npz,
    charts/<model>-timing.png and -tradeoff.png, and each task's tables and pictures (classification:
    predictions.csv, accuracy.csv, predictions/<model>.png), each replaced atomically; appends the verdict to
    $GITHUB_STEP_SUMMARY when it is set. Returns the markdown report's path."""
    results, verdict, environment = verified.results, verified.verdict, verified.environment
    run_id = verified.provenance.get("run_id", "")

    def csv(frame) -> str:  # each row says which run wrote it
        frame.insert(0, "run_id", run_id)
        return frame.to_csv(index=False)
    for result in results:
        if result.inputs is not None:
            save_inputs(folder / inputs_file(result.model), result.inputs, result.input_names, verified.kept_inputs)
        elif result.inputs_in is not None:  # a shard's: copied, not loaded
            saved = inputs_file(result.model)
            atomic_write(folder / saved, (Path(result.inputs_in) / saved).read_bytes())
    atomic_write(folder / "parity.csv", csv(parity_frame(results, verified.entries, verdict)))
    atomic_write(folder / "junit.xml", junit_xml(results, verdict, verified.entries, run_id))
    atomic_write(folder / "timing.csv", csv(timing_frame(results, verified.environment)))
    drawn = verified.drawn_charts
    charts = write_timing_charts(results, folder, run_id, drawn)
    tradeoffs = write_tradeoff_charts(results, folder, run_id, drawn)
    pictures = {}
    for task in every_task():  # its CSVs always (a CI job reads a fixed set of files), its pictures where drawn
        own = [result for result in results if result.task == task.name]
        for name, frame in task.tables(own).items():
            atomic_write(folder / name, csv(frame))
        pictures.update(task.pictures(own, verified.entries, folder, run_id, drawn))
    atomic_write(folder / "preprocessing.csv", csv(preprocessing_frame(results, verdict)))
    provenance = verified.provenance
    atomic_write(folder / "summary.json",
                 json.dumps(summary(results, verdict, environment, provenance), indent=2, default=str))
    text = markdown(results, verdict, environment, provenance, charts, tradeoffs, pictures, verified.entries)
    if verified.repairs:
        from .repair.report import repairs_section
        from .report.plain import to_plain

        text += "\n".join(repairs_section(verified.repairs)) + "\n"
        atomic_write(folder / "repairs.json", json.dumps(to_plain(verified.repairs, {}), indent=2))
    report = atomic_write(folder / "report.md", text)
    write_results(folder, verified.scope, results, verified.entries, environment, provenance, verdict.left_out,
                  verified.baseline)
    job_summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if job_summary:  # GitHub Actions shows this file on the run's page
        with open(job_summary, "a", encoding="utf-8") as file:
            file.write(step_summary(results, verdict, str(report)))
    return report
