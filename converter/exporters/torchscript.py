"""TorchScript: traced (default) or scripted, saved, then checked by reloading it."""
from __future__ import annotations

import warnings

import torch

from .base import ExportContext, ExportResult, declared_axes, sanity_batches, sanity_check

FILE = "model.ts"


def export(ctx: ExportContext) -> ExportResult:
    with warnings.catch_warnings():
        # torch 2.14 announces that the jit is deprecated on every call: TorchScript is what this artifact is
        warnings.simplefilter("ignore", FutureWarning)
        return _export(ctx)


def _export(ctx: ExportContext) -> ExportResult:
    module, method = ctx.built.module, ctx.entry.torchscript.method
    batches = sanity_batches(ctx)
    if isinstance(module, torch.jit.ScriptModule):
        scripted = module  # the source already is TorchScript
    elif method == "script":
        scripted = torch.jit.script(module)
    else:
        # check_trace re-runs the trace on other inputs and raises when the graphs differ.
        # traced as it will run, without gradients (nn.TransformerEncoder takes another path when they are on, and
        # that path's graph changes with the padding); strict=False lets a dict or list output through
        with torch.no_grad():
            scripted = torch.jit.trace(module, ctx.example, check_trace=True, check_inputs=list(batches.values()),
                                       strict=False)
    path = ctx.out_dir / FILE
    torch.jit.save(scripted, str(path))
    reloaded = torch.jit.load(str(path), map_location="cpu")

    def run(feeds):
        with torch.no_grad():
            return reloaded(*[torch.from_numpy(array) for array in feeds.values()])

    max_diff = sanity_check(ctx, run, "reloaded TorchScript")
    # TorchScript declares no input shapes: an axis a trace baked in shows only when run at another size
    return ExportResult(FILE, {"method": "as-is" if scripted is module else method,
                               "reload_max_abs_diff": max_diff, "dynamic_axes": declared_axes(ctx)})

