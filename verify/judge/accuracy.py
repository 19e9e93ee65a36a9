"""Scores against labels and the reduced-precision budget: plain data and pure functions, for every task."""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from converter.zoo import PrecisionBudget

from .compare import ERROR, FAIL, PASS, SHAPE, Comparison


@dataclass(frozen=True)
class Score:
    """A cell's outputs scored against the images' labels by its task: the first metric leads (What to ship's
    score, the drop against the reference)."""

    samples: int
    metrics: dict[str, float]  # name -> fraction 0-1, e.g. {"top1": 0.93, "top5": 0.99}
    per_class: tuple[tuple[int, int, int], ...] = ()  # (class index, samples the lead metric counts right, samples)

    @property
    def value(self) -> float:
        return next(iter(self.metrics.values()))


def drop_points(reference: Score | None, candidate: Score | None) -> float | None:
    """How many percentage points of the lead metric the candidate loses against the reference (negative: gains)."""
    if reference is None or candidate is None:
        return None
    return 100.0 * (reference.value - candidate.value)


@dataclass(frozen=True)
class Agreement:
    """How a reduced-precision cell agrees with the reference in its task's terms (for class scores: what
    softmax sees)."""

    top1: float  # fraction of samples whose top-1 class is the reference's, or where the reference was unsure
    cosine: float  # the lowest per-sample cosine of the logits with each sample's mean removed
    flips: int  # samples whose top-1 moved although the reference was confident


def allowed_drop(budget: PrecisionBudget, samples: int) -> float:
    """The budget's accuracy drop plus one image's worth (100/samples points): on a small labelled set the
    smallest drop that can be measured is one image, and a budget below it would block on any single flip."""
    return budget.max_accuracy_drop + 100.0 / max(samples, 1)


def judge_precision(comparisons: Mapping[str, Comparison], budget: PrecisionBudget, precision: str,
                    drop: float | None, logits: Agreement | None = None) -> tuple[str, str]:
    """A reduced-precision cell against its budget instead of the fp32 tolerance: detections and masks by their
    matching at the budget's limits (already in their verdicts); with labelled images, the drop of the task's score
    (accuracy, mAP, mIoU) in points (with one image's slack, `allowed_drop`); without, the top-1 agreement and the lowest
    cosine of every output (for the logits, `logits`: centred, flips counted where the reference was confident).
    An ERROR (no output, a broken reference) stays an ERROR."""
    if any(c.status == ERROR for c in comparisons.values()):
        return ERROR, "; ".join(c.reason for c in comparisons.values() if c.status == ERROR)
    unrunnable = [c.reason for c in comparisons.values() if SHAPE in c.failed_checks]
    if unrunnable:  # it could not run some size of the shape sweep at all: no budget covers that
        return FAIL, "; ".join(dict.fromkeys(unrunnable))
    # detections and masks were matched at the budget's own limits: their verdicts stand
    matched = {name: c for name, c in comparisons.items() if c.matched_kind}
    rest = {name: c for name, c in comparisons.items() if not c.matched_kind}
    first = next(iter(comparisons.values()))
    if logits is None and rest and not math.isnan(next(iter(rest.values())).top1_agreement):
        first_rest = next(iter(rest.values()))  # class scores first: their agreement counts
        logits = Agreement(first_rest.top1_agreement, first_rest.cosine, 0)
    cosines = {name: (logits.cosine if index == 0 and logits is not None else c.cosine)
               for index, (name, c) in enumerate(rest.items())}
    failures, facts = [], []
    for name, c in matched.items():
        if c.status == FAIL:
            failures.append(f"{precision} {name}: {c.reason}" if len(comparisons) > 1 else f"{precision}: {c.reason}")
    if matched:
        facts.append("; ".join(f"{name}: {c.reason}" for name, c in matched.items()))
    if drop is not None:
        allowed = allowed_drop(budget, first.samples)
        limit = f"{budget.max_accuracy_drop:g} + one image of {first.samples}"
        facts.append(f"accuracy drop {drop:+.1f} points (budget {limit} = {allowed:.2f})")
        if drop > allowed + 1e-9:
            failures.append(f"{precision} accuracy drop {drop:.1f} points > {allowed:.2f} ({limit})")
    elif rest:
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
    if rest:
        facts.append(f"max |diff| {next(iter(rest.values())).max_abs_diff:.3g}")
    if failures:
        return FAIL, "; ".join(failures)
    return PASS, f"within the {precision} budget: " + ", ".join(facts)
