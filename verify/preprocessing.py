"""Deployment preprocessing parity. The runtimes are compared on one shared input tensor, so a preprocessing
mistake that every deployment shares is invisible to that comparison. Here the zoo's reference transform
(torchvision on PIL images, as in training) is set against each deployment implementation the zoo names;
both go through the reference model, and the logit and top-1 differences they cause are judged."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from converter.core.images import center_crop_origin, normalise_to_chw, resized_size, to_rgb
from converter.core.images import preprocess as pil_numpy_preprocess
from converter.zoo import Deployment, DeploymentTolerance, Preprocess

from .compare import FAIL, PASS

__all__ = ["LIBRARIES", "PreprocessingComparison", "deployment_batch", "judge", "reference_batch", "settings_for"]


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


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def confident_flips(reference_logits: np.ndarray, deployment_logits: np.ndarray, margin: float) -> np.ndarray:
    """Images whose top-1 class changed where the reference was confident: its softmax probability for its
    own top-1 class ahead of the deployment's top-1 class by at least `margin` (the tie-awareness of the
    runtime cells, in probability, since resampling moves logits far more than float arithmetic does)."""
    ref_top1, dep_top1 = reference_logits.argmax(axis=1), deployment_logits.argmax(axis=1)
    probabilities = softmax(reference_logits)
    rows = np.arange(len(ref_top1))
    gap = probabilities[rows, ref_top1] - probabilities[rows, dep_top1]
    return np.flatnonzero((ref_top1 != dep_top1) & (gap >= margin))


def judge(reference_inputs: np.ndarray, deployment_inputs: np.ndarray, reference_logits: np.ndarray,
          deployment_logits: np.ndarray, tolerance: DeploymentTolerance) -> PreprocessingComparison:
    """Pure: a deployment's preprocessing against the reference transform, through the same model. It fails
    on what it changes in the input (the channel shift), and on top-1 flips only where the reference was
    confident: an honest resampling difference flips near-ties on an untrained net by chance."""
    shift = channel_shift(reference_inputs, deployment_inputs)
    samples = len(reference_logits)
    flips = confident_flips(reference_logits, deployment_logits, tolerance.confident_margin)
    agreement = float((deployment_logits.argmax(axis=1) == reference_logits.argmax(axis=1)).mean())
    kept = 1.0 - len(flips) / samples
    failures = []
    if not np.isfinite(deployment_logits).all():
        failures.append("the model's output on these inputs contains NaN or Inf")
    if shift > tolerance.max_channel_shift:
        failures.append(f"an image's channel mean moved by {shift:.3g} > {tolerance.max_channel_shift:g} "
                        "(swapped channels, another mean/std or another crop?)")
    if kept < tolerance.top1:
        failures.append(f"{len(flips)}/{samples} confident top-1 predictions changed: agreement {kept:.3f} "
                        f"< {tolerance.top1:g}")
    max_abs = float(np.abs(deployment_logits.astype(np.float64) - reference_logits).max())
    detail = "; ".join(failures) if failures else (
        f"top-1 agreement {agreement:.2f} ({len(flips)} confident flip(s)), max |logit diff| {max_abs:.3g}, "
        f"channel shift {shift:.3g}")
    return PreprocessingComparison(
        status=FAIL if failures else PASS, detail=detail, channel_shift=shift,
        input_max_abs_diff=float(np.abs(deployment_inputs - reference_inputs).max()),
        max_abs_diff=max_abs, top1_agreement=agreement, confident_flips=len(flips))


@dataclass(frozen=True)
class PreprocessingComparison:
    status: str  # PASS or FAIL
    detail: str
    channel_shift: float = float("nan")
    input_max_abs_diff: float = float("nan")
    max_abs_diff: float = float("nan")
    top1_agreement: float = float("nan")  # every flip, for information
    confident_flips: int = 0  # the flips that count
