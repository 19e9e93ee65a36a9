"""python -m converter.demo [--out PATH]: write the demo fine-tuned checkpoint the default zoo uses, its
labelled validation folder, and the photographs the default zoo's ImageNet model is shown.

It has the shape of a checkpoint users actually have: a resnet18 with a 2-class head (ants, bees), saved as
{"epoch", "model_state_dict", "optimizer_state_dict", "loss"}. It has really learned its task: on a generated
two-class image set (dark, segmented "ants" against yellow, striped "bees" on cluttered backgrounds) the head
is trained on the backbone's features, in about 15 s on 2 cores. The validation images it has never seen are
written beside it as `val/ants/*.jpg` and `val/bees/*.jpg` (the ImageFolder layout), so the verifier reports
a real accuracy; a few training images go to `calibration/` for int8 quantisation. `photos/` gets the real
photograph that matplotlib's wheel ships (Grace Hopper), for the trained EfficientNet-Lite0. It also trains a
small detector and a small segmenter on generated pictures of shapes (converter.demo_shapes) and writes their
labelled validation pictures (`shapes/val`: images, boxes.json, masks). Deterministic; existing files are kept
unless --force.
"""
from __future__ import annotations

import argparse
import io
import math
import shutil
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from .core.files import atomic_folder, atomic_write

DEFAULT_PATH = Path("artifacts/demo/checkpoint_14_epoch.pkl")
CLASSES = ("ants", "bees")
VALIDATION_PER_CLASS = 32
TRAIN_PER_CLASS = 96
CALIBRATION_PER_CLASS = 8
PHOTO = "grace_hopper.jpg"  # the only photograph in matplotlib's sample data (the rest are charts, icons and scans)


def insect_image(label: int, rng: np.random.Generator) -> Image.Image:
    """One generated photo-like image of class `label` (0 ants, 1 bees): a cluttered background with blurred
    blobs in both classes' colours, then 1-4 insects. The classes overlap on purpose (dull bees, light ants,
    small insects), so a model can be good at it without being perfect."""
    width, height = int(rng.integers(240, 420)), int(rng.integers(220, 360))
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    corners = rng.uniform(40, 220, size=(4, 3))
    u, v = (x / (width - 1))[..., None], (y / (height - 1))[..., None]
    field = corners[0] * (1 - u) * (1 - v) + corners[1] * u * (1 - v) + corners[2] * (1 - u) * v + corners[3] * u * v
    image = Image.fromarray(field.clip(0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(2, 7))):  # clutter: leaves, now and then a dark or a pale one
        cx, cy, r = rng.uniform(0, width), rng.uniform(0, height), rng.uniform(8, 40)
        kind = rng.random()
        colour = tuple(int(c) for c in (rng.uniform(150, 255, 3) if kind < 0.15 else rng.uniform(20, 90, 3)
                                        if kind < 0.3 else (rng.uniform(30, 110), rng.uniform(90, 200), rng.uniform(20, 90))))
        draw.ellipse([cx - r, cy - r * 0.6, cx + r, cy + r * 0.6], fill=colour)
    scale = min(width, height) / 300
    for _ in range(int(rng.integers(2, 6))):
        cx, cy = rng.uniform(0.15, 0.85) * width, rng.uniform(0.15, 0.85) * height
        angle = rng.uniform(0, math.pi)
        dx, dy = math.cos(angle), math.sin(angle)
        size = rng.uniform(10, 24) * scale
        if label == 0:  # an ant: three dark segments in a line
            shade = rng.uniform(10, 110)
            colour = (int(shade + rng.uniform(0, 40)), int(shade * 0.6), int(shade * 0.4))
            for offset, radius in ((-1.8, 0.7), (0.0, 0.5), (1.8, 1.0)):
                px, py, r = cx + dx * offset * size, cy + dy * offset * size, radius * size
                draw.ellipse([px - r, py - r, px + r, py + r], fill=colour)
        else:  # a bee: a yellow body with dark stripes across it
            yellow = (int(rng.uniform(170, 255)), int(rng.uniform(140, 220)), int(rng.uniform(0, 80)))
            r = 1.6 * size
            draw.ellipse([cx - r, cy - r * 0.65, cx + r, cy + r * 0.65], fill=yellow)
            for stripe in (-0.6, 0.0, 0.6):
                sx = cx + stripe * r
                draw.line([sx, cy - r * 0.6, sx, cy + r * 0.6], fill=(20, 20, 20), width=max(1, int(size * 0.3)))
    image = image.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(0.5, 2.0))))
    noise = rng.normal(0, rng.uniform(4, 14), size=(height, width, 3))
    return Image.fromarray((np.asarray(image, np.float32) + noise).clip(0, 255).astype(np.uint8), "RGB")


def image_set(per_class: int, seed: int) -> tuple[list[Image.Image], list[int]]:
    rng = np.random.default_rng(seed)
    labels = [label for _ in range(per_class) for label in (0, 1)]
    return [insect_image(label, rng) for label in labels], labels


def make_checkpoint(path: Path, seed: int = 14, epochs: int = 300) -> Path:
    """Train the demo model (backbone as initialised, head trained on its pooled features) and save it."""
    import torch

    from .core.images import preprocess
    from .models import instantiate, realistic_init
    from .zoo import Preprocess

    torch.manual_seed(seed)
    model = instantiate("torchvision:resnet18", {"num_classes": len(CLASSES)}, seed=seed)
    realistic_init(model, seed, Preprocess(), batches=2, batch_size=8)
    model.eval()
    images, labels = image_set(TRAIN_PER_CLASS, seed)
    head, model.fc = model.fc, torch.nn.Identity()
    with torch.no_grad():
        features = torch.cat([model(torch.from_numpy(preprocess(images[i:i + 32], Preprocess())))
                              for i in range(0, len(images), 32)])
    model.fc = head
    # standardise the features into the head: a linear layer on them is still a linear layer on the raw ones
    mean, std = features.mean(0), features.std(0) + 1e-6
    targets = torch.tensor(labels)
    optimizer = torch.optim.Adam(head.parameters(), lr=1e-2, weight_decay=1e-2)
    loss = torch.tensor(0.0)
    for _ in range(epochs):
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(head((features - mean) / std), targets)
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        head.weight.div_(std)
        head.bias.sub_((head.weight * mean).sum(1))
    checkpoint = {"epoch": 14, "model_state_dict": model.state_dict(),
                  "optimizer_state_dict": optimizer.state_dict(), "loss": float(loss.detach()),
                  "classes": list(CLASSES)}
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    return atomic_write(path, buffer.getvalue())


def write_validation(folder: Path, seed: int = 1014, per_class: int = VALIDATION_PER_CLASS) -> Path:
    """The labelled validation images, generated with another seed than the training set's."""
    return write_image_folder(folder, *image_set(per_class, seed))


def write_calibration(folder: Path, seed: int = 14, per_class: int = CALIBRATION_PER_CLASS) -> Path:
    """Images for int8 calibration: the first of the training set (never the validation images)."""
    return write_image_folder(folder, *image_set(per_class, seed))


def write_image_folder(folder: Path, images: list[Image.Image], labels: list[int]) -> Path:
    """JPEG files in one subfolder per class."""
    with atomic_folder(folder) as staging:
        for index, (image, label) in enumerate(zip(images, labels)):
            target = staging / CLASSES[label] / f"{CLASSES[label]}_{index // 2:03d}.jpg"
            target.parent.mkdir(exist_ok=True)
            image.save(target, quality=90)
    return folder


def write_photos(folder: Path) -> Path:
    """matplotlib's photograph of Grace Hopper as it ships, and its mirror image: the verifier needs two distinct
    images per model, and matplotlib has no second photograph."""
    from matplotlib.cbook import get_sample_data

    photo = Path(get_sample_data(PHOTO, asfileobj=False))
    with atomic_folder(folder) as staging:
        shutil.copyfile(photo, staging / photo.name)
        with Image.open(photo) as image:
            image.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(staging / f"{photo.stem}_flip.jpg", quality=95)
    return folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m converter.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_PATH,
                        help="the checkpoint; val/, calibration/ and photos/ are written beside it")
    parser.add_argument("--force", action="store_true", help="rewrite existing files")
    parser.add_argument("--no-shapes", action="store_true",
                        help="leave out the shapes detector and segmenter (training them takes about a minute)")
    args = parser.parse_args(argv)
    validation, calibration, photos = (args.out.parent / name for name in ("val", "calibration", "photos"))
    if args.out.exists() and not args.force:
        print(f"demo checkpoint: {args.out} (kept)")
    else:
        print(f"demo checkpoint: {make_checkpoint(args.out)} (written: resnet18 trained on "
              f"{2 * TRAIN_PER_CLASS} generated images of {' and '.join(CLASSES)})")
    if validation.is_dir() and not args.force:
        print(f"demo validation images: {validation} (kept)")
    else:
        print(f"demo validation images: {write_validation(validation)} ({2 * VALIDATION_PER_CLASS} labelled "
              f"images, {VALIDATION_PER_CLASS} per class)")
    if calibration.is_dir() and not args.force:
        print(f"demo calibration images: {calibration} (kept)")
    else:
        print(f"demo calibration images: {write_calibration(calibration)} ({2 * CALIBRATION_PER_CLASS} training "
              "images, for int8 quantisation)")
    if photos.is_dir() and not args.force:
        print(f"demo photographs: {photos} (kept)")
    else:
        print(f"demo photographs: {write_photos(photos)} ({PHOTO} from matplotlib's sample data, and mirrored)")
    if not args.no_shapes:
        write_shapes(args.out.parent, args.force)
    return 0


def write_shapes(folder: Path, force: bool) -> None:
    """The shapes detector and segmenter (trained here), their labelled validation images and calibration images."""
    import time

    from . import demo_shapes as shapes

    for name, train, steps in (("detector", shapes.train_detector, shapes.DETECTOR_STEPS),
                               ("segmenter", shapes.train_segmenter, shapes.SEGMENTER_STEPS)):
        path = folder / f"shapes_{name}.pt"
        if path.exists() and not force:
            print(f"demo shapes {name}: {path} (kept)")
            continue
        start = time.perf_counter()
        shapes.save_state(train(), path)
        print(f"demo shapes {name}: {path} (written: trained {steps} steps on {shapes.TRAIN_IMAGES} generated "
              f"images of {', '.join(shapes.SHAPES)} in {time.perf_counter() - start:.0f} s)")
    labelled, calibration = folder / "shapes" / "val", folder / "shapes" / "calibration"
    if labelled.is_dir() and not force:
        print(f"demo shapes validation images: {labelled} (kept)")
    else:
        shapes.write_labelled(labelled, shapes.image_set(shapes.VALIDATION_IMAGES, seed=1027))
        print(f"demo shapes validation images: {labelled} ({shapes.VALIDATION_IMAGES} images, boxes.json (COCO), "
              "masks/*.png)")
    if calibration.is_dir() and not force:
        print(f"demo shapes calibration images: {calibration} (kept)")
    else:
        print(f"demo shapes calibration images: {shapes.write_calibration(calibration)} "
              f"({shapes.CALIBRATION_IMAGES} training images, for int8 quantisation)")


if __name__ == "__main__":
    sys.exit(main())
