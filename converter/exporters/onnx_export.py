"""ONNX: the raw export (opset and dynamic batch axis from the zoo) and the onnxsim-simplified model."""
from __future__ import annotations

import warnings
from collections import Counter

import onnx
import torch

from ..core.errors import ConversionError
from .base import ExportContext, ExportResult, sanity_check

FILE = "model.onnx"


def export_raw(ctx: ExportContext) -> ExportResult:
    entry = ctx.entry
    input_name = entry.input.name
    dynamic_axes = {name: {0: "batch"} for name in [input_name, *entry.outputs]} if entry.onnx.dynamic_batch else None
    path = ctx.out_dir / FILE
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter announces its own deprecation
        # dynamo=False: the TorchScript-based exporter handles dynamic_axes and every torchvision
        # classifier; the torch.export-based one needs onnxscript and symbolic shapes per model.
        torch.onnx.export(ctx.built.module, (ctx.example,), str(path), dynamo=False,
                          opset_version=entry.onnx.opset, input_names=[input_name],
                          output_names=list(entry.outputs), dynamic_axes=dynamic_axes, do_constant_folding=True)
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    max_diff = check_with_onnxruntime(str(path), ctx)
    return ExportResult(FILE, {"opset": entry.onnx.opset, "dynamic_batch": entry.onnx.dynamic_batch,
                               "nodes": len(model.graph.node), "ops": _op_counts(model),
                               "ort_max_abs_diff": max_diff})


def export_simplified(ctx: ExportContext) -> ExportResult:
    import onnxsim

    raw = onnx.load(str(ctx.earlier["onnx"] / FILE))
    simplified, check_ok = onnxsim.simplify(raw)
    if not check_ok:  # onnxsim's own comparison of the two models on random inputs
        raise ConversionError("onnxsim's own output check failed: the simplified model disagrees with the raw one")
    path = ctx.out_dir / FILE
    onnx.save(simplified, str(path))
    onnx.checker.check_model(str(path), full_check=True)
    max_diff = check_with_onnxruntime(str(path), ctx)
    return ExportResult(FILE, {"nodes_before": len(raw.graph.node), "nodes_after": len(simplified.graph.node),
                               "ops": _op_counts(simplified), "ort_max_abs_diff": max_diff})


def check_with_onnxruntime(path: str, ctx: ExportContext) -> float:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = ctx.threads
    session = ort.InferenceSession(path, sess_options=options, providers=["CPUExecutionProvider"])
    return sanity_check(ctx, lambda feeds: session.run(list(ctx.entry.outputs), feeds), "ONNX Runtime")


def _op_counts(model: onnx.ModelProto) -> dict[str, int]:
    return dict(sorted(Counter(node.op_type for node in model.graph.node).items()))
