"""Results as plain JSON and named arrays, and back, by the dataclasses' own type hints: a results file names no
class and runs no code (no pickle), so a merge can read a shard's file from anywhere."""
from __future__ import annotations

import dataclasses
import functools
import types
import typing
from typing import Any

import numpy as np


def to_plain(value: Any, arrays: dict[str, np.ndarray]) -> Any:
    """`value` as JSON-ready data; each numpy array is put into `arrays` and replaced by {"array": its key}."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_plain(getattr(value, f.name), arrays) for f in dataclasses.fields(value)}
    if isinstance(value, np.ndarray):
        key = f"a{len(arrays)}"
        arrays[key] = value
        return {"array": key}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {str(key): to_plain(item, arrays) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(item, arrays) for item in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)  # a path or an enum in a runtime's configuration: shown, never computed with


def from_plain(hint: Any, value: Any, arrays: dict[str, np.ndarray]) -> Any:
    """The inverse of to_plain for a value of type `hint`; ValueError where the data does not fit the type."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any or hint is object:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        kinds = [arg for arg in args if arg is not type(None)]
        if len(kinds) == 1:
            return from_plain(kinds[0], value, arrays)
        for kind in kinds:  # e.g. float | str: the first that takes it
            try:
                return from_plain(kind, value, arrays)
            except (TypeError, ValueError):
                continue
        raise ValueError(f"{value!r} is none of {hint}")
    if hint is np.ndarray:
        if not isinstance(value, dict) or value.get("array") not in arrays:
            raise ValueError(f"expected an array reference, got {value!r}")
        return arrays[value["array"]]
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise ValueError(f"{hint.__name__}: expected an object, got {type(value).__name__}")
        hints = _hints(hint)
        unknown = set(value) - set(hints)
        if unknown:
            raise ValueError(f"{hint.__name__}: unknown fields {sorted(unknown)}")
        return hint(**{name: from_plain(hints[name], item, arrays) for name, item in value.items()})
    if origin is dict:
        key_type, item_type = args or (str, Any)
        return {from_plain(key_type, key, arrays): from_plain(item_type, item, arrays) for key, item in value.items()}
    if origin in (list, tuple):
        if not isinstance(value, list):
            raise ValueError(f"expected a list, got {type(value).__name__}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            return tuple(from_plain(kind, item, arrays) for kind, item in zip(args, value, strict=True))
        items = [from_plain(args[0] if args else Any, item, arrays) for item in value]
        return tuple(items) if origin is tuple else items
    if hint is int:
        if isinstance(value, str) and value.lstrip("-").isdigit():  # a JSON object's key
            return int(value)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif hint in (str, bool):
        if isinstance(value, hint):
            return value
    else:
        return value
    raise ValueError(f"expected {hint.__name__}, got {value!r}")


@functools.lru_cache(maxsize=None)
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)
