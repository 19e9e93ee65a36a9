"""The self-test's models, small enough to convert and verify in seconds: an image classifier with every kind of
layer the injected faults touch (convolutions with BatchNorm, a bilinear resize, dropout, a biased classifier), a
text model of any length with an embedding output, and a detector that also segments."""
from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn as nn
import torch.nn.functional as F

from converter.core.shapes import decode_centres

INPUT_SIZE = 32


def _conv_bn_relu(cin: int, cout: int, stride: int, eps: float) -> nn.Sequential:
    return nn.Sequential(OrderedDict(conv=nn.Conv2d(cin, cout, 3, stride=stride, padding=1),
                                     bn=nn.BatchNorm2d(cout, eps=eps), relu=nn.ReLU()))


class SelftestNet(nn.Module):
    def __init__(self, num_classes: int = 10, width: int = 8, bn_eps: float = 1e-5):
        super().__init__()
        self.stem = _conv_bn_relu(3, width, 1, bn_eps)  # 32x32
        self.down = _conv_bn_relu(width, width * 2, 2, bn_eps)  # 16x16
        # an ONNX Resize, 16x16 -> 32x32. By scale, not size: a size exports as `sizes` built from the dynamic
        # batch (Shape, Slice, Concat), which TVM 0.27's Relax ONNX frontend cannot import.
        self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
        self.mid = _conv_bn_relu(width * 2, width * 2, 2, bn_eps)  # 16x16
        self.head = _conv_bn_relu(width * 2, width * 4, 2, bn_eps)  # 8x8
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.dropout = nn.Dropout(0.2)
        self.classifier = nn.Linear(width * 4, num_classes)

    def forward(self, x):
        x = self.head(self.mid(self.up(self.down(self.stem(x)))))
        return self.classifier(self.dropout(self.flatten(self.pool(x))))


def selftest_net(num_classes: int = 10, bn_eps: float = 1e-5) -> nn.Module:
    """bn_eps: TensorFlow/Keras's BatchNorm epsilon is 1e-3, PyTorch's 1e-5 (a fault the self-test injects)."""
    return SelftestNet(num_classes, bn_eps=bn_eps)


class SelftestTextNet(nn.Module):
    """The self-test's second model: token ids and an attention mask in (any length), an embedding and class logits
    out. Its masked mean makes the answer depend on the mask wherever a sample is padded."""

    def __init__(self, vocab: int = 64, dim: int = 16, num_classes: int = 5):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.mix = nn.Conv1d(dim, dim, 3, padding=1)  # each token sees its neighbours
        self.project = nn.Linear(dim, dim)
        self.classifier = nn.Linear(dim, num_classes)

    def forward(self, input_ids, attention_mask):
        x = self.embed(input_ids).transpose(1, 2)
        x = self.mix(x).relu().transpose(1, 2)
        weights = attention_mask.unsqueeze(-1).to(x.dtype)
        embedding = self.project((x * weights).sum(1) / weights.sum(1).clamp(min=1.0))
        return embedding, self.classifier(embedding.relu())


def selftest_text_net(num_classes: int = 5) -> nn.Module:
    return SelftestTextNet(num_classes=num_classes)


class SelftestDetector(nn.Module):
    """The self-test's detector and segmenter in one, made by hand (every weight a buffer, which `weights: random`
    leaves as it is): the reddest and the greenest blobs as boxes (classes 0 and 1), 24 detections per image, and
    per pixel whether it is red, green or neither."""

    def __init__(self, detections: int = 24):
        super().__init__()
        self.detections = detections
        # a blob detector: the difference of two Gaussian blurs of red minus green (and green minus red), zero on
        # flat colour, so no plateau of equal scores
        grid = torch.arange(11, dtype=torch.float32) - 5
        blurs = [torch.exp(-(grid[:, None] ** 2 + grid[None, :] ** 2) / (2 * sigma ** 2)) for sigma in (1.2, 3.0)]
        blob = 4 * (blurs[0] / blurs[0].sum() - blurs[1] / blurs[1].sum())
        heat = torch.zeros(2, 3, 11, 11)
        heat[0, 0], heat[0, 1], heat[1, 1], heat[1, 0] = blob, -blob, blob, -blob
        self.register_buffer("heat_weight", heat)
        self.register_buffer("heat_bias", torch.tensor([-2.5, -2.5]))
        # box maps from the blob's brightness: brighter blobs get wider boxes (width, height in cells; offsets)
        box = torch.zeros(4, 3, 11, 11)
        box[0] = box[1] = blurs[1] / blurs[1].sum() / 3
        self.register_buffer("box_weight", box)
        self.register_buffer("box_bias", torch.tensor([3.0, 3.0, 0.5, 0.5]))
        self.register_buffer("mask_weight", torch.tensor([[-1.0, -1.0, 0.0], [2.0, -2.0, 0.0],
                                                          [-2.0, 2.0, 0.0]]).reshape(3, 3, 1, 1))
        self.register_buffer("mask_bias", torch.tensor([0.5, -0.5, -0.5]))

    def forward(self, x):
        heat = F.conv2d(x, self.heat_weight, self.heat_bias, stride=2, padding=5)
        box = F.conv2d(x, self.box_weight, self.box_bias, stride=2, padding=5)
        boxes, scores, labels = decode_centres(heat, box, self.detections, stride=2)
        return boxes, scores, labels, F.conv2d(x, self.mask_weight, self.mask_bias)


def selftest_detector() -> nn.Module:
    return SelftestDetector()
