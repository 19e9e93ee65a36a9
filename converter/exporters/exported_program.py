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
        program = export_program(ctx.built.module, example, dynamic_shapes=shapes)
    path = ctx.out_dir / FILE
    save(program, str(path))
    reloaded = load(str(path)).module()

    def run(feeds):
        with torch.no_grad():
            return reloaded(*[torch.from_numpy(array) for array in feeds.values()])

    max_diff = sanity_check(ctx, run, "reloaded torch.export program")
    return ExportResult(FILE, {"dynamic_batch": entry.onnx.dynamic_batch, "dynamic_axes": program_dynamic_axes(program, entry),
                               "nodes": len(program.graph.nodes), "reload_max_abs_diff": max_diff})


def program_dynamic_axes(program, entry) -> dict[str, list[str]]:
    """Per input, the zoo's named axes the program kept symbolic (torch.export specialises an axis the model bakes
    in, under Dim.AUTO)."""
    placeholders = [node for node in program.graph.nodes if node.op == "placeholder"
                    and node.name in program.graph_signature.user_inputs]
    kept = {}
    for spec, node in zip(entry.model_inputs, placeholders):
        shape = node.meta["val"].shape
        kept[spec.name] = [axis for axis, size in zip(spec.shape, shape) if isinstance(axis, str)
                           and not isinstance(size, int)]
    return kept
