"""Resolve a zoo `arch` string to a model factory: torchvision's registry or an importable function."""
from __future__ import annotations

import difflib
import importlib
import os
import sys
from collections.abc import Iterable
from importlib.machinery import PathFinder
from pathlib import Path
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:  # torch and torchvision are imported where a model is built: `import converter.zoo` stays light
    import torch.nn as nn

TORCHVISION_PREFIX = "torchvision:"
TRUST_VARIABLE = "PARITY_TRUSTED_MODULES"  # comma-separated module names whose code may build models


def check_factory_trust(arch: str, zoo_folder: Path, trusted: Iterable[str] = ()) -> None:
    """A factory runs code with the zoo's arguments: it must be one the user vouches for, checked before
    anything is imported. Trusted: torchvision's registry, a module in the zoo file's own folder (or below),
    and modules named in the zoo's `trusted_modules`, --trust-module or $PARITY_TRUSTED_MODULES (a package
    name trusts its submodules). The standard library never builds models. ValueError otherwise."""
    if arch.startswith(TORCHVISION_PREFIX):
        return
    module, _ = _split(arch)
    _refuse_standard_library(module)
    names = [*trusted, *filter(None, os.environ.get(TRUST_VARIABLE, "").split(","))]
    if any(module == name.strip() or module.startswith(name.strip() + ".") for name in names):
        return
    origin = locate_module(module)
    if origin is None:
        raise ValueError(f"cannot import module '{module}': not found on the Python path (install it, or run from "
                         "the folder that holds it)")
    if origin.resolve().is_relative_to(zoo_folder.resolve()):
        return
    raise ValueError(f"module '{module}' (found at {origin}) is outside the zoo file's folder and not trusted to "
                     f"build models: if you vouch for its code, list it in the zoo's top-level trusted_modules "
                     f"(or pass --trust-module {module})")


def importable_from(folder: Path) -> None:
    """Modules in the zoo file's folder import without PYTHONPATH (`arch: mynet:build` with mynet.py beside
    zoo.yaml), here and in the workers (they take the caller's sys.path). Appended after the installed packages,
    so a file there cannot shadow one of them."""
    entry = str(folder.resolve())
    if entry not in sys.path:
        sys.path.append(entry)


def locate_module(name: str) -> Path | None:
    """The file a module would be imported from, found without importing it or its parent packages."""
    parts = name.split(".")
    spec = PathFinder.find_spec(parts[0], sys.path)
    for index in range(1, len(parts)):
        if spec is None or not spec.submodule_search_locations:
            return None
        spec = PathFinder.find_spec(".".join(parts[:index + 1]), list(spec.submodule_search_locations))
    if spec is None:
        return None
    if spec.origin and spec.origin not in ("built-in", "frozen", "namespace"):
        return Path(spec.origin)
    locations = list(spec.submodule_search_locations or [])
    return Path(locations[0]) if locations else None


def _refuse_standard_library(module: str) -> None:
    if module.split(".")[0] in sys.stdlib_module_names:
        raise ValueError(f"'{module}' is a standard-library module: it never builds a model, and is not run")


def _split(arch: str) -> tuple[str, str]:
    """'package.module:function' -> (module, function)."""
    module_name, sep, attr = arch.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"'{arch}' is neither 'torchvision:<name>' nor 'package.module:function'")
    return module_name, attr


def resolve_factory(arch: str) -> Callable[..., nn.Module]:
    """Return the callable that builds `arch`; ValueError with a helpful message when it does not exist.

    Only the module the user named is imported: nothing in a model file chooses code to run.
    """
    if arch.startswith(TORCHVISION_PREFIX):
        import torchvision

        name = arch[len(TORCHVISION_PREFIX):]
        known = torchvision.models.list_models()
        if name not in known:
            close = difflib.get_close_matches(name, known, n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise ValueError(f"unknown torchvision architecture '{name}'{hint}")
        return lambda **kwargs: torchvision.models.get_model(name, **kwargs)
    module_name, attr = _split(arch)
    _refuse_standard_library(module_name)  # also where no zoo was read: an eager artifact's reference.json
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

    try:
        factory = resolve_factory(arch)
    except ValueError as exc:
        raise ModelLoadError(f"arch {arch}: {exc}") from None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            module = factory(**kwargs)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise ModelLoadError(f"{arch}({', '.join(f'{k}={v!r}' for k, v in kwargs.items())}) failed: {exc}") from None
    if not isinstance(module, torch.nn.Module):
        raise ModelLoadError(f"{arch} returned {type(module).__name__}, not a torch.nn.Module")
    return module
