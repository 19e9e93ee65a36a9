"""One module per artifact format. The artifacts, their build order and which exporter builds each are
registered in converter.core.vocabulary: adding a format is one module here and one registration there."""
from __future__ import annotations

from typing import Callable

from ..core.registry import load_object
from ..core.vocabulary import ARTIFACTS
from ..zoo import ModelEntry
from .base import ExportContext, ExportResult

Exporter = Callable[[ExportContext], ExportResult]


def registered_exporter(artifact: str) -> Exporter:
    return load_object(ARTIFACTS[artifact].exporter)


def planned_artifacts(entry: ModelEntry, only_formats: list[str] | None = None) -> list[str]:
    """The artifacts a model's `formats` (narrowed to `only_formats`) expand to, in build order. The eager
    reference is always built: every other format is exported from it, and the verifier compares against it."""
    wanted = {fmt for fmt in entry.formats if only_formats is None or fmt in only_formats} | {"eager"}
    return [spec.name for spec in ARTIFACTS.values()
            if spec.format in wanted and (spec.enabled_by is None or entry.setting(spec.enabled_by))]


__all__ = ["Exporter", "ExportContext", "ExportResult", "planned_artifacts", "registered_exporter"]
