"""Read user checkpoints safely: weights-only unpickling unless the zoo explicitly trusts the file."""
from __future__ import annotations

import os
import pickle
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import ModelLoadError

if TYPE_CHECKING:  # torch is imported where a checkpoint is read: `import converter.zoo` stays light
    import torch
    import torch.nn as nn

DATA_PARALLEL_PREFIX = "module."
UNSAFE_LOAD_VARIABLE = "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"


def unsafe_load_forced() -> str | None:
    """torch honours this variable by unpickling everything, weights_only=True or not: refuse to run."""
    if os.environ.get(UNSAFE_LOAD_VARIABLE, "").strip().lower() not in ("", "0", "false"):
        return (f"{UNSAFE_LOAD_VARIABLE} is set: torch would unpickle checkpoints without the weights-only "
                "safeguard. Unset it; use trust_pickle: true in the zoo for a file you trust")
    return None


def is_torchscript_archive(path: Path) -> bool:
    """TorchScript archives are zip files with a `code/` folder; torch.save archives have none."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.split("/", 1)[-1].startswith("code/") for name in archive.namelist())


def load_checkpoint(path: Path, trust_pickle: bool) -> object:
    """torch.load with weights_only=True, unless trust_pickle; never retried without it after an error."""
    import torch

    forced = unsafe_load_forced()
    if forced:
        raise ModelLoadError(forced)
    try:
        return torch.load(path, map_location="cpu", weights_only=not trust_pickle)
    except pickle.UnpicklingError as exc:
        if not trust_pickle and "Weights only load failed" in str(exc):
            blocked = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
            what = f"it references {blocked.group(1)}" if blocked else "it holds more than tensors"
            raise ModelLoadError(
                f"checkpoint {path}: refused by weights-only loading ({what}; e.g. a whole pickled model). "
                "Set trust_pickle: true only if you trust this file"
            ) from None
        raise ModelLoadError(f"checkpoint {path}: not a readable torch checkpoint: {exc}") from None
    except Exception as exc:  # torch raises many kinds for a file that is not a checkpoint at all
        raise ModelLoadError(f"checkpoint {path}: not a readable torch checkpoint "
                             f"({type(exc).__name__}: {' '.join(str(exc).split())[:200]})") from None


def extract_state_dict(obj: object, path: Path, key: str | None) -> dict[str, torch.Tensor]:
    """The state_dict in a checkpoint: the object itself, or the entry under `key`.

    A `module.` prefix on every key (saved from DataParallel/DDP) is removed.
    """
    import torch

    if key is not None:
        if not isinstance(obj, Mapping) or key not in obj:
            present = ", ".join(sorted(map(str, obj))[:8]) if isinstance(obj, Mapping) else type(obj).__name__
            raise ModelLoadError(f"checkpoint {path}: state_dict_key '{key}' is absent (found: {present})")
        obj = obj[key]
    if isinstance(obj, torch.nn.Module):
        raise ModelLoadError(f"checkpoint {path}: holds a whole module; remove `arch` to use it as the model")
    if not isinstance(obj, Mapping) or not obj:
        raise ModelLoadError(f"checkpoint {path}: expected a state_dict (a mapping of tensors), found {type(obj).__name__}")
    non_tensors = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if non_tensors:
        raise ModelLoadError(
            f"checkpoint {path}: entries {non_tensors[:3]} are not tensors; if the state_dict is nested, "
            "name it with state_dict_key"
        )
    state = dict(obj)
    if all(k.startswith(DATA_PARALLEL_PREFIX) for k in state):
        state = {k[len(DATA_PARALLEL_PREFIX):]: v for k, v in state.items()}
    return state


def load_state_dict_strict(model: nn.Module, state: Mapping[str, torch.Tensor], path: Path) -> None:
    """load_state_dict(strict=True) with an error that names the first mismatching keys and shapes."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [
        f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing keys {missing[:3]}")
    if unexpected:
        problems.append(f"unexpected keys {unexpected[:3]}")
    if mismatched:
        problems.append(f"shape mismatch (checkpoint vs model) {mismatched[:3]}")
    if problems:
        raise ModelLoadError(f"checkpoint {path}: does not fit the architecture: {'; '.join(problems)}")
    model.load_state_dict(state, strict=True)
