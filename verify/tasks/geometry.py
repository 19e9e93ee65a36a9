"""Where a labelled image's pixels land in the model's input: the same resize of the shorter side and centred crop
as the preprocessing (converter.core.images.preprocess), for boxes and masks drawn on the original image."""
from __future__ import annotations

import numpy as np
from PIL import Image

from converter.core.images import center_crop_origin, resized_size


def input_geometry(width: int, height: int, preprocess) -> tuple[float, float, int, int, tuple[int, int]]:
    """(x scale, y scale, left, top, resized (width, height)) of an image of this size under `preprocess`."""
    resized = resized_size(width, height, preprocess.resize)
    top, left = center_crop_origin(*resized, preprocess.crop)
    return resized[0] / width, resized[1] / height, left, top, resized


def boxes_to_input(boxes: np.ndarray, width: int, height: int, preprocess) -> np.ndarray:
    """x1, y1, x2, y2 boxes on the original image, in the model's input pixels; clipped to the crop (a box cropped
    away entirely keeps no area)."""
    sx, sy, left, top, _ = input_geometry(width, height, preprocess)
    moved = boxes.astype(np.float64) * [sx, sy, sx, sy] - [left, top, left, top]
    return np.clip(moved, 0, preprocess.crop)


def mask_to_input(mask: np.ndarray, preprocess) -> np.ndarray:
    """A class-index mask (height, width) resized (nearest) and cropped as the image is."""
    height, width = mask.shape
    _, _, left, top, resized = input_geometry(width, height, preprocess)
    image = Image.fromarray(mask).resize(resized, Image.Resampling.NEAREST)
    return np.asarray(image.crop((left, top, left + preprocess.crop, top + preprocess.crop)))
