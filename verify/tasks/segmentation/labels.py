"""A segmenter's labelled images: one PNG mask per image (`annotations:` in the zoo, a folder), its pixels the class
index (0 the first class, 255 unlabelled), read in the model's input pixels."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from ...plan.inputs import ImageSet, InputError
from ..geometry import mask_to_input

IGNORE = 255  # a mask pixel that labels nothing


def mask_paths(folder: Path, images: ImageSet, classes: int | None, model: str) -> list[str]:
    """Per image, its mask's path (`<folder>/<image stem>.png`), each checked: it exists, it has the image's size,
    and its values are class indices (or 255). InputError naming the file, the model and the field."""
    where = f"model '{model}', field annotations"
    if not folder.is_dir():
        raise InputError(f"{folder}: {where}: expected a folder of PNG masks named after the images")
    paths = []
    for position, name in enumerate(images.names):
        path = folder / f"{Path(name).stem}.png"
        try:
            with Image.open(path) as mask:
                size, mode, values = mask.size, mask.mode, np.unique(np.asarray(mask))
        except OSError as exc:
            raise InputError(f"{path}: {where}: no readable mask for image {name} ({exc})") from None
        if mode not in ("L", "P", "I", "I;16"):
            raise InputError(f"{path}: {where}: a {mode} image; a mask is one channel of class indices (mode L or P)")
        if size != images.image(position).size:
            raise InputError(f"{path}: {where}: mask of {size[0]}x{size[1]} for image {name} of "
                             f"{images.image(position).size[0]}x{images.image(position).size[1]}")
        wrong = [int(v) for v in values if v != IGNORE and classes is not None and v >= classes]
        if wrong:
            raise InputError(f"{path}: {where}: values {wrong} are not class indices below {classes} (nor 255)")
        paths.append(str(path))
    return paths


def read_mask(path: str, preprocess) -> np.ndarray:
    """The mask in the model's input pixels (nearest-neighbour resize and crop, as the image's)."""
    with Image.open(path) as mask:
        return mask_to_input(np.asarray(mask), preprocess)
