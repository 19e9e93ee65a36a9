"""The reference: the exact weights plus what is needed to rebuild the module around them."""
from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn as nn

from ..checkpoints import load_state_dict_strict
from ..errors import ModelLoadError
from ..models import instantiate
from .base import ExportContext, ExportResult

SPEC_FILE = "reference.json"
STATE_FILE = "state_dict.pt"


def export(ctx: ExportContext) -> ExportResult:
    module, entry = ctx.built.module, ctx.entry
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
        same = torch.equal(rebuilt(ctx.example), module(ctx.example))
    if not same:
        raise ModelLoadError("the rebuilt reference does not reproduce the model's output bit for bit")
    return ExportResult(STATE_FILE, {"source_kind": ctx.built.source_kind})


def load_reference(folder: Path, trust_pickle: bool = False) -> nn.Module:
    """Rebuild the eager reference from its artifact folder (used by the verifier)."""
    spec = json.loads((folder / SPEC_FILE).read_text())
    if spec["kind"] in ("torchscript", "pickled_module"):
        if not trust_pickle:
            raise ModelLoadError(f"{folder}: the reference is a {spec['kind']} and needs trust_pickle: true")
        path = folder / spec["module_file"]
        if spec["kind"] == "torchscript":
            module = torch.jit.load(path, map_location="cpu")
        else:
            module = torch.load(path, map_location="cpu", weights_only=False)
    else:
        module = instantiate(spec["arch"], spec["kwargs"], seed=spec["seed"])
        state = torch.load(folder / STATE_FILE, map_location="cpu", weights_only=True)
        load_state_dict_strict(module, state, folder / STATE_FILE)
    return module.float().eval()
