"""Resolve a zoo `arch` string to a model factory: torchvision's registry or an importable function."""
from __future__ import annotations

import difflib
import importlib
from typing import Callable

import torch.nn as nn
import torchvision

TORCHVISION_PREFIX = "torchvision:"


def resolve_factory(arch: str) -> Callable[..., nn.Module]:
    """Return the callable that builds `arch`; ValueError with a helpful message when it does not exist.

    Only the module the user named is imported: nothing in a model file chooses code to run.
    """
    if arch.startswith(TORCHVISION_PREFIX):
        name = arch[len(TORCHVISION_PREFIX):]
        known = torchvision.models.list_models()
        if name not in known:
            close = difflib.get_close_matches(name, known, n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise ValueError(f"unknown torchvision architecture '{name}'{hint}")
        return lambda **kwargs: torchvision.models.get_model(name, **kwargs)
    module_name, sep, attr = arch.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"'{arch}' is neither 'torchvision:<name>' nor 'package.module:function'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"cannot import module '{module_name}': {exc}") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise ValueError(f"module '{module_name}' has no callable '{attr}'")
    return factory


def instantiate(arch: str, kwargs: dict, seed: int) -> nn.Module:
    """Call the architecture's factory with torch's RNG seeded, so its own init is reproducible too."""
    import torch

    from .errors import ModelLoadError

    factory = resolve_factory(arch)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            module = factory(**kwargs)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise ModelLoadError(f"{arch}({', '.join(f'{k}={v!r}' for k, v in kwargs.items())}) failed: {exc}") from None
    if not isinstance(module, nn.Module):
        raise ModelLoadError(f"{arch} returned {type(module).__name__}, not a torch.nn.Module")
    return module
