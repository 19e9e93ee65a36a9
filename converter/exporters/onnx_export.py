"""ONNX: the TorchScript-based export (opset and dynamic batch axis from the zoo), the dynamo-based export
(`torch.onnx.export(dynamo=True)`, the path torch 2.14 supports), and the onnxsim-simplified twin of each."""
from __future__ import annotations

import contextlib
import logging
import warnings
from collections import Counter

import onnx
import torch

from ..core.errors import ConversionError
from .base import ExportContext, ExportResult, native_stderr_captured, sanity_check

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
    return ExportResult(FILE, {"exporter": "torch.onnx.export(dynamo=False), TorchScript-based: deprecated in torch "
                                           "2.14",
                               "opset": entry.onnx.opset, "dynamic_batch": entry.onnx.dynamic_batch,
                               "nodes": len(model.graph.node), "ops": _op_counts(model),
                               "ort_max_abs_diff": max_diff})


DYNAMO_MIN_OPSET = 18  # the dynamo exporter writes opset 18 and later; a lower zoo opset would be down-converted
MAX_BATCH = 4096


def export_dynamo(ctx: ExportContext) -> ExportResult:
    from torch.export import Dim

    from ..models import example_input

    entry = ctx.entry
    opset = max(entry.onnx.opset, DYNAMO_MIN_OPSET)
    if entry.onnx.dynamic_batch:
        # torch.export specialises a batch of 1 to the constant 1: trace with 2 and declare the range
        example, shapes = example_input(entry, 2), ({0: Dim("batch", min=1, max=MAX_BATCH)},)
    else:
        example, shapes = ctx.example, None
    path = ctx.out_dir / FILE
    with warnings.catch_warnings(), _quiet("onnxscript", "onnx_ir", "torch.onnx"):
        warnings.simplefilter("ignore")
        program = torch.onnx.export(ctx.built.module, (example,), dynamo=True, opset_version=opset,
                                    input_names=[entry.input.name], output_names=list(entry.outputs),
                                    dynamic_shapes=shapes, verbose=False)
    program.save(str(path))
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    max_diff = check_with_onnxruntime(str(path), ctx)
    details = {"exporter": "torch.onnx.export(dynamo=True)", "opset": opset,
               "dynamic_batch": entry.onnx.dynamic_batch, "nodes": len(model.graph.node), "ops": _op_counts(model),
               "ort_max_abs_diff": max_diff}
    if opset != entry.onnx.opset:
        details["opset_note"] = f"the zoo asks for opset {entry.onnx.opset}; the dynamo exporter writes {opset}"
    return ExportResult(FILE, details)


@contextlib.contextmanager
def _quiet(*loggers: str):
    """The dynamo exporter's optimiser narrates every rewrite at INFO; its warnings and errors still pass."""
    saved = {name: logging.getLogger(name).level for name in loggers}
    for name in loggers:
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        yield
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


def export_simplified(ctx: ExportContext) -> ExportResult:
    return _simplified(ctx, "onnx")


def export_dynamo_simplified(ctx: ExportContext) -> ExportResult:
    return _simplified(ctx, "onnx_dynamo")


def _simplified(ctx: ExportContext, source: str) -> ExportResult:
    import onnxsim

    raw = onnx.load(str(ctx.earlier[source] / FILE))
    with native_stderr_captured():  # a warning per op it cannot fold: not the user's business
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
