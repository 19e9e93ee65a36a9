"""OpenVINO IR (.xml + .bin): `openvino.convert_model` from the PyTorch model, saved with fp32 weights, checked by
compiling it for the CPU in fp32 and running it."""
from __future__ import annotations

import warnings

from ..core.errors import ConversionError
from ..core.openvino_cpu import compile_for_cpu, openvino
from .base import ExportContext, ExportResult, sanity_check

FILE = "model.xml"  # its weights beside it in model.bin


def export(ctx: ExportContext) -> ExportResult:
    ov = openvino()

    entry = ctx.entry
    shape = ov.PartialShape([-1 if entry.onnx.dynamic_batch else 1, *entry.input.shape])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # it traces with torch.jit, which torch 2.14 deprecates
        model = ov.convert_model(ctx.built.module, example_input=ctx.example, input=[shape])
    if len(model.outputs) != len(entry.outputs):
        raise ConversionError(f"OpenVINO converted {len(model.outputs)} output(s), the zoo declares "
                              f"{len(entry.outputs)} ({', '.join(entry.outputs)})")
    # the converter names ports after the forward() argument and not at all: give them the zoo's names
    model.inputs[0].get_tensor().set_names({entry.input.name})
    for port, name in zip(model.outputs, entry.outputs):
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
    return ExportResult(FILE, {"weights": "fp32", "dynamic_batch": entry.onnx.dynamic_batch,
                               "ops": len(model.get_ops()), "openvino_max_abs_diff": max_diff,
                               "openvino": ov.get_version().split("-")[0]})
