"""Predictions, accuracy on labelled images, and the reduced-precision budget: pure functions on arrays."""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from converter.zoo import PrecisionBudget

from .compare import ERROR, FAIL, PASS, SHAPE, Comparison, per_sample_cosine
from .preprocessing import confident_flips

TOP_K = 5


@dataclass(frozen=True)
class Accuracy:
    samples: int
    top1: float  # fraction of images whose top-1 class is the label
    top5: float  # fraction whose label is among the top 5 (top-k with fewer classes)
    per_class: tuple[tuple[int, int, int], ...] = ()  # (class index, images whose top-1 is right, images)


def top_k(logits: np.ndarray, k: int = TOP_K) -> np.ndarray:
    """Per sample, the indices of the k highest logits, highest first (ties: the lower index first)."""
    k = min(k, logits.shape[1])
    return np.argsort(-logits, axis=1, kind="stable")[:, :k]


def accuracy(predictions: np.ndarray, labels: list[int] | np.ndarray) -> Accuracy:
    """Top-1 and top-5 accuracy of top-k `predictions` (samples, k) against the labels, and per class."""
    labels = np.asarray(labels)
    right = predictions[:, 0] == labels
    within = (predictions == labels[:, None]).any(axis=1)
    per_class = tuple((int(c), int(right[labels == c].sum()), int((labels == c).sum())) for c in np.unique(labels))
    return Accuracy(len(labels), float(right.mean()), float(within.mean()), per_class)


def drop_points(reference: Accuracy | None, candidate: Accuracy | None) -> float | None:
    """How many percentage points of top-1 accuracy the candidate loses against the reference (negative: gains)."""
    if reference is None or candidate is None:
        return None
    return 100.0 * (reference.top1 - candidate.top1)


CONFIDENT_MARGIN = 0.2  # a top-1 flip counts where the reference preferred its class by this much probability


@dataclass(frozen=True)
class Agreement:
    """How a reduced-precision cell's logits agree with the reference's, in the terms softmax sees."""

    top1: float  # fraction of samples whose top-1 class is the reference's, or where the reference was unsure
    cosine: float  # the lowest per-sample cosine of the logits with each sample's mean removed
    flips: int  # samples whose top-1 moved although the reference was confident


def agreement(reference: np.ndarray, candidate: np.ndarray, margin: float = CONFIDENT_MARGIN) -> Agreement:
    """Softmax ignores a constant added to every logit of a sample, and quantisation often adds one: the
    cosine is taken on centred logits. A top-1 flip counts only where the reference was confident, its
    probability for its own class ahead of the candidate's class by `margin` (a randomly initialised net's
    near-ties flip under any rounding, and say nothing about the conversion)."""
    ref, cand = reference.astype(np.float64), candidate.astype(np.float64)
    cosine = per_sample_cosine(ref - ref.mean(axis=1, keepdims=True), cand - cand.mean(axis=1, keepdims=True))
    flips = len(confident_flips(ref, cand, margin))
    return Agreement(1.0 - flips / len(ref), float(cosine.min()), flips)


def allowed_drop(budget: PrecisionBudget, samples: int) -> float:
    """The budget's accuracy drop plus one image's worth (100/samples points): on a small labelled set the
    smallest drop that can be measured is one image, and a budget below it would block on any single flip."""
    return budget.max_accuracy_drop + 100.0 / max(samples, 1)


def judge_precision(comparisons: Mapping[str, Comparison], budget: PrecisionBudget, precision: str,
                    drop: float | None, logits: Agreement | None = None) -> tuple[str, str]:
    """A reduced-precision cell against its budget instead of the fp32 tolerance: with labelled images, the
    accuracy drop in points (with one image's slack, `allowed_drop`); without, the top-1 agreement and the lowest
    cosine of every output (for the logits, `logits`: centred, flips counted where the reference was confident).
    An ERROR (no output, a broken reference) stays an ERROR."""
    if any(c.status == ERROR for c in comparisons.values()):
        return ERROR, "; ".join(c.reason for c in comparisons.values() if c.status == ERROR)
    unrunnable = [c.reason for c in comparisons.values() if SHAPE in c.failed_checks]
    if unrunnable:  # it could not run some size of the shape sweep at all: no budget covers that
        return FAIL, "; ".join(dict.fromkeys(unrunnable))
    first = next(iter(comparisons.values()))
    if logits is None and not math.isnan(first.top1_agreement):  # class scores first: their agreement counts
        logits = Agreement(first.top1_agreement, first.cosine, 0)
    cosines = {name: (logits.cosine if index == 0 and logits is not None else c.cosine)
               for index, (name, c) in enumerate(comparisons.items())}
    failures, facts = [], []
    if drop is not None:
        allowed = allowed_drop(budget, first.samples)
        limit = f"{budget.max_accuracy_drop:g} + one image of {first.samples}"
        facts.append(f"accuracy drop {drop:+.1f} points (budget {limit} = {allowed:.2f})")
        if drop > allowed + 1e-9:
            failures.append(f"{precision} accuracy drop {drop:.1f} points > {allowed:.2f} ({limit})")
    else:
        if logits is not None:  # a model without class scores is judged by its outputs' cosines alone
            facts.append(f"top-1 agreement {logits.top1:.3f} (budget {budget.top1:g}; {logits.flips} confident "
                         "flip(s))")
            if not logits.top1 >= budget.top1:
                failures.append(f"{precision} top-1 agreement {logits.top1:.3f} < {budget.top1:g} ({logits.flips} "
                                "image(s) where the reference was confident changed class)")
        for name, cosine in cosines.items():
            if not cosine >= budget.min_cosine:
                failures.append(f"{precision} cosine {cosine:.4f} < {budget.min_cosine:g}"
                                + (f" ({name})" if len(comparisons) > 1 else ""))
        facts.append(f"cosine {min(cosines.values()):.4f} (budget {budget.min_cosine:g})")
    facts.append(f"max |diff| {first.max_abs_diff:.3g}")
    if failures:
        return FAIL, "; ".join(failures)
    return PASS, f"within the {precision} budget: " + ", ".join(facts)
