"""Generated pictures of simple shapes on textured backgrounds, with their boxes and masks, and the two small models
the demo trains on them: a detector and a segmenter. Their forward passes return plain tensors of fixed shape
(padded detections; per-pixel class scores), so every exporter sees what a deployed model gives."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFilter

SHAPES = ("circle", "square", "triangle")
SIZE = 96  # pixels, square
STRIDE = 4  # the detector's heat map is SIZE / STRIDE a side
DETECTIONS = 20  # the detector's output slots per image, best first; the rest score near 0


@dataclass(frozen=True)
class ShapesImage:
    image: Image.Image
    boxes: np.ndarray  # (objects, 4) x1, y1, x2, y2 in pixels (the shape's own pixels' extent)
    labels: np.ndarray  # (objects,) index into SHAPES
    mask: np.ndarray  # (SIZE, SIZE) uint8: 0 background, 1 + the shape's index


def shapes_image(rng: np.random.Generator, size: int = SIZE) -> ShapesImage:
    """1-4 filled shapes (circles, squares turned by up to 30 degrees, triangles) of 14-34 px in random colours
    over a gradient with blurred blobs and noise; shapes overlap little, and never hide each other."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / (size - 1)
    corners = rng.uniform(30, 225, size=(4, 3))
    u, v = x[..., None], y[..., None]
    field = corners[0] * (1 - u) * (1 - v) + corners[1] * u * (1 - v) + corners[2] * (1 - u) * v + corners[3] * u * v
    background = Image.fromarray(field.clip(0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(background)
    for _ in range(int(rng.integers(2, 6))):  # clutter: soft blobs the models must learn to ignore
        cx, cy, r = rng.uniform(0, size, 2).tolist() + [float(rng.uniform(4, 14))]
        draw.ellipse([cx - r, cy - r * 0.5, cx + r, cy + r * 0.5], fill=tuple(int(c) for c in rng.uniform(0, 255, 3)))
    background = background.filter(ImageFilter.GaussianBlur(radius=2.5))
    mask = Image.new("L", (size, size), 0)
    boxes, labels = [], []
    for _ in range(int(rng.integers(1, 5))):
        label, extent = int(rng.integers(0, len(SHAPES))), float(rng.uniform(14, 34))
        cx, cy = rng.uniform(extent / 2 + 1, size - extent / 2 - 1, 2)
        outline = _outline(SHAPES[label], cx, cy, extent, float(rng.uniform(-math.pi / 6, math.pi / 6)))
        alone = Image.new("L", (size, size), 0)
        ImageDraw.Draw(alone).polygon(outline, fill=1) if outline else ImageDraw.Draw(alone).ellipse(
            [cx - extent / 2, cy - extent / 2, cx + extent / 2, cy + extent / 2], fill=1)
        pixels = np.asarray(alone, bool)
        taken = np.asarray(mask) > 0
        if (pixels & taken).sum() > 0.05 * pixels.sum():
            continue  # would hide or be hidden by a shape already drawn
        colour = tuple(int(c) for c in rng.uniform(0, 255, 3))
        background.paste(Image.new("RGB", (size, size), colour), mask=Image.fromarray(pixels.astype(np.uint8) * 255))
        mask = Image.fromarray(np.where(pixels & ~taken, label + 1, np.asarray(mask)).astype(np.uint8))
        rows, cols = np.nonzero(pixels)
        boxes.append([cols.min(), rows.min(), cols.max() + 1, rows.max() + 1])
        labels.append(label)
    noise = rng.normal(0, rng.uniform(3, 10), size=(size, size, 3))
    image = Image.fromarray((np.asarray(background, np.float32) + noise).clip(0, 255).astype(np.uint8), "RGB")
    return ShapesImage(image, np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(labels, np.int64),
                       np.asarray(mask, np.uint8))


def _outline(shape: str, cx: float, cy: float, extent: float, angle: float) -> list[tuple[float, float]] | None:
    if shape == "circle":
        return None
    corners = 4 if shape == "square" else 3
    radius = extent / 2 if shape == "triangle" else extent / (2 * math.sqrt(2))
    start = angle + (math.pi / 4 if shape == "square" else -math.pi / 2)
    return [(cx + radius * math.cos(start + 2 * math.pi * i / corners), cy + radius * math.sin(start + 2 * math.pi * i / corners))
            for i in range(corners)]


def _block(inputs: int, outputs: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(inputs, outputs, 3, stride, 1, bias=False), nn.BatchNorm2d(outputs), nn.ReLU())


class _Backbone(nn.Module):
    """Features at stride 4 that see about 40 px: a stride-8 branch upsampled into them. Input sides are multiples
    of 8."""

    def __init__(self, width: int = 32):
        super().__init__()
        self.stem = nn.Sequential(_block(3, 16, 2), _block(16, width, 2), _block(width, width))
        self.deep = nn.Sequential(_block(width, 48, 2), _block(48, 48))
        self.lateral = nn.Conv2d(48, width, 1)
        self.fuse = _block(width, width)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        shallow = self.stem(image)
        # by a scale, not to a size: a Resize to sizes computed from a shape defeats x2paddle's ONNX front end
        deep = F.interpolate(self.lateral(self.deep(shallow)), scale_factor=2.0, mode="nearest")
        return self.fuse(shallow + deep)


class ShapesDetector(nn.Module):
    """A small CenterNet: per class a heat map of object centres, and per pixel the box's size and the centre's
    sub-pixel offset. forward decodes in the graph (3x3 max-pool peaks, top-k), so the output has a fixed shape:
    boxes (batch, DETECTIONS, 4) in input pixels, scores (batch, DETECTIONS), labels (batch, DETECTIONS)."""

    def __init__(self, classes: int = len(SHAPES), detections: int = DETECTIONS):
        super().__init__()
        self.detections = detections
        self.backbone = _Backbone()
        self.heat = nn.Conv2d(32, classes, 1)
        self.box = nn.Conv2d(32, 4, 1)  # width, height (in heat-map cells), offset x, offset y
        nn.init.constant_(self.heat.bias, -2.2)  # CenterNet's prior: every cell starts at ~0.1

    def heads(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.backbone(image)
        return self.heat(features), self.box(features)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return decode_centres(*self.heads(image), self.detections)


def decode_centres(heat: torch.Tensor, box: torch.Tensor, detections: int, stride: int = STRIDE
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """CenterNet's decoding in the graph: heat-map logits (batch, classes, h, w) and box maps (batch, 4, h, w:
    width and height in cells, centre offset x and y) -> the `detections` best peaks' boxes (batch, detections, 4)
    in input pixels, scores and class indices."""
    heat = torch.sigmoid(heat)
    batch, _, height, width = heat.shape
    peaks = heat * (F.max_pool2d(heat, 3, stride=1, padding=1) == heat).to(heat.dtype)
    best, labels = peaks.max(dim=1)  # per cell, its best class's peak
    # each cell's box in input pixels, then the top cells' taken: no integer division in the graph (x2paddle
    # mistypes it, and float16 rounds it)
    columns = torch.arange(width, dtype=heat.dtype, device=heat.device).reshape(1, 1, width)
    rows = torch.arange(height, dtype=heat.dtype, device=heat.device).reshape(1, height, 1)
    cx, cy = (columns + box[:, 2]) * stride, (rows + box[:, 3]) * stride
    half_w, half_h = box[:, 0].clamp(min=0) * (stride / 2), box[:, 1].clamp(min=0) * (stride / 2)
    corners = torch.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], dim=1).reshape(batch, 4, -1)
    scores, cell = best.reshape(batch, -1).topk(detections, dim=1)
    # rows of the flattened batch (Gather): x2paddle's ONNX front end has no GatherElements (torch.gather)
    rows_of = (cell + torch.arange(batch, device=cell.device).unsqueeze(1) * (height * width)).reshape(-1)
    labels = torch.index_select(labels.reshape(-1), 0, rows_of).reshape(batch, detections)
    boxes = torch.index_select(corners.transpose(1, 2).reshape(-1, 4), 0, rows_of).reshape(batch, detections, 4)
    return boxes, scores, labels


class ShapesSegmenter(nn.Module):
    """A small encoder-decoder: per-pixel scores for background and each shape, (batch, 1 + shapes, H, W), decoded
    at half the input's size and resized to it."""

    def __init__(self, classes: int = len(SHAPES)):
        super().__init__()
        self.backbone = _Backbone()
        self.skip = _block(3, 16, 2)
        self.head = nn.Sequential(_block(32 + 16, 32), nn.Conv2d(32, classes + 1, 1))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        skip = self.skip(image)
        features = F.interpolate(self.backbone(image), scale_factor=2.0, mode="bilinear", align_corners=False)
        scores = self.head(torch.cat([features, skip], dim=1))
        return F.interpolate(scores, scale_factor=2.0, mode="bilinear", align_corners=False)


def shapes_detector(**kwargs) -> ShapesDetector:
    return ShapesDetector(**kwargs)


def shapes_segmenter(**kwargs) -> ShapesSegmenter:
    return ShapesSegmenter(**kwargs)


MODELS = {"shapes_detector": shapes_detector, "shapes_segmenter": shapes_segmenter}
