"""A classifier's scores: top-k, accuracy against labels, agreement under reduced precision and the deployment
preprocessing verdict, all read from class scores (logits). Pure functions on arrays."""
from __future__ import annotations

import numpy as np

from converter.zoo import DeploymentTolerance

from ...judge.accuracy import Agreement, Score
from ...judge.compare import FAIL, PASS, per_sample_cosine
from ...judge.preprocessing import PreprocessingComparison, channel_shift

TOP_K = 5
CONFIDENT_MARGIN = 0.2  # a top-1 flip counts where the reference preferred its class by this much probability


def top_k(logits: np.ndarray, k: int = TOP_K) -> np.ndarray:
    """Per sample, the indices of the k highest logits, highest first (ties: the lower index first)."""
    k = min(k, logits.shape[1])
    return np.argsort(-logits, axis=1, kind="stable")[:, :k]


def accuracy(predictions: np.ndarray, labels: list[int] | np.ndarray) -> Score:
    """Top-1 and top-5 accuracy of top-k `predictions` (samples, k) against the labels, and per class."""
    labels = np.asarray(labels)
    right = predictions[:, 0] == labels
    within = (predictions == labels[:, None]).any(axis=1)
    per_class = tuple((int(c), int(right[labels == c].sum()), int((labels == c).sum())) for c in np.unique(labels))
    return Score(len(labels), {"top1": float(right.mean()), "top5": float(within.mean())}, per_class)


def agreement(reference: np.ndarray, candidate: np.ndarray, margin: float = CONFIDENT_MARGIN) -> Agreement:
    """Softmax ignores a constant added to every logit of a sample, and quantisation often adds one: the
    cosine is taken on centred logits. A top-1 flip counts only where the reference was confident, its
    probability for its own class ahead of the candidate's class by `margin` (a randomly initialised net's
    near-ties flip under any rounding, and say nothing about the conversion)."""
    ref, cand = reference.astype(np.float64), candidate.astype(np.float64)
    cosine = per_sample_cosine(ref - ref.mean(axis=1, keepdims=True), cand - cand.mean(axis=1, keepdims=True))
    flips = len(confident_flips(ref, cand, margin))
    return Agreement(1.0 - flips / len(ref), float(cosine.min()), flips)


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


def judge_deployment(reference_inputs: np.ndarray, deployment_inputs: np.ndarray, reference_logits: np.ndarray,
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
