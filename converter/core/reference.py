"""The eager reference artifact: the exact weights plus what is needed to rebuild the module around them.
The converter writes it (converter/exporters/eager.py); the verifier and the self-test rebuild it."""
from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn as nn

from .archs import instantiate
from .checkpoints import load_state_dict_strict
from .errors import ModelLoadError

SPEC_FILE = "reference.json"
STATE_FILE = "state_dict.pt"


def load_reference(folder: Path, trust_pickle: bool = False) -> nn.Module:
    """Rebuild the eager reference from its artifact folder, in eval mode, float32, on the CPU."""
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
