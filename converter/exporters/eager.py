"""The reference: the exact weights plus what is needed to rebuild the module around them."""
from __future__ import annotations

import json

import torch

from ..core.errors import ModelLoadError
from ..core.reference import SPEC_FILE, STATE_FILE, load_reference
from ..models import check_declaration
from .base import ExportContext, ExportResult


def export(ctx: ExportContext) -> ExportResult:
    module, entry = ctx.built.module, ctx.entry
    check_declaration(entry, module)  # once per model: every other artifact is built after this one
    torch.save(module.state_dict(), ctx.out_dir / STATE_FILE)
    spec = {"kind": ctx.built.source_kind, "arch": entry.arch, "kwargs": entry.model_kwargs, "seed": entry.seed}
    if ctx.built.source_kind == "torchscript":
        torch.jit.save(module, ctx.out_dir / "module.ts")
        spec["module_file"] = "module.ts"
    elif ctx.built.source_kind == "pickled_module":
        torch.save(module, ctx.out_dir / "module.pkl")
        spec["module_file"] = "module.pkl"
    (ctx.out_dir / SPEC_FILE).write_text(json.dumps(spec, indent=2, sort_keys=True))
    # Prove the artifact rebuilds the same module before calling it good.
    rebuilt = load_reference(ctx.out_dir, trust_pickle=ctx.built.trusted_pickle)
    with torch.no_grad():
        same = all(torch.equal(a, b) for a, b in zip(_tensors(rebuilt(*ctx.example)), _tensors(module(*ctx.example))))
    if not same:
        raise ModelLoadError("the rebuilt reference does not reproduce the model's output bit for bit")
    return ExportResult(STATE_FILE, {"source_kind": ctx.built.source_kind,
                                     "flops_per_sample": count_flops(module, ctx.example)})


def count_flops(module: torch.nn.Module, example: tuple[torch.Tensor, ...]) -> int | None:
    """Floating-point operations of one forward pass per sample (a multiply-add counts 2), as torch's
    FlopCounterMode counts them (matmuls and convolutions); None when the model cannot be counted."""
    from torch.utils.flop_counter import FlopCounterMode

    try:
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            module(*example)
        return int(counter.get_total_flops() // len(example[0])) or None
    except Exception:  # a count is information, never a reason to fail the reference
        return None


def _tensors(output) -> list[torch.Tensor]:
    from ..core.outputs import leaves

    return [leaf for _, leaf in leaves(output)]
