"""A model's outputs by name: what a module or a runtime returned, as {declared name: host array}."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .errors import WorkbenchError

Feeds = dict[str, np.ndarray]  # named arrays: a model's inputs, or its outputs (the one definition)


class OutputMismatch(WorkbenchError):
    """What the model returned does not fit the outputs the zoo declares."""


def named_outputs(value: Any, names: Sequence[str]) -> dict[str, np.ndarray]:
    """One array, a tuple or list (in the declared order) or a mapping (by name) -> {name: numpy array}."""
    if isinstance(value, Mapping):
        if sorted(map(str, value)) != sorted(names):
            raise OutputMismatch(f"the model returned outputs {sorted(map(str, value))}, the zoo declares {list(names)}")
        items = [value[name] for name in names]
    elif isinstance(value, (tuple, list)):
        items = list(value)
    else:
        items = [value]
    if len(items) != len(names):
        raise OutputMismatch(f"the model returned {len(items)} output(s), the zoo declares {len(names)} "
                             f"({', '.join(names)}): set `outputs` in the zoo")
    return {name: to_numpy(item) for name, item in zip(names, items)}


def to_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor, on any device
        value = value.detach().cpu()
        return value.float().numpy() if str(value.dtype) == "torch.bfloat16" else value.numpy()  # numpy has no bf16
    if hasattr(value, "numpy"):  # a paddle tensor
        return np.asarray(value.numpy())
    return np.asarray(value)
