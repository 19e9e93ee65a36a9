"""Natural-looking synthetic images and the one preprocessing implementation, shared by the converter
(BatchNorm calibration, example inputs) and the verifier (the batch every runtime gets)."""
from __future__ import annotations

from pathlib import Path
from typing import Protocol, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFilter


class PreprocessSettings(Protocol):
    """The zoo's `preprocess` section (converter.zoo.Preprocess), as this module reads it."""

    resize: int
    crop: int
    mean: Sequence[float]
    std: Sequence[float]
    channel_order: str
    interpolation: str

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def image_files(folder: Path) -> tuple[list[Path], list[str] | None]:
    """The image files of a folder, sorted: its own, or, when it has none, those of one subfolder per class
    (the ImageFolder layout), with each file's class (its subfolder's name)."""
    def own(path: Path) -> list[Path]:
        return sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())

    paths = own(folder)
    if paths:
        return paths, None
    classes = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    paths = [path for sub in classes for path in own(sub)]
    return paths, [path.parent.name for path in paths]


RESAMPLING = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "nearest": Image.NEAREST}
# Sizes that do not divide evenly by common resize targets, in both orientations.
SYNTHETIC_SIZES = ((300, 217), (640, 480), (333, 500), (256, 256), (401, 299), (224, 371), (517, 389), (288, 288))


def synthetic_images(count: int, seed: int = 0) -> list[Image.Image]:
    """Deterministic natural-looking RGB images: smooth colour gradients, blurred shapes with edges, texture."""
    rng = np.random.default_rng(seed)
    return [_synthetic_image(rng, *SYNTHETIC_SIZES[i % len(SYNTHETIC_SIZES)]) for i in range(count)]


def _synthetic_image(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    corners = rng.uniform(0, 255, size=(4, 3))
    u, v = (x / max(width - 1, 1))[..., None], (y / max(height - 1, 1))[..., None]
    field = (corners[0] * (1 - u) * (1 - v) + corners[1] * u * (1 - v)
             + corners[2] * (1 - u) * v + corners[3] * u * v)
    image = Image.fromarray(field.clip(0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(3, 8))):
        x0, x1 = sorted(rng.uniform(-0.2, 1.2, 2) * width)
        y0, y1 = sorted(rng.uniform(-0.2, 1.2, 2) * height)
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        shape([x0, y0, max(x1, x0 + 2), max(y1, y0 + 2)], fill=colour)
    image = image.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(0.5, 2.5))))
    noise = rng.normal(0, 6, size=(height, width, 3))
    return Image.fromarray((np.asarray(image, np.float32) + noise).clip(0, 255).astype(np.uint8), "RGB")


def preprocess(images: list[Image.Image], settings: PreprocessSettings) -> np.ndarray:
    """Resize the shorter side to `resize`, center-crop `crop`, scale to [0, 1], normalise, order channels;
    NCHW float32. Matches torchvision's Resize(int)/CenterCrop/ToTensor/Normalize on PIL images.
    mean and std are given in the model's channel order."""
    return np.stack([_preprocess_one(image, settings) for image in images]).astype(np.float32)


def preprocess_to(images: list[Image.Image], settings: PreprocessSettings, height: int, width: int) -> np.ndarray:
    """`preprocess` at another input size (a point of a shape sweep): the shorter side resized in proportion to
    the larger of height and width (resize x size / crop), then a centred height x width crop."""
    size = max(height, width)
    resize = max(size, round(settings.resize * size / settings.crop))
    return np.stack([_preprocess_one(image, settings, resize, (height, width)) for image in images]
                    ).astype(np.float32)


def _preprocess_one(image: Image.Image, settings: PreprocessSettings, resize: int | None = None,
                    crop: tuple[int, int] | None = None) -> np.ndarray:
    image = to_rgb(image)
    height, width = crop or (settings.crop, settings.crop)
    image = image.resize(resized_size(*image.size, resize or settings.resize), RESAMPLING[settings.interpolation])
    top, left = center_crop_origin(*image.size, height, width)
    image = image.crop((left, top, left + width, top + height))
    array = np.asarray(image, dtype=np.float32) / 255.0  # HWC, RGB
    if len(settings.mean) == 1:  # a single-channel model: ITU-R 601 luma, as PIL's convert("L")
        array = (array @ np.asarray([0.299, 0.587, 0.114], np.float32))[..., None]
    elif settings.channel_order == "BGR":
        array = array[..., ::-1]
    return normalise_to_chw(array, settings)


def resized_size(width: int, height: int, resize: int) -> tuple[int, int]:
    """(width, height) with the shorter side at `resize` and the longer scaled and truncated, as torchvision's
    Resize(int) computes it."""
    if width <= height:
        return resize, int(resize * height / width)
    return int(resize * width / height), resize


def center_crop_origin(width: int, height: int, crop: int, crop_width: int | None = None) -> tuple[int, int]:
    """(top, left) of a centred crop (crop x crop, or crop high and crop_width wide), rounded as torchvision's
    CenterCrop rounds."""
    return int(round((height - crop) / 2.0)), int(round((width - (crop_width or crop)) / 2.0))


def normalise_to_chw(pixels: np.ndarray, settings: PreprocessSettings) -> np.ndarray:
    """HWC pixels in [0, 1], already in the model's channel order -> normalised, contiguous CHW."""
    array = (pixels - np.asarray(settings.mean, np.float32)) / np.asarray(settings.std, np.float32)
    return np.ascontiguousarray(array.transpose(2, 0, 1))


def read_rgb(path: Path) -> Image.Image:
    """One image file, decoded whole and as RGB (PIL's errors for an unreadable file pass through)."""
    with Image.open(path) as image:
        image.load()
        return to_rgb(image)


def to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, (0, 0, 0, 255))
        return Image.alpha_composite(background, image).convert("RGB")
    return image.convert("RGB")
