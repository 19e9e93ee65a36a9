"""A model's outputs by name: what a module or a runtime returned, as {declared name: host array}."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .errors import WorkbenchError

Feeds = dict[str, np.ndarray]  # named arrays: a model's inputs, or its outputs (the one definition)


class OutputMismatch(WorkbenchError):
    """What the model returned does not fit the outputs the zoo declares."""


def leaves(value: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """What a model returned, flattened into (name, array) leaves in this documented order: a tensor is one leaf;
    a tuple's or list's items in order; a dict's values in its own order, named by their keys (nested: 'outer.inner',
    a tuple inside a dict 'key.0'). Exporters flatten the same way (torch.onnx, torch.export, OpenVINO)."""
    if isinstance(value, Mapping):
        return [leaf for key, item in value.items() for leaf in leaves(item, f"{prefix}{key}.")]
    if isinstance(value, (tuple, list)):
        return [leaf for index, item in enumerate(value) for leaf in leaves(item, f"{prefix}{index}.")]
    return [(prefix[:-1], value)]


def named_outputs(value: Any, names: Sequence[str]) -> dict[str, np.ndarray]:
    """What a model or runtime returned -> {declared name: numpy array}: its leaves (see `leaves`) by name where a
    dict names every declared output, else in order."""
    found = leaves(value, "")
    if isinstance(value, Mapping) and sorted(name for name, _ in found) != sorted(names) \
            and all("." not in str(key) for key in value) and len(found) == len(value):
        raise OutputMismatch(f"the model returned outputs {sorted(map(str, value))}, the zoo declares {list(names)}")
    if len(found) != len(names):
        shown = "" if not isinstance(value, (Mapping, tuple, list)) else \
            f" ({', '.join(name for name, _ in found)})"
        raise OutputMismatch(f"the model returned {len(found)} output(s){shown}, the zoo declares {len(names)} "
                             f"({', '.join(names)}): set `outputs` in the zoo")
    by_name = dict(found)
    if sorted(by_name) == sorted(names):
        return {name: to_numpy(by_name[name]) for name in names}
    return {name: to_numpy(item) for name, (_, item) in zip(names, found)}


def to_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor, on any device
        value = value.detach().cpu()
        return value.float().numpy() if str(value.dtype) == "torch.bfloat16" else value.numpy()  # numpy has no bf16
    if hasattr(value, "numpy"):  # a paddle tensor
        return np.asarray(value.numpy())
    return np.asarray(value)
