"""TorchScript: traced (default) or scripted, saved, then checked by reloading it."""
from __future__ import annotations

import warnings

import torch

from .base import ExportContext, ExportResult, sanity_batches, sanity_check

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
        scripted = torch.jit.trace(module, ctx.example, check_trace=True,
                                   check_inputs=[(batch,) for batch in batches.values()])
    path = ctx.out_dir / FILE
    torch.jit.save(scripted, str(path))
    reloaded = torch.jit.load(str(path), map_location="cpu")

    def run(feeds):
        with torch.no_grad():
            return reloaded(*[torch.from_numpy(array) for array in feeds.values()])

    max_diff = sanity_check(ctx, run, "reloaded TorchScript")
    return ExportResult(FILE, {"method": "as-is" if scripted is module else method,
                               "reload_max_abs_diff": max_diff})

