"""torch.export: the model as an ExportedProgram (.pt2), the path PyTorch supports now that torch.jit.trace and
the TorchScript-based ONNX exporter are deprecated; a dynamic batch dimension; checked by loading it back."""
from __future__ import annotations

import torch

from .base import ExportContext, ExportResult, sanity_check, traced_batch

FILE = "model.pt2"


def export(ctx: ExportContext) -> ExportResult:
    from torch.export import export as export_program, load, save

    entry = ctx.entry
    example, shapes = traced_batch(ctx)
    with torch.no_grad():
        program = export_program(ctx.built.module, (example,), dynamic_shapes=shapes)
    path = ctx.out_dir / FILE
    save(program, str(path))
    reloaded = load(str(path)).module()

    def run(feeds):
        with torch.no_grad():
            return reloaded(*[torch.from_numpy(array) for array in feeds.values()])

    max_diff = sanity_check(ctx, run, "reloaded torch.export program")
    return ExportResult(FILE, {"dynamic_batch": entry.onnx.dynamic_batch,
                               "nodes": len(program.graph.nodes), "reload_max_abs_diff": max_diff})
