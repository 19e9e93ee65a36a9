"""Each model x artifact, isolated and recorded: one failure is written down and the rest goes on.

Artifacts live in folders named by a key: a hash of what they are built from (the zoo entry's conversion
fields, the checkpoint or weights file, the tool versions). A run writes new folders next to the old
ones, replaces the manifest atomically, and only then removes folders nothing refers to: killed at any
moment, the manifest on disk still describes intact artifacts. An unchanged model is not converted again.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import threading
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor, as_completed

from .core.archs import locate_module, model_registry, named_weights
from .core.errors import one_line
from .core.files import file_sha256
from .core.isolation import Limits, run_isolated
from .core.machine import physical_cores
from .core.reference import load_reference
from .core.shards import Shard
from .core.registry import load_object
from .core.vocabulary import ARTIFACTS
from .exporters import Exporter, ExportContext, ExportResult, planned_artifacts, registered_exporter
from .exporters.hints import explain
from .manifest import (ArtifactRecord, Manifest, ManifestError, ModelRecord, SourceRecord, describe_files,
                       integrity_problem, read_manifest, tool_versions, write_manifest)
from .models import BuiltModel, build_model, example_args
from .zoo import NOT_BUILD_INPUTS, ModelEntry, Zoo

log = logging.getLogger(__name__)
STAGING_PREFIX = ".staging-"
MAX_ERROR_CHARS = 600
KEY_CHARS = 12
# any artifact name, registered now or once (onnx_int8, tensorrt_engine_fp16): a folder of a dropped format is
# collected too
KEYED_FOLDER = re.compile(r"^(?P<artifact>[a-z][a-z0-9_]*)-(?P<key>[0-9a-f]{%d})$" % KEY_CHARS)
CODE_VERSION = "3"  # 3: named inputs, dynamic axes recorded per artifact  # bump when an exporter's output changes for the same inputs

Progress = Callable[[str, str, ArtifactRecord], None]


@dataclass(frozen=True)
class RunOptions:
    out: Path
    models: list[str] | None = None  # None: every model in the zoo
    formats: list[str] | None = None  # None: each model's own `formats`
    limits: Limits = Limits()  # per conversion format, unless the zoo entry sets its own
    force: bool = False  # convert even what is up to date
    jobs: int = 0  # models converted at once; 0: the physical cores
    shard: Shard | None = None  # only this shard's models (by name hash); the manifest keeps the others' records


def convert(zoo: Zoo, options: RunOptions, progress: Progress | None = None,
            exporters: Mapping[str, Exporter] | None = None) -> Manifest:
    """Convert the selected models and return the manifest, which is also written after every model.
    `progress(model, artifact, record)` hears of each artifact as it is built or found up to date (from one
    thread at a time); `exporters` replaces registered exporters by artifact name (module-level functions:
    they run in workers). Up to `options.jobs` models convert at once, each artifact in a worker of its own."""
    entries = tuple(entry for entry in zoo.select(options.models) if options.shard is None
                    or options.shard.holds(entry.name))
    options = replace(options, jobs=_jobs(options, len(entries)))
    tools = tool_versions()
    manifest = Manifest(zoo={"path": str(zoo.path.resolve()), "sha256": file_sha256(zoo.path)}, tools=tools)
    previous = _previous_manifest(options.out)
    in_zoo = [entry.name for entry in zoo.models]
    if previous is not None:  # models not converted this time keep their last results
        manifest.models = {name: record for name, record in previous.models.items() if name in in_zoo}
    heard = _one_at_a_time(progress or (lambda *_: None))
    stopping = threading.Event()

    def one(entry: ModelEntry) -> ModelRecord:
        old = previous.models.get(entry.name) if previous else None
        return convert_model(entry, options, old, tools, heard, dict(exporters or {}), stopping)

    with ThreadPoolExecutor(options.jobs, thread_name_prefix="convert") as pool:
        futures = {pool.submit(one, entry): entry.name for entry in entries}
        try:
            for future in as_completed(futures):
                manifest.models[futures[future]] = future.result()
                manifest.models = {name: manifest.models[name] for name in in_zoo if name in manifest.models}
                write_manifest(options.out, manifest)
        except BaseException:  # an interrupt or a bug: start nothing more; running exports finish their step
            stopping.set()
            for future in futures:
                future.cancel()
            raise
    write_manifest(options.out, manifest)
    for entry in entries:
        _collect_garbage(options.out / entry.name, manifest.models[entry.name], options.out)
    return manifest


def _jobs(options: RunOptions, models: int) -> int:
    """Models converted at once: --jobs, or the physical cores; no more than there are models."""
    return max(1, min(options.jobs or physical_cores(), models))


def _one_at_a_time(progress: Progress) -> Progress:
    lock = threading.Lock()

    def heard(model: str, artifact: str, record: ArtifactRecord) -> None:
        with lock:
            progress(model, artifact, record)
    return heard


def source_key(entry: ModelEntry, tools: dict[str, str]) -> str:
    """What every artifact of this model is built from; equal keys mean nothing needs converting.
    A factory's own module file counts; modules it imports in turn do not (use --force after editing those)."""
    config = {k: v for k, v in entry.model_dump(mode="json").items() if k not in NOT_BUILD_INPUTS}
    if not config["fixed_shape"]:  # added after CODE_VERSION 3: artifacts built before it stay current
        del config["fixed_shape"]
    for unset in [name for name in ("int8_keep_fp32", "fp16_keep_fp32") if not config["onnx"][name]]:
        del config["onnx"][unset]  # added later: unset, they leave the artifacts built before them current
    for output in config["outputs"]:  # an output's tolerance builds nothing: its fields added later, unset, stay out
        output["tolerance"] = {key: value for key, value in output["tolerance"].items()
                               if key in ("atol", "rtol", "min_cosine", "top1") or value is not None}
    files = {}
    registry = model_registry(entry.arch) if entry.arch else None
    if entry.arch and (registry is None or registry.source):  # the user's own model code, or the workbench's
        origin = locate_module(registry.source if registry is not None else entry.arch.partition(":")[0])
        if origin is not None and origin.is_file():
            files["factory"] = file_sha256(origin)
    if entry.checkpoint:
        files["checkpoint"] = file_sha256(Path(entry.checkpoint))
    elif entry.weights not in (None, "random"):
        files["weights"] = file_sha256(named_weights(entry.arch, entry.weights).file)
    text = json.dumps({"config": config, "files": files, "tools": tools, "code": CODE_VERSION}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def artifact_key(model_key: str, artifact: str) -> str:
    return hashlib.sha256(f"{model_key}/{artifact}".encode()).hexdigest()[:KEY_CHARS]


def convert_model(entry: ModelEntry, options: RunOptions, old: ModelRecord | None, tools: dict[str, str],
                  progress: Progress, exporters: dict[str, Exporter],
                  stopping: threading.Event | None = None) -> ModelRecord:
    """One model's planned artifacts in order; `stopping` set (the run was interrupted) starts no further export."""
    model_dir = options.out / entry.name
    model_dir.mkdir(parents=True, exist_ok=True)
    _remove_staging(model_dir)
    planned = planned_artifacts(entry, options.formats)
    key = source_key(entry, tools)
    record = ModelRecord(config=entry.model_dump(mode="json"))
    if old is not None:  # artifacts not rebuilt this time stay as they were, unless the zoo no longer asks for them
        wanted = set(planned_artifacts(entry))
        record.artifacts = {name: art for name, art in old.artifacts.items() if name not in planned and name in wanted}

    up_to_date = not options.force and old is not None and old.source is not None and old.source.key == key
    reusable = {name: art for name, art in old.artifacts.items()
                if name in planned and art.ok and integrity_problem(old, name, options.out) is None} \
        if up_to_date else {}
    for name in planned:
        spec = ARTIFACTS[name]
        earlier = reusable.get(spec.requires)
        if earlier is not None and not all(any(path.rsplit("/", 1)[-1] == file for path in earlier.files)
                                           for file in spec.takes_files):
            del reusable[spec.requires]  # built before this artifact was planned: without the files it takes
    # An export that raised on the same inputs raises again: not retried until an input changes or --force.
    # A timeout, a crash or an out-of-memory kill may depend on the machine's load, and is retried.
    failed_before = {name: art for name, art in old.artifacts.items()
                     if name in planned and not art.ok and art.failure == "exception"} if up_to_date else {}
    if "eager" in reusable:
        record.source = old.source
    done: dict[str, Path] = {}
    threads = export_threads(options.jobs)
    for name in planned:
        needed = ARTIFACTS[name].requires
        if name in reusable:
            art = _as_cached(reusable[name])
        elif needed is not None and needed not in done:
            earlier = record.artifacts.get(needed)
            art = ArtifactRecord("skipped", error=earlier.error) if earlier is not None and earlier.skipped else \
                ArtifactRecord("failed", error=f"not attempted: needs {needed}, which failed")
        elif ARTIFACTS[name].cannot_build_here and (why := load_object(ARTIFACTS[name].cannot_build_here)()):
            art = ArtifactRecord("skipped", error=why)
        elif name in failed_before:
            art = _as_cached(failed_before[name])
        else:
            if stopping is not None and stopping.is_set():
                raise _Stopped(entry.name)
            folder = model_dir / f"{name}-{artifact_key(key, name)}"
            exporter = exporters.get(name) or registered_exporter(name)
            art, source = _export_one(name, exporter, entry, record.source, folder, done, options, threads)
            if name == "eager":
                record.source = source and replace(source, key=key, checkpoint_sha256=file_sha256(
                    Path(entry.checkpoint)) if entry.checkpoint else None)
                record.error = None if art.ok else art.error
            art.source_sha256 = record.weights_sha256
        if art.ok:
            done[name] = options.out / Path(art.path).parent
        record.artifacts[name] = art
        progress(entry.name, name, art)
    return record


@dataclass(frozen=True)
class EagerJob:
    """Build the model (factory, checkpoint, realistic init) and save the reference, in a worker: a factory
    or a trusted pickle that crashes takes down only its worker."""

    exporter: Callable[[ExportContext], ExportResult]
    entry: ModelEntry
    out_dir: Path
    threads: int = 0  # torch's and ONNX Runtime's threads in the worker; 0: their default (every core)


def run_eager_job(job: EagerJob) -> tuple[ExportResult, SourceRecord]:
    _use_threads(job.threads)
    started = time.perf_counter()
    built = build_model(job.entry)
    build_seconds = round(time.perf_counter() - started, 3)
    result = job.exporter(ExportContext(job.entry, built, example_args(job.entry), job.out_dir, {}, job.threads))
    return result, SourceRecord(built.source_kind, built.weights_sha256, built.trusted_pickle, build_seconds)


@dataclass(frozen=True)
class ExportJob:
    """One non-eager export, run in a worker: it rebuilds the module from the eager artifact."""

    exporter: Callable[[ExportContext], ExportResult]
    entry: ModelEntry
    source: SourceRecord
    out_dir: Path
    earlier: dict[str, Path]
    threads: int = 0
    artifact: str = ""  # the artifact it builds


def run_export_job(job: ExportJob) -> ExportResult:
    _use_threads(job.threads)
    module = load_reference(job.earlier["eager"], trust_pickle=job.source.trusted_pickle)
    built = BuiltModel(module, job.source.kind, job.source.weights_sha256, job.source.trusted_pickle)
    return job.exporter(ExportContext(job.entry, built, example_args(job.entry), job.out_dir, dict(job.earlier),
                                      job.threads, job.artifact))


def _use_threads(threads: int) -> None:
    if threads:
        import torch

        torch.set_num_threads(threads)


def export_threads(jobs: int) -> int:
    """Threads for each export when `jobs` run at once: the cores shared out (with every core for each of two
    exports on 2 cores, torch's spinning thread pools made them slower than one after the other); 0 for one job."""
    return 0 if jobs <= 1 else max(1, physical_cores() // jobs)


def _export_one(name: str, exporter: Exporter, entry: ModelEntry, source: SourceRecord | None, final: Path,
                done: dict[str, Path], options: RunOptions, threads: int = 0
                ) -> tuple[ArtifactRecord, SourceRecord | None]:
    """Build one artifact in a worker, into a staging folder that is moved to its keyed folder only when the
    exporter succeeded: an interrupted or failed export never leaves a half-written artifact under a final
    name. Returns the record and, for the eager reference, what the model was built from."""
    staging = final.with_name(f"{STAGING_PREFIX}{final.name}-{uuid.uuid4().hex[:8]}")
    staging.mkdir()
    started = time.perf_counter()
    if name == "eager":
        job, worker = EagerJob(exporter, entry, staging, threads), run_eager_job
    else:
        job, worker = ExportJob(exporter, entry, source, staging, dict(done), threads, name), run_export_job
    try:
        outcome = run_isolated(worker, job, limits=export_limits(entry, name, options))
        if not outcome.ok:
            log.debug("export %s/%s failed:\n%s", entry.name, name, outcome.traceback)
            raise _WorkerFailed(outcome.message, outcome.failure)
        result, source = outcome.value if name == "eager" else (outcome.value, None)
        if not (staging / result.main_file).is_file():
            raise RuntimeError(f"exporter reported {result.main_file} but did not write it")
    except Exception as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raw = _one_line(exc)
        hint = explain(name, raw)
        return ArtifactRecord("failed", seconds=round(time.perf_counter() - started, 3), error=hint or raw,
                              failure=exc.failure if isinstance(exc, _WorkerFailed) else "exception",
                              error_detail=raw if hint else None), None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if final.exists():  # a leftover of an interrupted run with the same key, never recorded as good
        shutil.rmtree(final)
    os.replace(staging, final)
    record = ArtifactRecord(
        "ok",
        path=str((final / result.main_file).relative_to(options.out)),
        files=describe_files(final, options.out),
        seconds=round(time.perf_counter() - started, 3),
        details=result.details,
    )
    return record, source


def export_limits(entry: ModelEntry, artifact: str, options: RunOptions) -> Limits:
    """The zoo's limits for the model, else the command line's; an artifact built on a GPU has no memory cap."""
    return entry.limits.over(options.limits, gpu=ARTIFACTS[artifact].gpu)


class _Stopped(Exception):
    """The run stopped (interrupted, or another model's conversion raised): this model is left as it was."""


class _WorkerFailed(Exception):
    def __init__(self, message: str, failure: str):
        super().__init__(message)
        self.failure = failure  # exception, timeout, signal, exit, out-of-memory


def _as_cached(art: ArtifactRecord) -> ArtifactRecord:
    return replace(art, seconds=0.0, cached=True)


def _collect_garbage(model_dir: Path, record: ModelRecord, root: Path) -> None:
    """Remove this model's keyed folders that the manifest no longer refers to (after it was written)."""
    if not model_dir.is_dir():
        return
    kept = {(root / art.path).parent.name for art in record.artifacts.values() if art.ok and art.path}
    for path in model_dir.iterdir():
        if path.is_dir() and KEYED_FOLDER.match(path.name) and path.name not in kept:
            shutil.rmtree(path, ignore_errors=True)


def _remove_staging(model_dir: Path) -> None:
    for path in model_dir.iterdir():
        if path.name.startswith(STAGING_PREFIX):
            shutil.rmtree(path, ignore_errors=True)


def _previous_manifest(out: Path) -> Manifest | None:
    try:
        return read_manifest(out)
    except ManifestError as exc:
        if (out / "manifest.json").exists():
            log.warning("ignoring the previous manifest: %s", exc)
        return None


def _one_line(exc: BaseException) -> str:
    text = one_line(exc, plain=isinstance(exc, _WorkerFailed))  # a worker's message already says what failed
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 3] + "..."
