"""ONNX: the TorchScript-based export (opset and dynamic batch axis from the zoo), the dynamo-based export
(`torch.onnx.export(dynamo=True)`, the path torch 2.14 supports), and the onnxsim-simplified twin of each."""
from __future__ import annotations

import contextlib
import logging
import warnings
from collections import Counter
from pathlib import Path

import onnx
import torch

from ..core.errors import ConversionError
from ..zoo import BATCH
from .base import ExportContext, ExportResult, dynamic_axes, native_stderr_silenced, sanity_check, traced_batch

FILE = "model.onnx"


def export_torchscript_based(ctx: ExportContext, path: Path, opset: int) -> None:
    """torch.onnx.export(dynamo=False) of the model at `opset`, the zoo's input and output names, a dynamic batch
    axis unless the zoo fixes it. (The dynamo exporter is `export_dynamo`.)"""
    entry = ctx.entry
    axes = {**dynamic_axes(ctx), **({name: {0: BATCH} for name in entry.output_names}
                                    if entry.onnx.dynamic_batch else {})}
    # the legacy exporter announces its own deprecation, and prints its whole graph when it fails (the error says it)
    with warnings.catch_warnings(), native_stderr_silenced((1, 2)):
        warnings.simplefilter("ignore")
        torch.onnx.export(ctx.built.module, ctx.example, str(path), dynamo=False, opset_version=opset,
                          input_names=list(entry.input_names), output_names=entry.output_names,
                          dynamic_axes={name: a for name, a in axes.items() if a} or None, do_constant_folding=True)


def export_raw(ctx: ExportContext) -> ExportResult:
    entry = ctx.entry
    path = ctx.out_dir / FILE
    export_torchscript_based(ctx, path, entry.onnx.opset)
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    max_diff = check_with_onnxruntime(str(path), ctx)
    return ExportResult(FILE, {"exporter": "torch.onnx.export(dynamo=False), TorchScript-based: deprecated in torch "
                                           "2.14",
                               "opset": entry.onnx.opset, "dynamic_batch": entry.onnx.dynamic_batch,
                               "dynamic_axes": onnx_dynamic_axes(model, entry),
                               "nodes": len(model.graph.node), "ops": _op_counts(model),
                               "ort_max_abs_diff": max_diff})


DYNAMO_MIN_OPSET = 18  # the dynamo exporter writes opset 18 and later; a lower zoo opset would be down-converted


def export_dynamo(ctx: ExportContext) -> ExportResult:
    entry = ctx.entry
    opset = max(entry.onnx.opset, DYNAMO_MIN_OPSET)
    example, shapes = traced_batch(ctx)
    path = ctx.out_dir / FILE
    with warnings.catch_warnings(), _quiet("onnxscript", "onnx_ir", "torch.onnx"):
        warnings.simplefilter("ignore")
        # the outputs are named afterwards: given output_names, the exporter writes a second value of that name
        # when the model has an inner value called so (a local `embedding` returned after other use) and fails
        program = torch.onnx.export(ctx.built.module, example, dynamo=True, opset_version=opset,
                                    input_names=list(entry.input_names), dynamic_shapes=shapes, verbose=False)
    program.save(str(path))
    model = with_output_names(onnx.load(str(path)), entry.output_names)
    onnx.save(model, str(path))
    onnx.checker.check_model(model, full_check=True)
    max_diff = check_with_onnxruntime(str(path), ctx)
    details = {"exporter": "torch.onnx.export(dynamo=True)", "opset": opset,
               "dynamic_batch": entry.onnx.dynamic_batch, "dynamic_axes": onnx_dynamic_axes(model, entry),
               "nodes": len(model.graph.node), "ops": _op_counts(model),
               "ort_max_abs_diff": max_diff}
    if opset != entry.onnx.opset:
        details["opset_note"] = f"the zoo asks for opset {entry.onnx.opset}; the dynamo exporter writes {opset}"
    return ExportResult(FILE, details)


def with_output_names(model: onnx.ModelProto, names: list[str]) -> onnx.ModelProto:
    """The graph's outputs renamed to `names`, in order; an inner value that already has one of those names is
    renamed aside first (every reference to a value is renamed at once, so the graph stays in SSA form)."""
    graph = model.graph
    if len(graph.output) != len(names):
        raise ConversionError(f"the ONNX graph has {len(graph.output)} output(s), the zoo declares {len(names)} "
                              f"({', '.join(names)})")
    old = [output.name for output in graph.output]
    taken = {v for node in graph.node for v in node.output} | {i.name for i in graph.input} | \
        {t.name for t in graph.initializer}
    mapping = {name: f"{name}__inner" for name in names if name in taken and name not in old}
    mapping.update({before: after for before, after in zip(old, names) if before != after})
    if not mapping:
        return model
    rename = lambda name: mapping.get(name, name)  # noqa: E731
    for node in graph.node:
        node.input[:] = [rename(name) for name in node.input]
        node.output[:] = [rename(name) for name in node.output]
    for value in (*graph.output, *graph.value_info):
        value.name = rename(value.name)
    return model


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
    with native_stderr_silenced():  # a warning per op it cannot fold: not the user's business
        simplified, check_ok = onnxsim.simplify(raw)
    if not check_ok:  # onnxsim's own comparison of the two models on random inputs
        raise ConversionError("onnxsim's own output check failed: the simplified model disagrees with the raw one")
    path = ctx.out_dir / FILE
    onnx.save(simplified, str(path))
    onnx.checker.check_model(str(path), full_check=True)
    max_diff = check_with_onnxruntime(str(path), ctx)
    return ExportResult(FILE, {"nodes_before": len(raw.graph.node), "nodes_after": len(simplified.graph.node),
                               "dynamic_axes": onnx_dynamic_axes(simplified, ctx.entry),
                               "ops": _op_counts(simplified), "ort_max_abs_diff": max_diff})


def check_with_onnxruntime(path: str, ctx: ExportContext) -> float:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = ctx.threads
    session = ort.InferenceSession(path, sess_options=options, providers=["CPUExecutionProvider"])
    return sanity_check(ctx, lambda feeds: session.run(ctx.entry.output_names, feeds), "ONNX Runtime")


def onnx_dynamic_axes(model: onnx.ModelProto, entry) -> dict[str, list[str]]:
    """Per input, the zoo's named axes that the graph kept symbolic (a dim_param or no value): what an exporter
    specialised shows as missing here."""
    graph_inputs = {i.name: i.type.tensor_type.shape.dim for i in model.graph.input}
    return {spec.name: [axis for axis, dim in zip(spec.shape, graph_inputs.get(spec.name, []))
                        if isinstance(axis, str) and not dim.HasField("dim_value")]
            for spec in entry.model_inputs}


def _op_counts(model: onnx.ModelProto) -> dict[str, int]:
    return dict(sorted(Counter(node.op_type for node in model.graph.node).items()))
