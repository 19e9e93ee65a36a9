"""TorchScript: traced (default) or scripted, saved, then checked by reloading it."""
from __future__ import annotations

import torch

from ..errors import ConversionError
from .base import ExportContext, ExportResult, sanity_batches

FILE = "model.ts"


def export(ctx: ExportContext) -> ExportResult:
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
    max_diff = 0.0
    with torch.no_grad():
        for size, batch in batches.items():
            expected, got = module(batch), reloaded(batch)
            if not isinstance(got, torch.Tensor) or got.shape != expected.shape:
                raise ConversionError(f"reloaded module returned {_describe(got)} at batch {size}, "
                                      f"expected {tuple(expected.shape)}")
            if not torch.isfinite(got).all():
                raise ConversionError(f"reloaded module returned non-finite values at batch {size}")
            max_diff = max(max_diff, (got - expected).abs().max().item())
    return ExportResult(FILE, {"method": "as-is" if scripted is module else method,
                               "reload_max_abs_diff": max_diff})


def _describe(value) -> str:
    return f"shape {tuple(value.shape)}" if isinstance(value, torch.Tensor) else type(value).__name__
