"""OpenVINO IR (.xml + .bin): `openvino.convert_model` from the PyTorch model, saved with fp32 weights, checked by
compiling it for the CPU in fp32 and running it."""
from __future__ import annotations

import warnings

from ..core.errors import ConversionError
from ..core.openvino_cpu import compile_for_cpu, openvino
import numpy as np
import torch

from .base import ExportContext, ExportResult, dynamic_axes, sanity_check

FILE = "model.xml"  # its weights beside it in model.bin


def export(ctx: ExportContext) -> ExportResult:
    ov = openvino()

    entry = ctx.entry
    axes = dynamic_axes(ctx)
    shapes = [(ov.PartialShape([-1 if index in axes[spec.name] else size
                                for index, size in enumerate(spec.size_at(entry.shape_points[0], 1))]),
               ov.Type(np.dtype(spec.data_type))) for spec in entry.model_inputs]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # it traces with torch.jit, which torch 2.14 deprecates
        example = ctx.example[0] if len(ctx.example) == 1 else ctx.example
        with torch.no_grad():  # traced as it will run (see the TorchScript exporter)
            model = ov.convert_model(ctx.built.module, example_input=example, input=shapes)
    if len(model.outputs) != len(entry.outputs):
        raise ConversionError(f"OpenVINO converted {len(model.outputs)} output(s), the zoo declares "
                              f"{len(entry.outputs)} ({', '.join(entry.output_names)})")
    # the converter names ports after the forward() argument and not at all: give them the zoo's names
    for port, name in zip(model.inputs, entry.input_names):
        port.get_tensor().set_names({name})
    for port, name in zip(model.outputs, entry.output_names):
        port.get_tensor().set_names({name})
    path = ctx.out_dir / FILE
    # save_model stores weights in fp16 unless told not to: an fp32 artifact keeps fp32 weights
    ov.save_model(model, str(path), compress_to_fp16=False)
    compiled = compile_for_cpu(str(path), ctx.threads)
    request = compiled.create_infer_request()
    ports = list(compiled.outputs)

    def run(feeds):
        results = request.infer(feeds)
        return [results[port].copy() for port in ports]

    max_diff = sanity_check(ctx, run, "OpenVINO (fp32)")
    kept = {spec.name: [axis for axis, dim in zip(spec.shape, port.get_partial_shape())
                        if isinstance(axis, str) and dim.is_dynamic]
            for spec, port in zip(entry.model_inputs, model.inputs)}
    return ExportResult(FILE, {"weights": "fp32", "dynamic_batch": entry.onnx.dynamic_batch, "dynamic_axes": kept,
                               "ops": len(model.get_ops()), "openvino_max_abs_diff": max_diff,
                               "openvino": ov.get_version().split("-")[0]})
