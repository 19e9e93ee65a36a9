"""Each model x artifact, isolated and recorded: one failure is written down and the rest goes on."""
from __future__ import annotations

import logging
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .exporters import EXPORTERS, REQUIRES, ExportContext, planned_artifacts
from .manifest import (ArtifactRecord, Manifest, ManifestError, ModelRecord, describe_files, file_sha256,
                       read_manifest, tool_versions, write_manifest)
from .models import build_model, example_input
from .zoo import ModelEntry, Zoo

log = logging.getLogger(__name__)
STAGING_PREFIX = ".staging-"
RETIRED_PREFIX = ".retired-"
MAX_ERROR_CHARS = 600

Progress = Callable[[str, str, ArtifactRecord], None]


@dataclass(frozen=True)
class RunOptions:
    out: Path
    models: list[str] | None = None  # None: every model in the zoo
    formats: list[str] | None = None  # None: each model's own `formats`


def convert_zoo(zoo: Zoo, options: RunOptions, progress: Progress | None = None) -> Manifest:
    """Convert the selected models and return the manifest, which is also written after every model."""
    entries = zoo.select(options.models)
    manifest = Manifest(zoo={"path": str(zoo.path.resolve()), "sha256": file_sha256(zoo.path)}, tools=tool_versions())
    previous = _previous_manifest(options.out)
    in_zoo = {entry.name for entry in zoo.models}
    if previous is not None:  # models not converted this time keep their last results
        manifest.models = {name: record for name, record in previous.models.items() if name in in_zoo}
    for entry in entries:
        old = previous.models.get(entry.name) if previous else None
        manifest.models[entry.name] = convert_model(entry, options, old, progress or (lambda *_: None))
        write_manifest(options.out, manifest)
    write_manifest(options.out, manifest)
    return manifest


def convert_model(entry: ModelEntry, options: RunOptions, old: ModelRecord | None, progress: Progress) -> ModelRecord:
    model_dir = options.out / entry.name
    model_dir.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(model_dir)
    formats = [f for f in entry.formats if options.formats is None or f in options.formats]
    planned = planned_artifacts(formats, entry.onnx.simplify)
    record = ModelRecord(config=entry.model_dump(mode="json"))
    if old is not None:  # artifacts not rebuilt this time stay as they were
        record.artifacts = {name: art for name, art in old.artifacts.items() if name not in planned}

    started = time.perf_counter()
    try:
        built = build_model(entry)
    except Exception as exc:  # a bad checkpoint or factory fails this model only
        record.error = _one_line(exc)
        for name in planned:
            failed = ArtifactRecord("failed", seconds=time.perf_counter() - started,
                                    error=f"model could not be built: {record.error}")
            _retire(model_dir / name)
            record.artifacts[name] = failed
            progress(entry.name, name, failed)
        return record
    record.source = {"kind": built.source_kind, "weights_sha256": built.weights_sha256,
                     "trusted_pickle": built.trusted_pickle, "build_seconds": round(time.perf_counter() - started, 3),
                     "checkpoint_sha256": file_sha256(Path(entry.checkpoint)) if entry.checkpoint else None}
    example = example_input(entry)
    earlier: dict[str, Path] = {}
    for name in planned:
        needed = REQUIRES.get(name)
        if needed is not None and needed not in earlier:
            art = ArtifactRecord("failed", error=f"not attempted: needs {needed}, which failed")
            _retire(model_dir / name)
        else:
            ctx = ExportContext(entry, built, example, Path(), dict(earlier))
            art = _export_one(name, ctx, model_dir, options.out)
            if art.ok:
                earlier[name] = model_dir / name
        art.source_sha256 = built.weights_sha256
        record.artifacts[name] = art
        progress(entry.name, name, art)
    return record


def _export_one(name: str, ctx: ExportContext, model_dir: Path, root: Path) -> ArtifactRecord:
    """Build one artifact in a staging folder and move it into place only when the exporter succeeded,
    so an interrupted or failed export never leaves a half-written artifact under the final name."""
    staging = model_dir / f"{STAGING_PREFIX}{name}-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    ctx.out_dir = staging
    started = time.perf_counter()
    try:
        result = EXPORTERS[name](ctx)
        if not (staging / result.main_file).is_file():
            raise RuntimeError(f"exporter reported {result.main_file} but did not write it")
    except Exception as exc:
        shutil.rmtree(staging, ignore_errors=True)
        _retire(model_dir / name)  # a stale artifact from an earlier run must not pass for this one
        log.debug("export %s/%s failed", ctx.entry.name, name, exc_info=True)
        return ArtifactRecord("failed", seconds=round(time.perf_counter() - started, 3), error=_one_line(exc))
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        ctx.built.module.eval()
    final = model_dir / name
    _retire(final)
    os.replace(staging, final)
    return ArtifactRecord(
        "ok",
        path=str((final / result.main_file).relative_to(root)),
        files=describe_files(final, root),
        seconds=round(time.perf_counter() - started, 3),
        details=result.details,
    )


def _retire(folder: Path) -> None:
    """Move a folder out of the way with one rename, then delete it."""
    if folder.exists():
        retired = folder.with_name(f"{RETIRED_PREFIX}{folder.name}-{uuid.uuid4().hex[:8]}")
        os.replace(folder, retired)
        shutil.rmtree(retired, ignore_errors=True)


def _remove_leftovers(model_dir: Path) -> None:
    for path in model_dir.iterdir():
        if path.name.startswith((STAGING_PREFIX, RETIRED_PREFIX)):
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
    text = f"{type(exc).__name__}: {text}" if type(exc).__module__ not in ("converter.errors",) else text
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 3] + "..."
