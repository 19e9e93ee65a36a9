"""The demo's detector and segmenter: trained on generated pictures of shapes (converter.core.shapes), each in well
under a minute on 2 CPU cores, and their labelled validation images written the way users keep theirs: the
pictures in a folder, the boxes as COCO JSON, the masks as one PNG per picture (pixel = class, 0 background)."""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
from PIL import Image

from .core.files import atomic_folder, atomic_write
from .core.shapes import SHAPES, SIZE, STRIDE, ShapesImage, shapes_image

MEAN, STD = 0.5, 0.25  # the preprocessing both are trained with: (pixel / 255 - 0.5) / 0.25
TRAIN_IMAGES = 1536
VALIDATION_IMAGES = 16
CALIBRATION_IMAGES = 16
DETECTOR_STEPS = 600
SEGMENTER_STEPS = 400
BATCH = 32


def image_set(count: int, seed: int) -> list[ShapesImage]:
    rng = np.random.default_rng(seed)
    return [shapes_image(rng) for _ in range(count)]


def as_tensor(images: list[ShapesImage]):
    import torch

    pixels = np.stack([np.asarray(item.image, np.float32) for item in images]).transpose(0, 3, 1, 2)
    return torch.from_numpy((pixels / 255.0 - MEAN) / STD)


def heat_targets(images: list[ShapesImage]):
    """CenterNet's targets: a Gaussian peak per object centre in its class's heat map; at each centre cell the
    box's size in cells and the centre's offset within the cell."""
    import torch

    cells = SIZE // STRIDE
    heat = np.zeros((len(images), len(SHAPES), cells, cells), np.float32)
    box = np.zeros((len(images), 4, cells, cells), np.float32)
    centre = np.zeros((len(images), cells, cells), np.float32)
    y, x = np.mgrid[0:cells, 0:cells].astype(np.float32)
    for index, item in enumerate(images):
        for (x1, y1, x2, y2), label in zip(item.boxes / STRIDE, item.labels):
            cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
            column, row = min(int(cx), cells - 1), min(int(cy), cells - 1)
            sigma = max(0.6, min(x2 - x1, y2 - y1) / 6)
            peak = np.exp(-((x - column) ** 2 + (y - row) ** 2) / (2 * sigma ** 2))
            heat[index, label] = np.maximum(heat[index, label], peak)
            box[index, :, row, column] = (x2 - x1, y2 - y1, cx - column, cy - row)
            centre[index, row, column] = 1.0
    return torch.from_numpy(heat), torch.from_numpy(box), torch.from_numpy(centre)


def train_detector(seed: int = 27, steps: int = DETECTOR_STEPS, count: int = TRAIN_IMAGES):
    """The ShapesDetector, trained with CenterNet's focal loss on the heat maps and L1 on sizes and offsets."""
    import torch

    from .core.shapes import ShapesDetector

    torch.manual_seed(seed)
    images = image_set(count, seed)
    pixels = as_tensor(images)
    heat_target, box_target, centres = heat_targets(images)
    model = ShapesDetector()

    def loss_of(batch):
        heat, box = model.heads(pixels[batch])
        heat = heat.sigmoid().clamp(1e-4, 1 - 1e-4)
        target, positive = heat_target[batch], heat_target[batch] == 1.0
        focal = torch.where(positive, (1 - heat) ** 2 * heat.log(),
                            (1 - target) ** 4 * heat ** 2 * (1 - heat).log())
        objects = centres[batch].sum().clamp(min=1)
        where = centres[batch].unsqueeze(1)
        regression = ((box - box_target[batch]).abs() * where).sum() / objects
        return -focal.sum() / objects + 0.1 * regression
    return _fit(model, loss_of, len(images), steps, seed)


def train_segmenter(seed: int = 28, steps: int = SEGMENTER_STEPS, count: int = TRAIN_IMAGES):
    """The ShapesSegmenter, trained with per-pixel cross-entropy."""
    import torch

    from .core.shapes import ShapesSegmenter

    torch.manual_seed(seed)
    images = image_set(count, seed)
    pixels = as_tensor(images)
    masks = torch.from_numpy(np.stack([item.mask for item in images]).astype(np.int64))
    model = ShapesSegmenter()
    return _fit(model, lambda batch: torch.nn.functional.cross_entropy(model(pixels[batch]), masks[batch]),
                len(images), steps, seed)


def _fit(model, loss_of, samples: int, steps: int, seed: int):
    """Adam with a one-cycle schedule over `steps` batches of BATCH samples drawn with `seed`; the model in eval
    mode."""
    import torch

    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=3e-3, total_steps=steps)
    order = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(steps):
        loss = loss_of(torch.randint(0, samples, (BATCH,), generator=order))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    return model.eval()


def save_state(model, path: Path) -> Path:
    import torch

    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return atomic_write(path, buffer.getvalue())


def write_labelled(folder: Path, images: list[ShapesImage]) -> Path:
    """`folder/images/*.png`, `folder/boxes.json` (COCO: bbox as x, y, width, height; category ids from 1 in
    SHAPES' order) and `folder/masks/*.png` (the picture's name; pixel = 0 background, 1 + the shape's index)."""
    with atomic_folder(folder) as staging:
        (staging / "images").mkdir()
        (staging / "masks").mkdir()
        coco = {"images": [], "annotations": [],
                "categories": [{"id": index + 1, "name": name} for index, name in enumerate(SHAPES)]}
        for index, item in enumerate(images):
            name = f"shapes_{index:03d}.png"
            item.image.save(staging / "images" / name)
            Image.fromarray(item.mask).save(staging / "masks" / name)
            coco["images"].append({"id": index + 1, "file_name": name, "width": SIZE, "height": SIZE})
            for (x1, y1, x2, y2), label in zip(item.boxes.tolist(), item.labels.tolist()):
                coco["annotations"].append({"id": len(coco["annotations"]) + 1, "image_id": index + 1,
                                            "category_id": label + 1, "bbox": [x1, y1, x2 - x1, y2 - y1],
                                            "area": (x2 - x1) * (y2 - y1), "iscrowd": 0})
        (staging / "boxes.json").write_text(json.dumps(coco, indent=1))
    return folder


def write_calibration(folder: Path, seed: int = 27) -> Path:
    """Training pictures for int8 calibration (never the validation ones)."""
    with atomic_folder(folder) as staging:
        for index, item in enumerate(image_set(CALIBRATION_IMAGES, seed)):
            item.image.save(staging / f"shapes_{index:03d}.png")
    return folder
