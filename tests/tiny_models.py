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
