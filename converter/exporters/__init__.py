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
    """The artifacts a model's `formats` and `candidates` (narrowed to `only_formats`) expand to, in build order. The eager
    reference is always built: every other format is exported from it, and the verifier compares against it; an
    artifact another one is exported from (paddle for paddle_dygraph) is built with it."""
    wanted = {fmt for fmt in entry.built_formats if only_formats is None or fmt in only_formats} | {"eager"}
    chosen = {spec.name for spec in ARTIFACTS.values()
              if spec.format in wanted and (spec.enabled_by is None or entry.setting(spec.enabled_by))}
    for spec in reversed(ARTIFACTS.values()):  # what a chosen artifact is exported from is built too
        if spec.name in chosen and spec.requires is not None:
            chosen.add(spec.requires)
    return [name for name in ARTIFACTS if name in chosen]


__all__ = ["Exporter", "ExportContext", "ExportResult", "planned_artifacts", "registered_exporter"]
