"""TVM: the ONNX model imported with TVM's Relax ONNX frontend and compiled for this machine's CPU (LLVM, its
-mcpu), untuned; a shared library the Relax VM loads, with the target and build time recorded beside it."""
from __future__ import annotations

import contextlib
import io
import json
import re

import onnx

from ..core.errors import ConversionError
from ..core.tvm_cpu import BUILD_FILE, LIBRARY, build_from_onnx, load_vm, run_vm
from .base import ExportContext, ExportResult, sanity_check
from .onnx_export import FILE as ONNX_FILE


def unavailable_here() -> str | None:
    import importlib.util

    return None if importlib.util.find_spec("tvm") else "apache-tvm is not installed (pip install '.[tvm]')"


def export(ctx: ExportContext) -> ExportResult:
    model = onnx.load(str(ctx.earlier["onnx"] / ONNX_FILE))
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):  # the frontend prints which operator it could not convert
            built = build_from_onnx(model, ctx.out_dir)
    except Exception as exc:  # the frontend's unsupported ops and TVM's build errors arrive as many types
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[-1]
        operator = re.search(r"Error converting operator (\w+)", printed.getvalue())
        where = f" (converting the ONNX operator {operator.group(1)})" if operator else ""
        raise ConversionError(f"TVM: {first_line[:300]}{where}") from None
    (ctx.out_dir / BUILD_FILE).write_text(json.dumps(built, indent=2))
    vm = load_vm(ctx.out_dir / LIBRARY)
    max_diff = sanity_check(ctx, lambda feeds: run_vm(vm, list(feeds.values())), "TVM")
    return ExportResult(LIBRARY, {**built, "source": "onnx", "tvm_max_abs_diff": max_diff})
