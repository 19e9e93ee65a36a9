"""manifest.json: the contract between the converter and the verifier. Plain data, written atomically."""
from __future__ import annotations

import hashlib
import json
import os
import platform
import tempfile
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from .errors import WorkbenchError

MANIFEST_NAME = "manifest.json"
SCHEMA_VERSION = 1
TOOLS = ("torch", "torchvision", "onnx", "onnxruntime", "onnxsim", "paddlepaddle", "x2paddle", "numpy")


class ManifestError(WorkbenchError):
    """No usable manifest: missing, unreadable, or not one this version wrote."""


@dataclass
class FileRecord:
    sha256: str
    size: int


@dataclass
class ArtifactRecord:
    status: str  # "ok" or "failed"
    path: str | None = None  # the file a runtime loads, relative to the artifacts folder
    files: dict[str, FileRecord] = field(default_factory=dict)  # every file of the artifact, same base
    seconds: float = 0.0
    error: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    source_sha256: str | None = None  # the weights it was built from: artifacts of one model must agree

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass
class ModelRecord:
    config: dict[str, Any]  # the validated zoo entry, so the verifier needs nothing else
    source: dict[str, Any] = field(default_factory=dict)  # kind, weights_sha256, trusted_pickle
    error: str | None = None  # the model itself could not be built
    artifacts: dict[str, ArtifactRecord] = field(default_factory=dict)


@dataclass
class Manifest:
    zoo: dict[str, Any]
    tools: dict[str, str]
    models: dict[str, ModelRecord] = field(default_factory=dict)
    schema: int = SCHEMA_VERSION

    def failed_artifacts(self) -> list[tuple[str, str, str]]:
        """(model, artifact, error) for every failed artifact, in order."""
        return [
            (model, name, record.error or "failed")
            for model, entry in self.models.items()
            for name, record in entry.artifacts.items()
            if not record.ok
        ]


def write_manifest(folder: Path, manifest: Manifest) -> Path:
    """Write via a temporary file and rename: readers see the old manifest or the new one, never half."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / MANIFEST_NAME
    text = json.dumps(asdict(manifest), indent=2, sort_keys=True)
    fd, tmp = tempfile.mkstemp(prefix=".manifest-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def read_manifest(folder: Path) -> Manifest:
    path = folder / MANIFEST_NAME
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise ManifestError(f"{path}: no manifest; run `python -m converter zoo.yaml --out {folder}` first") from None
    except (OSError, ValueError) as exc:
        raise ManifestError(f"{path}: unreadable manifest: {exc}") from None
    try:
        if raw.get("schema") != SCHEMA_VERSION:
            raise ManifestError(f"{path}: schema {raw.get('schema')!r}, this version reads {SCHEMA_VERSION}")
        models = {
            name: ModelRecord(
                config=model["config"],
                source=model.get("source", {}),
                error=model.get("error"),
                artifacts={
                    art: ArtifactRecord(**{**record, "files": {f: FileRecord(**r) for f, r in record["files"].items()}})
                    for art, record in model["artifacts"].items()
                },
            )
            for name, model in raw["models"].items()
        }
        return Manifest(zoo=raw["zoo"], tools=raw["tools"], models=models)
    except (KeyError, TypeError, AttributeError) as exc:
        raise ManifestError(f"{path}: malformed manifest ({type(exc).__name__}: {exc})") from None


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def describe_files(folder: Path, relative_to: Path) -> dict[str, FileRecord]:
    return {
        str(path.relative_to(relative_to)): FileRecord(file_sha256(path), path.stat().st_size)
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def tool_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for tool in TOOLS:
        try:
            versions[tool] = metadata.version(tool)
        except metadata.PackageNotFoundError:
            versions[tool] = "not installed"
    return versions
