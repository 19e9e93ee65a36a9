"""Tiny models the tests build, convert and verify in seconds. Importable as zoo factories."""
from __future__ import annotations

import torch
import torch.nn as nn


class TinyCNN(nn.Module):
    def __init__(self, num_classes: int = 10, width: int = 8):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, width * 2, 3, stride=2, padding=1), nn.BatchNorm2d(width * 2), nn.ReLU(),
            nn.Conv2d(width * 2, width * 2, 3, padding=1), nn.BatchNorm2d(width * 2), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.classifier = nn.Linear(width * 2, num_classes)

    def forward(self, x):
        return self.classifier(self.features(x))


def tiny_cnn(num_classes: int = 10, width: int = 8) -> nn.Module:
    return TinyCNN(num_classes, width)


class Flipping(TinyCNN):
    """ONNX exports torch.flip; x2paddle 1.6 has no mapping for aten::flip."""

    def forward(self, x):
        return self.classifier(self.features(torch.flip(x, dims=[3])))


def flipping_cnn(num_classes: int = 10) -> nn.Module:
    return Flipping(num_classes)


class CallCounting(TinyCNN):
    """Its output depends on Python state that a trace freezes: torch.jit.trace's check rejects it."""

    def __init__(self, num_classes: int = 10):
        super().__init__(num_classes)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return self.classifier(self.features(x)) * float(self.calls)


def call_counting_cnn(num_classes: int = 10) -> nn.Module:
    return CallCounting(num_classes)


def not_a_module(num_classes: int = 10):
    return {"num_classes": num_classes}


class BatchDependent(TinyCNN):
    """Python control flow on the batch size: deterministic in eager, but a trace freezes one branch
    (torch.jit.trace's own check catches it; the ONNX export silently keeps the wrong branch)."""

    def forward(self, x):
        logits = self.classifier(self.features(x))
        return logits * 2.0 if x.shape[0] > 1 else logits


def batch_dependent_cnn(num_classes: int = 10) -> nn.Module:
    return BatchDependent(num_classes)


def aborting_factory(num_classes: int = 10) -> nn.Module:
    """A user's factory that crashes the process building it (a native extension gone wrong)."""
    import os

    os.abort()


class TwoHeads(TinyCNN):
    """A classifier that also returns its embedding (as retrieval and re-identification models do)."""

    def forward(self, x):
        embedding = self.features(x)
        return self.classifier(embedding), embedding * 2.0


def two_heads_cnn(num_classes: int = 10) -> nn.Module:
    return TwoHeads(num_classes)


class ViewByBatch(TinyCNN):
    """Flattens with view(batch, -1) before its classifier, as EfficientNet-Lite0 does: x2paddle's tracer bakes
    the traced batch into that reshape, so its model fails at any other batch size."""

    def forward(self, x):
        features = self.features[:-2](x).mean(dim=(2, 3), keepdim=True)
        return self.classifier(features.view(x.shape[0], -1))


def view_by_batch_cnn(num_classes: int = 10) -> nn.Module:
    return ViewByBatch(num_classes)


class PrecisionTraps(TinyCNN):
    """A classifier that int8 and fp16 both break at a few nodes, and float32 there repairs (the traps are buffers
    and constants: the converter's realistic initialisation of the weights keeps them). int8: one feature comes out
    10000x larger than the others, so one per-tensor scale for that activation rounds the others away; dividing by
    `gain` brings it back down. fp16: the constant 1e5 is past float16's largest value and the converter clamps it
    to 65504, which moves a ReLU's threshold."""

    def __init__(self, num_classes: int = 10, width: int = 8):
        super().__init__(num_classes, width)
        self.expand = nn.Linear(width * 2, 32)
        self.mix = nn.Linear(32, num_classes)
        gain, offset = torch.ones(32), torch.zeros(32)
        gain[0] = offset[0] = 1e4  # always on: the ReLU never hides it from the calibration
        self.register_buffer("gain", gain)
        self.register_buffer("offset", offset)

    def forward(self, x):
        wide = torch.relu(self.expand(self.features(x)) * self.gain + self.offset)
        logits = self.mix(wide / self.gain)
        return logits + torch.relu(logits * 1e5 - 5e4) * 1e-4


def precision_traps(num_classes: int = 10) -> nn.Module:
    return PrecisionTraps(num_classes)
