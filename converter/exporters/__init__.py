"""One module per artifact format, registered by name. Adding a format is one module and one line here."""
from __future__ import annotations

from typing import Callable

from . import eager, onnx_export, paddle, torchscript
from .base import ExportContext, ExportResult

Exporter = Callable[[ExportContext], ExportResult]

# Artifact name -> exporter, in build order (onnx_simplified reads what onnx wrote).
EXPORTERS: dict[str, Exporter] = {
    "eager": eager.export,
    "torchscript": torchscript.export,
    "onnx": onnx_export.export_raw,
    "onnx_simplified": onnx_export.export_simplified,
    "paddle": paddle.export,
}

# What each exporter needs built before it: every format is exported from the saved eager reference.
REQUIRES: dict[str, str] = {"torchscript": "eager", "onnx": "eager", "onnx_simplified": "onnx", "paddle": "eager"}


def planned_artifacts(zoo_formats: list[str], simplify_onnx: bool) -> list[str]:
    """The artifact names a model's `formats` expand to, in build order. The eager reference is always
    built: every other format is exported from it, and the verifier compares against it."""
    names = ["eager"]
    for fmt in zoo_formats:
        names.append(fmt)
        if fmt == "onnx" and simplify_onnx:
            names.append("onnx_simplified")
    return [name for name in EXPORTERS if name in names]


__all__ = ["EXPORTERS", "REQUIRES", "ExportContext", "ExportResult", "planned_artifacts"]
