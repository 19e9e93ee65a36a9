"""The images the verifier feeds: a folder of the user's, or the seeded synthetic set."""
from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from converter.core.errors import WorkbenchError
from converter.core.files import atomic_write
from converter.core.images import preprocess, synthetic_images as _synthetic, to_rgb

log = logging.getLogger(__name__)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")

__all__ = ["ImageSet", "InputError", "load_images", "preprocess", "save_inputs", "synthetic_images"]


class InputError(WorkbenchError):
    """No usable images."""


@dataclass
class ImageSet:
    images: list[Image.Image]  # RGB
    names: list[str]
    source: str = ""  # where they came from, for the report


def load_images(folder: Path) -> ImageSet:
    """Every readable image in `folder`, sorted by name, as RGB. Grayscale is replicated to three
    channels; transparency is composited on black. Corrupt files are skipped with a warning."""
    if not folder.is_dir():
        raise InputError(f"{folder}: not a folder")
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not paths:
        raise InputError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)})")
    images, names = [], []
    for path in paths:
        try:
            with Image.open(path) as image:
                image.load()
                images.append(to_rgb(image))
                names.append(path.name)
        except Image.DecompressionBombError as exc:  # PIL refuses images over 2x its pixel limit (~179 Mpx)
            log.warning("skipping %s: too large to decode safely (%s)", path, exc)
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            log.warning("skipping %s: not a readable image (%s)", path, exc)
    if not images:
        raise InputError(f"{folder}: none of the {len(paths)} image files could be read")
    skipped = len(paths) - len(images)
    return ImageSet(images, names, f"{len(images)} images from {folder}" + (f" ({skipped} unreadable skipped)"
                                                                              if skipped else ""))


def synthetic_images(count: int = 8, seed: int = 0) -> ImageSet:
    return ImageSet(_synthetic(count, seed), [f"synthetic-{seed}-{i}.png" for i in range(count)],
                    f"{count} synthetic images (seed {seed})")


def save_inputs(path: Path, batch: np.ndarray, names: list[str]) -> None:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, inputs=batch, names=np.asarray(names))
    atomic_write(path, buffer.getvalue())
