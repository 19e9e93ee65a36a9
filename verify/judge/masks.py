"""A segmenter's per-pixel class scores against the reference's: the class of each pixel (argmax) and the mean IoU
of the classes, with the logits' own difference shown beside them. Pure: no I/O, no models."""
from __future__ import annotations

import numpy as np

from converter.zoo import Tolerance

from .compare import ERROR, FAIL, NON_FINITE, PASS, TOP1, Comparison, non_finite_text, per_sample_cosine

PIXELS = "pixels"  # a failed check: pixels changed class, or the classes' regions moved (mIoU)


def mask_problem(reference: np.ndarray, vacuous: bool = True) -> str | None:
    """Why the reference's mask logits cannot support a check. `vacuous`: also when every pixel has one class (off
    for a probe of a few samples, which may show only background)."""
    if reference.ndim != 4 or 0 in reference.shape or reference.shape[1] < 2:
        return f"reference mask logits have shape {reference.shape}, expected (samples, classes >= 2, height, width)"
    if not np.isfinite(reference).all():
        return f"reference mask logits contain {non_finite_text(reference)[1]}"
    classes = reference.argmax(axis=1)
    if vacuous and (classes == classes.flat[0]).all():
        return (f"the reference gives every pixel of every image class {int(classes.flat[0])}: a mask check would pass "
                "vacuously (random weights? images without the objects it was trained on?)")
    return None


def mean_iou(a: np.ndarray, b: np.ndarray, classes: int, ignore: int | None = None) -> float:
    """The mean IoU of two class maps over the classes present in either (NaN when none is); pixels equal to
    `ignore` in `b` (a label's 'unlabelled') count in neither."""
    keep = np.ones(a.shape, bool) if ignore is None else b != ignore
    a, b = a[keep].astype(np.int64), b[keep].astype(np.int64)
    confusion = np.bincount(a * classes + b, minlength=classes * classes).reshape(classes, classes)
    overlap = np.diag(confusion).astype(np.float64)
    union = confusion.sum(0) + confusion.sum(1) - overlap
    return float((overlap[union > 0] / union[union > 0]).mean()) if (union > 0).any() else float("nan")


def compare_masks(reference: np.ndarray, candidate: np.ndarray, tolerance: Tolerance,
                  vacuous: bool = True) -> Comparison:
    """Every pixel whose reference class leads by more than clear_margin keeps its class; of all pixels, at least
    pixel_agreement do; each image's mean IoU of the classes against the reference's mask, over its clear pixels
    (a near tie flipping to a class found nowhere else would otherwise weigh as a whole class), >= min_miou. The
    logits' max |diff| and cosine are shown, not judged: a pixel's class is what a segmenter delivers."""
    problem = mask_problem(reference, vacuous)
    samples = int(reference.shape[0]) if reference.ndim else 0
    if problem is not None:
        return Comparison(ERROR, problem, samples=samples, matched_kind=True)
    if candidate.shape != reference.shape:
        reason = f"mask logits of shape {candidate.shape}, reference {reference.shape}"
        return Comparison(FAIL, reason, samples=samples, failures=(reason,), failed_checks=(PIXELS,),
                          matched_kind=True)
    if not np.isfinite(candidate).all():
        bad, text = non_finite_text(candidate)
        reason = f"mask logits contain {text}"
        return Comparison(FAIL, reason, samples=samples, failures=(reason,), failed_checks=(NON_FINITE,),
                          matched_kind=True, non_finite=bad)
    classes = reference.shape[1]
    ref_class, cand_class = reference.argmax(axis=1), candidate.argmax(axis=1)
    top2 = np.partition(reference, classes - 2, axis=1)[:, -2:]
    margin = top2[:, 1] - top2[:, 0]
    agree = ref_class == cand_class
    agreement = float(agree.mean())
    clear = margin > tolerance.clear_margin
    clear_flips = int((~agree & clear).sum())
    ious = [mean_iou(cand_class[i][clear[i]], ref_class[i][clear[i]], classes) for i in range(samples)]
    ious = [1.0 if np.isnan(iou) else iou for iou in ious]  # no clear pixel: nothing a class region could lose
    worst_image = int(np.nanargmin(ious))
    failures, failed = [], []
    if clear_flips:
        failures.append(f"{clear_flips} pixel(s) changed class where the reference's margin exceeds "
                        f"{tolerance.clear_margin:g}")
        failed.append(TOP1)
    if agreement < tolerance.pixel_agreement:
        failures.append(f"pixel agreement {agreement:.5f} < {tolerance.pixel_agreement:g}")
        failed.append(TOP1)
    if ious[worst_image] < tolerance.min_miou:
        failures.append(f"mIoU with the reference's mask {ious[worst_image]:.4f} < {tolerance.min_miou:g} "
                        f"(image {worst_image})")
        failed.append(PIXELS)
    ref_flat = reference.reshape(samples, -1).astype(np.float64)
    cand_flat = candidate.reshape(samples, -1).astype(np.float64)
    max_abs = float(np.abs(cand_flat - ref_flat).max())
    facts = (f"pixel agreement {agreement:.5f}, lowest mIoU with the reference {ious[worst_image]:.4f}, "
             f"logits max |diff| {max_abs:.3g}")
    return Comparison(FAIL if failures else PASS, "; ".join(failures) + f" ({facts})" if failures else facts,
                      samples=samples, max_abs_diff=max_abs,
                      max_rel_diff=float(np.abs(cand_flat - ref_flat).max() / max(np.abs(ref_flat).max(), 1e-30)),
                      cosine=float(per_sample_cosine(ref_flat, cand_flat).min()), top1_agreement=agreement,
                      miou=float(ious[worst_image]), failures=tuple(failures), failed_checks=tuple(dict.fromkeys(failed)),
                      matched_kind=True)
