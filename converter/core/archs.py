"""Resolve a zoo `arch` string to a model factory: a model registry's (torchvision's, the bundled pretrained
models') or an importable function; and a registry's named weights."""
from __future__ import annotations

import difflib
import importlib
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from functools import partial
from importlib.machinery import PathFinder
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from . import pretrained
from .registry import load_object

if TYPE_CHECKING:  # torch and torchvision are imported where a model is built: `import converter.zoo` stays light
    import torch.nn as nn

TRUST_VARIABLE = "PARITY_TRUSTED_MODULES"  # comma-separated module names whose code may build models


@dataclass(frozen=True)
class NamedWeights:
    """Weights a model registry names (`weights: IMAGENET1K_V1`), as the zoo and the converter use them."""

    value: Any  # what the registry's factory takes as `weights=`
    file: Path | None  # where they are read from on this machine; None: their package is not installed
    missing: str  # why they cannot be used when that file is absent, and what to do
    categories: list[str] | None
    mean: tuple[float, ...] | None = None  # the input normalisation they were trained with, where known
    std: tuple[float, ...] | None = None

    @property
    def available(self) -> bool:
        return self.file is not None and self.file.is_file()


@dataclass(frozen=True)
class ModelRegistry:
    """A library's registry of architectures, named in a zoo as `<prefix>:<name>`: installed code the user already
    trusts, so naming one runs no module of the user's."""

    names: Callable[[], list[str]]
    factory: Callable[[str], Callable[..., nn.Module]]
    weights: Callable[[str, str], NamedWeights]  # (architecture, weights name); ValueError for an unknown name
    # the module defining its architectures where it is the workbench's own code: it counts in the build key
    source: str | None = None


def _torchvision_names() -> list[str]:
    import torchvision

    return torchvision.models.list_models()


def _torchvision_factory(name: str) -> Callable[..., nn.Module]:
    import torchvision

    return lambda **kwargs: torchvision.models.get_model(name, **kwargs)


def _torchvision_weights(arch: str, name: str) -> NamedWeights:
    """A member of the architecture's Weights enum (short 'IMAGENET1K_V1' or qualified), read from the local
    torch cache, which is where torchvision would download it to."""
    import torch
    import torchvision

    try:
        enum = torchvision.models.get_model_weights(arch)
    except (ValueError, KeyError):
        raise ValueError(f"torchvision has no weights for '{arch}'") from None
    short = name.split(".", 1)[1] if name.startswith(enum.__name__ + ".") else name
    try:
        weights = enum[short]
    except KeyError:
        choices = [f"{enum.__name__}.{w.name}" for w in enum]
        raise ValueError(f"'{name}' is not one of {choices} or 'random'") from None
    cached = Path(torch.hub.get_dir()) / "checkpoints" / weights.url.rsplit("/", 1)[-1]
    categories = weights.meta.get("categories")
    return NamedWeights(weights, cached, f"{weights} is not in the local torch cache ({cached}); this tool never "
                        "downloads: copy the file there, give it as a checkpoint, or use weights: random",
                        list(categories) if categories else None)


def _pretrained_weights(arch: str, name: str) -> NamedWeights:
    if arch not in pretrained.PRETRAINED:
        raise ValueError(pretrained.PRETRAINED.unknown(arch))
    packaged = pretrained.PRETRAINED[arch].named(name)
    return NamedWeights(packaged.name, packaged.installed_file(), packaged.not_installed(),
                        list(load_object(packaged.categories)()), packaged.mean, packaged.std)


def _torchvision_detection_names() -> list[str]:
    from .detection_wrappers import torchvision_detection_names

    return torchvision_detection_names()


def _torchvision_detector(name: str) -> Callable[..., nn.Module]:
    from .detection_wrappers import torchvision_detector

    return torchvision_detector(name)


def _demo_models() -> dict[str, Callable[..., nn.Module]]:
    from .shapes import MODELS

    return MODELS


def _no_named_weights(arch: str, name: str) -> NamedWeights:
    raise ValueError(f"'{arch}' has no named weights: `python -m converter.demo` trains it into a checkpoint")


MODEL_REGISTRIES = {
    "torchvision": ModelRegistry(_torchvision_names, _torchvision_factory, _torchvision_weights),
    "pretrained": ModelRegistry(lambda: list(pretrained.PRETRAINED), lambda name: partial(pretrained.get_model, name),
                                _pretrained_weights),
    # torchvision's detectors, their outputs padded to fixed-shape boxes, scores and labels
    "torchvision-detection": ModelRegistry(_torchvision_detection_names, _torchvision_detector, _torchvision_weights),
    # the demo's shapes detector and segmenter (converter.core.shapes)
    "demo": ModelRegistry(lambda: list(_demo_models()), lambda name: _demo_models()[name], _no_named_weights,
                          source="converter.core.shapes"),
}


def model_registry(arch: str) -> ModelRegistry | None:
    """The registry an `arch` names by its prefix (`torchvision:resnet18`); None for a user's `module:function`."""
    prefix, sep, _ = arch.partition(":")
    return MODEL_REGISTRIES.get(prefix) if sep else None


def named_weights(arch: str, weights: str) -> NamedWeights:
    """The weights `weights` of a registry's architecture; ValueError when the arch is no registry's or the
    registry does not know them."""
    registry = model_registry(arch)
    if registry is None:
        prefixes = " or ".join(f"{prefix}:" for prefix in MODEL_REGISTRIES)
        raise ValueError(f"named weights need a {prefixes} arch; use a checkpoint for other factories")
    return registry.weights(arch.partition(":")[2], weights)


def check_factory_trust(arch: str, zoo_folder: Path, trusted: Iterable[str] = ()) -> None:
    """A factory runs code with the zoo's arguments: it must be one the user vouches for, checked before
    anything is imported. Trusted: a model registry's architecture (torchvision's, the bundled pretrained models'),
    a module in the zoo file's own folder (or below),
    and modules named in the zoo's `trusted_modules`, --trust-module or $PARITY_TRUSTED_MODULES (a package
    name trusts its submodules). The standard library never builds models. ValueError otherwise."""
    if model_registry(arch) is not None:
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
        registries = ", ".join(f"'{prefix}:<name>'" for prefix in MODEL_REGISTRIES)
        raise ValueError(f"'{arch}' is neither {registries} nor 'package.module:function'")
    return module_name, attr


def resolve_factory(arch: str) -> Callable[..., nn.Module]:
    """Return the callable that builds `arch`; ValueError with a helpful message when it does not exist.

    Only the module the user named is imported: nothing in a model file chooses code to run.
    """
    registry = model_registry(arch)
    if registry is not None:
        prefix, _, name = arch.partition(":")
        known = registry.names()
        if name not in known:
            close = difflib.get_close_matches(name, known, n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise ValueError(f"unknown {prefix} architecture '{name}'{hint}")
        return registry.factory(name)
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
