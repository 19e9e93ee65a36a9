"""Deployment preprocessing parity. The runtimes are compared on one shared input tensor, so a preprocessing
mistake that every deployment shares is invisible to that comparison. Here the zoo's reference transform
(torchvision on PIL images, as in training) is set against each deployment implementation the zoo names;
both go through the reference model, and the model's task judges the differences they cause (a classifier:
verify.tasks.classification.scores.judge_deployment)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from converter.core.images import center_crop_origin, normalise_to_chw, resized_size, to_rgb
from converter.core.images import preprocess as pil_numpy_preprocess
from converter.zoo import Deployment, Preprocess

__all__ = ["LIBRARIES", "PreprocessingComparison", "channel_shift", "deployment_batch", "reference_batch",
           "settings_for"]


def reference_batch(images: list[Image.Image], settings: Preprocess) -> np.ndarray:
    """torchvision's Resize(int) / CenterCrop / ToTensor / Normalize on PIL images: the training transform."""
    import torch
    from torchvision import transforms
    from torchvision.transforms import InterpolationMode

    modes = {"bilinear": InterpolationMode.BILINEAR, "bicubic": InterpolationMode.BICUBIC,
             "nearest": InterpolationMode.NEAREST}
    steps = [transforms.Resize(settings.resize, interpolation=modes[settings.interpolation], antialias=True),
             transforms.CenterCrop(settings.crop)]
    if len(settings.mean) == 1:
        steps.append(transforms.Grayscale(1))
    steps.append(transforms.ToTensor())
    if settings.channel_order == "BGR" and len(settings.mean) == 3:
        steps.append(transforms.Lambda(lambda t: t.flip(0)))
    steps.append(transforms.Normalize(settings.mean, settings.std))
    transform = transforms.Compose(steps)
    return torch.stack([transform(to_rgb(image)) for image in images]).numpy().astype(np.float32)


def opencv_batch(images: list[Image.Image], settings: Preprocess) -> np.ndarray:
    """What a C++ or Paddle serving stack does: cv2.imread (BGR uint8), cv2.resize of the shorter side,
    center crop, BGR->RGB unless the model takes BGR, scale, normalise, HWC->CHW."""
    import cv2

    modes = {"bilinear": cv2.INTER_LINEAR, "bicubic": cv2.INTER_CUBIC, "nearest": cv2.INTER_NEAREST}
    out = []
    for image in images:
        bgr = cv2.cvtColor(np.asarray(to_rgb(image)), cv2.COLOR_RGB2BGR)  # as cv2.imread returns it
        height, width = bgr.shape[:2]
        resized = cv2.resize(bgr, resized_size(width, height, settings.resize),
                             interpolation=modes[settings.interpolation])
        top, left = center_crop_origin(resized.shape[1], resized.shape[0], settings.crop)
        crop = resized[top:top + settings.crop, left:left + settings.crop]
        if len(settings.mean) == 1:
            pixels = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)[..., None].astype(np.float32) / 255.0
        else:
            ordered = crop if settings.channel_order == "BGR" else cv2.cvtColor(crop, cv2.COLOR_BGR2RGB)
            pixels = ordered.astype(np.float32) / 255.0
        out.append(normalise_to_chw(pixels, settings))
    return np.stack(out).astype(np.float32)


LIBRARIES = {"pil-numpy": pil_numpy_preprocess, "opencv": opencv_batch}


def settings_for(deployment: Deployment, model: Preprocess) -> Preprocess:
    """The model's preprocessing with what this deployment does differently (its own overrides)."""
    overrides = deployment.model_dump(include={"channel_order", "mean", "std", "interpolation", "resize"},
                                      exclude_none=True)
    return model.model_copy(update=overrides)


def deployment_batch(images: list[Image.Image], deployment: Deployment, model: Preprocess) -> np.ndarray:
    return LIBRARIES[deployment.library](images, settings_for(deployment, model))


def channel_shift(reference: np.ndarray, deployment: np.ndarray) -> float:
    """The largest change of any image's per-channel mean, in units of the normalised input (NCHW)."""
    return float(np.abs(deployment.mean(axis=(2, 3)) - reference.mean(axis=(2, 3))).max())


@dataclass(frozen=True)
class PreprocessingComparison:
    status: str  # PASS or FAIL
    detail: str
    channel_shift: float = float("nan")
    input_max_abs_diff: float = float("nan")
    max_abs_diff: float = float("nan")
    top1_agreement: float = float("nan")  # every flip, for information
    confident_flips: int = 0  # the flips that count
