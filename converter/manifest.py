"""manifest.json: the contract between the converter and the verifier. Plain data, written atomically."""
from __future__ import annotations

import json
import platform
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from .core.errors import WorkbenchError
from .core.files import atomic_write, file_sha256

MANIFEST_NAME = "manifest.json"
SCHEMA_VERSION = 2  # 2: typed model source, `cached` per artifact
TOOLS = ("torch", "torchvision", "onnx", "onnxruntime", "onnxsim", "paddlepaddle", "x2paddle", "numpy")


class ManifestError(WorkbenchError):
    """No usable manifest: missing, unreadable, or not one this version wrote."""


@dataclass
class FileRecord:
    sha256: str
    size: int


@dataclass
class ArtifactRecord:
    status: str  # "ok", "failed", or "skipped" (this machine cannot build it: no GPU for a TensorRT engine)
    path: str | None = None  # the file a runtime loads, relative to the artifacts folder
    files: dict[str, FileRecord] = field(default_factory=dict)  # every file of the artifact, same base
    seconds: float = 0.0
    error: str | None = None
    details: dict[str, Any] = field(default_factory=dict)  # format facts for people (opset, node counts, ...)
    source_sha256: str | None = None  # the weights it was built from: artifacts of one model must agree
    cached: bool = False  # this run found it up to date (or failed the same way before) and kept it
    failure: str | None = None  # how it failed: exception, timeout, signal, exit, out-of-memory
    error_detail: str | None = None  # the raw error, when `error` is a hint that explains it

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def skipped(self) -> bool:
        return self.status == "skipped"

    @property
    def failed(self) -> bool:
        return self.status == "failed"


@dataclass
class SourceRecord:
    """What a model's artifacts were built from."""

    kind: str  # random | named-weights | state_dict | pickled_module | torchscript
    weights_sha256: str  # the identity of the reference's weights
    trusted_pickle: bool = False  # loaded with trust_pickle (runs code when loaded)
    build_seconds: float = 0.0
    key: str = ""  # the conversion inputs' hash: equal keys mean nothing to convert
    checkpoint_sha256: str | None = None  # the checkpoint file's content, when there is one


@dataclass
class ModelRecord:
    config: dict[str, Any]  # the validated zoo entry, so the verifier needs nothing else
    source: SourceRecord | None = None  # None until the eager reference was built
    error: str | None = None  # the model itself could not be built
    artifacts: dict[str, ArtifactRecord] = field(default_factory=dict)

    @property
    def weights_sha256(self) -> str | None:
        return self.source.weights_sha256 if self.source else None

    @property
    def trusted_pickle(self) -> bool:
        return bool(self.source and self.source.trusted_pickle)


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
            if record.failed
        ]


def write_manifest(folder: Path, manifest: Manifest) -> Path:
    """Readers see the old manifest or the new one, never half of one."""
    return atomic_write(folder / MANIFEST_NAME, json.dumps(asdict(manifest), indent=2, sort_keys=True))


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
            raise ManifestError(f"{path}: schema {raw.get('schema')!r}, this version reads {SCHEMA_VERSION}: "
                                f"run the converter again")
        models = {
            name: ModelRecord(
                config=model["config"],
                source=SourceRecord(**model["source"]) if model.get("source") else None,
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


def describe_files(folder: Path, relative_to: Path) -> dict[str, FileRecord]:
    return {
        str(path.relative_to(relative_to)): FileRecord(file_sha256(path), path.stat().st_size)
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def integrity_problem(record: ModelRecord, artifact: str, root: Path) -> str | None:
    """Why an ok artifact is not what the converter recorded (other weights, a path leaving the artifacts
    folder, a missing or changed file), or None when it is intact."""
    art = record.artifacts[artifact]
    if not art.ok:
        return None
    if art.source_sha256 != record.weights_sha256:
        return "built from other weights than the current reference: re-run the converter"
    if not art.files:
        return "the manifest lists no files for it"
    for rel in [art.path, *art.files]:
        if rel is None or not (root / rel).resolve().is_relative_to(root.resolve()):
            return f"manifest path escapes the artifacts folder: {rel}"
    for rel, info in art.files.items():
        path = root / rel
        if not path.is_file():
            return f"artifact file missing: {rel}"
        if path.stat().st_size != info.size or file_sha256(path) != info.sha256:
            return f"artifact file changed since conversion (sha256 mismatch): {rel}"
    return None


def tool_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for tool in TOOLS:
        try:
            versions[tool] = metadata.version(tool)
        except metadata.PackageNotFoundError:
            versions[tool] = "not installed"
    return versions
