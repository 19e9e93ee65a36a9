"""Each model x artifact, isolated and recorded: one failure is written down and the rest goes on.

Artifacts live in folders named by a key: a hash of what they are built from (the zoo entry's conversion
fields, the checkpoint or weights file, the tool versions). A run writes new folders next to the old
ones, replaces the manifest atomically, and only then removes folders nothing refers to: killed at any
moment, the manifest on disk still describes intact artifacts. An unchanged model is not converted again.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import re
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .exporters import EXPORTERS, REQUIRES, ExportContext, ExportResult, planned_artifacts
from .exporters.eager import load_reference
from .isolation import Limits, run_isolated
from .manifest import (ArtifactRecord, Manifest, ManifestError, ModelRecord, describe_files, file_sha256,
                       read_manifest, tool_versions, write_manifest)
from .models import BuiltModel, build_model, example_input
from .zoo import NOT_BUILD_INPUTS, ModelEntry, Zoo, torchvision_weights

log = logging.getLogger(__name__)
STAGING_PREFIX = ".staging-"
MAX_ERROR_CHARS = 600
KEY_CHARS = 12
KEYED_FOLDER = re.compile(r"^(?P<artifact>[a-z_]+)-(?P<key>[0-9a-f]{%d})$" % KEY_CHARS)
CODE_VERSION = "1"  # bump when an exporter's output changes for the same inputs

Progress = Callable[[str, str, ArtifactRecord], None]


@dataclass(frozen=True)
class RunOptions:
    out: Path
    models: list[str] | None = None  # None: every model in the zoo
    formats: list[str] | None = None  # None: each model's own `formats`
    limits: Limits = Limits()  # per conversion format, unless the zoo entry sets its own
    force: bool = False  # convert even what is up to date


@dataclass
class RunStats:
    converted: int = 0
    cached: int = 0
    failed: int = 0


def convert_zoo(zoo: Zoo, options: RunOptions, progress: Progress | None = None,
                stats: RunStats | None = None) -> Manifest:
    """Convert the selected models and return the manifest, which is also written after every model."""
    entries = zoo.select(options.models)
    stats = stats if stats is not None else RunStats()
    tools = tool_versions()
    manifest = Manifest(zoo={"path": str(zoo.path.resolve()), "sha256": file_sha256(zoo.path)}, tools=tools)
    previous = _previous_manifest(options.out)
    in_zoo = {entry.name for entry in zoo.models}
    if previous is not None:  # models not converted this time keep their last results
        manifest.models = {name: record for name, record in previous.models.items() if name in in_zoo}
    for entry in entries:
        old = previous.models.get(entry.name) if previous else None
        manifest.models[entry.name] = convert_model(entry, options, old, tools, progress or (lambda *_: None), stats)
        write_manifest(options.out, manifest)
    write_manifest(options.out, manifest)
    for entry in entries:
        _collect_garbage(options.out / entry.name, manifest.models[entry.name], options.out)
    return manifest


def source_key(entry: ModelEntry, tools: dict[str, str]) -> str:
    """What every artifact of this model is built from; equal keys mean nothing needs converting.
    A factory's own module file counts; modules it imports in turn do not (use --force after editing those)."""
    config = {k: v for k, v in entry.model_dump(mode="json").items() if k not in NOT_BUILD_INPUTS}
    files = {}
    if entry.arch and not entry.arch.startswith("torchvision:"):  # the user's own model code
        spec = importlib.util.find_spec(entry.arch.partition(":")[0])
        if spec is not None and spec.origin and Path(spec.origin).is_file():
            files["factory"] = file_sha256(Path(spec.origin))
    if entry.checkpoint:
        files["checkpoint"] = file_sha256(Path(entry.checkpoint))
    elif entry.weights not in (None, "random"):
        import torch

        url = torchvision_weights(entry).url
        files["weights"] = file_sha256(Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1])
    text = json.dumps({"config": config, "files": files, "tools": tools, "code": CODE_VERSION}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def artifact_key(model_key: str, artifact: str) -> str:
    return hashlib.sha256(f"{model_key}/{artifact}".encode()).hexdigest()[:KEY_CHARS]


def convert_model(entry: ModelEntry, options: RunOptions, old: ModelRecord | None, tools: dict[str, str],
                  progress: Progress, stats: RunStats) -> ModelRecord:
    model_dir = options.out / entry.name
    model_dir.mkdir(parents=True, exist_ok=True)
    _remove_staging(model_dir)
    formats = [f for f in entry.formats if options.formats is None or f in options.formats]
    planned = planned_artifacts(formats, entry.onnx.simplify)
    key = source_key(entry, tools)
    record = ModelRecord(config=entry.model_dump(mode="json"))
    if old is not None:  # artifacts not rebuilt this time stay as they were
        record.artifacts = {name: art for name, art in old.artifacts.items() if name not in planned}

    reusable = {} if options.force or old is None or old.source.get("key") != key else {
        name: art for name, art in old.artifacts.items()
        if name in planned and art.ok and _intact(art, options.out)
    }
    if old is not None and set(reusable) == set(planned):
        record.source, record.artifacts = old.source, {**record.artifacts, **reusable}
        stats.cached += len(planned)
        for name in planned:
            progress(entry.name, name, _as_cached(reusable[name]))
        return record

    if "eager" in reusable:
        record.source = old.source
    done: dict[str, Path] = {}
    for name in planned:
        needed = REQUIRES.get(name)
        if name in reusable:
            art = _as_cached(reusable[name])
            stats.cached += 1
        elif needed is not None and needed not in done:
            art = ArtifactRecord("failed", error=f"not attempted: needs {needed}, which failed")
        else:
            folder = model_dir / f"{name}-{artifact_key(key, name)}"
            art, source = _export_one(name, entry, record.source, folder, done, options)
            if name == "eager":
                record.source = {**source, "key": key, "checkpoint_sha256":
                                 file_sha256(Path(entry.checkpoint)) if entry.checkpoint else None}
                record.error = None if art.ok else art.error
            art.source_sha256 = record.source.get("weights_sha256")
            stats.converted += int(art.ok)
        stats.failed += int(not art.ok)
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


def run_eager_job(job: EagerJob) -> tuple[ExportResult, dict]:
    started = time.perf_counter()
    built = build_model(job.entry)
    build_seconds = round(time.perf_counter() - started, 3)
    result = job.exporter(ExportContext(job.entry, built, example_input(job.entry), job.out_dir, {}))
    return result, {"kind": built.source_kind, "weights_sha256": built.weights_sha256,
                    "trusted_pickle": built.trusted_pickle, "build_seconds": build_seconds}


@dataclass(frozen=True)
class ExportJob:
    """One non-eager export, run in a worker: it rebuilds the module from the eager artifact."""

    exporter: Callable[[ExportContext], ExportResult]
    entry: ModelEntry
    source_kind: str
    weights_sha256: str
    trusted_pickle: bool
    out_dir: Path
    earlier: dict[str, Path]


def run_export_job(job: ExportJob) -> ExportResult:
    module = load_reference(job.earlier["eager"], trust_pickle=job.trusted_pickle)
    built = BuiltModel(module, job.source_kind, job.weights_sha256, job.trusted_pickle)
    return job.exporter(ExportContext(job.entry, built, example_input(job.entry), job.out_dir, dict(job.earlier)))


def _export_one(name: str, entry: ModelEntry, source: dict, final: Path, done: dict[str, Path],
                options: RunOptions) -> tuple[ArtifactRecord, dict]:
    """Build one artifact in a worker, into a staging folder that is moved to its keyed folder only when the
    exporter succeeded: an interrupted or failed export never leaves a half-written artifact under a final
    name. Returns the record and, for the eager reference, what the model was built from."""
    staging = final.with_name(f"{STAGING_PREFIX}{final.name}-{uuid.uuid4().hex[:8]}")
    staging.mkdir()
    started = time.perf_counter()
    if name == "eager":
        job = EagerJob(EXPORTERS[name], entry, staging)
        worker = run_eager_job
    else:
        job = ExportJob(EXPORTERS[name], entry, source["kind"], source["weights_sha256"], source["trusted_pickle"],
                        staging, dict(done))
        worker = run_export_job
    try:
        outcome = run_isolated(worker, job, limits=entry.limits.over(options.limits))
        if not outcome.ok:
            log.debug("export %s/%s failed:\n%s", entry.name, name, outcome.traceback)
            raise _WorkerFailed(outcome.message)
        result, source = outcome.value if name == "eager" else (outcome.value, {})
        if not (staging / result.main_file).is_file():
            raise RuntimeError(f"exporter reported {result.main_file} but did not write it")
    except Exception as exc:
        shutil.rmtree(staging, ignore_errors=True)
        return ArtifactRecord("failed", seconds=round(time.perf_counter() - started, 3), error=_one_line(exc)), {}
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


class _WorkerFailed(Exception):
    pass


def _as_cached(art: ArtifactRecord) -> ArtifactRecord:
    return ArtifactRecord(art.status, art.path, art.files, 0.0, art.error, {**art.details, "cached": True},
                          art.source_sha256)


def _intact(art: ArtifactRecord, root: Path) -> bool:
    return bool(art.files) and all(
        (root / rel).is_file() and (root / rel).stat().st_size == info.size and file_sha256(root / rel) == info.sha256
        for rel, info in art.files.items()
    )


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
    text = " ".join(str(exc).split()) or type(exc).__name__
    if type(exc).__module__ not in ("converter.errors",) and not isinstance(exc, _WorkerFailed):
        text = f"{type(exc).__name__}: {text}"
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 3] + "..."
