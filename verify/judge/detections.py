"""A detector's outputs against the reference's: each image's detections matched by class and overlap
(verify.judge.matching), a verdict for each part. Pure: no I/O, no models."""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from converter.zoo import Tolerance

from .compare import ERROR, FAIL, NON_FINITE, PASS, Comparison, non_finite_text
from .matching import ImageMatch, image_detections, match_image

MIN_REFERENCE_DETECTIONS = 3  # fewer above the threshold on all the images: every check would pass vacuously
MATCH = "match"  # a failed check: detections missed, extra, moved or relabelled
SHOWN = 3  # images named in a failure's reason


def detection_problem(boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray, tolerance: Tolerance,
                      vacuous: bool = True) -> str | None:
    """Why the reference's detections cannot support a check. `vacuous`: also when too few score above the
    threshold (off for a probe of a few samples, which may hold none)."""
    if scores.ndim != 2 or boxes.shape != (*scores.shape, 4) or labels.shape != scores.shape:
        return (f"reference detections have shapes boxes {boxes.shape}, scores {scores.shape}, labels {labels.shape};"
                " expected (samples, detections, 4), (samples, detections), (samples, detections)")
    if not _finite(boxes, scores, tolerance):
        return "reference detections contain NaN (a score) or Inf (a counted detection's box or score)"
    found = int((scores >= tolerance.score_threshold).sum())
    if vacuous and found < MIN_REFERENCE_DETECTIONS:
        return (f"the reference finds {found} detection(s) scoring >= {tolerance.score_threshold:g} on {len(scores)} "
                f"image(s), fewer than {MIN_REFERENCE_DETECTIONS}: a detection check would pass vacuously (random "
                "weights? images without the objects it was trained on?)")
    return None


def _finite(boxes: np.ndarray, scores: np.ndarray, tolerance: Tolerance) -> bool:
    """No NaN score, and the detections that count (scoring at least threshold - band) finite: padding may score
    -inf and carry any box."""
    scores = scores.astype(np.float64)
    counted = scores >= tolerance.score_threshold - tolerance.score_band
    return not np.isnan(scores).any() and bool(np.isfinite(scores[counted]).all()) \
        and bool(np.isfinite(boxes[counted]).all())


def compare_detections(reference: Mapping[str, np.ndarray], candidate: Mapping[str, np.ndarray],
                       names: Mapping[str, str], tolerance: Tolerance, vacuous: bool = True) -> dict[str, Comparison]:
    """The candidate's detections against the reference's. `names` maps each part (boxes, scores, labels) to its
    output's name in `reference` and `candidate`; the verdict of each part is what that part decides: the boxes
    whether every detection was found where it was (missed, extra, IoU >= min_iou), the scores whether matched
    scores stay within score_atol, the labels whether any detection changed class."""
    ref = {part: reference[name] for part, name in names.items()}
    samples = int(ref["scores"].shape[0]) if ref["scores"].ndim else 0
    problem = detection_problem(ref["boxes"], ref["scores"], ref["labels"], tolerance, vacuous)
    if problem is not None:
        return {name: Comparison(ERROR, problem, samples=samples, matched_kind=True) for name in names.values()}
    cand = {part: candidate[name] for part, name in names.items()}
    for part, array in cand.items():
        if array.shape != ref[part].shape:
            reason = f"{part} of shape {array.shape}, reference {ref[part].shape}"
            return {name: Comparison(FAIL, reason, samples=samples, failures=(reason,), failed_checks=(MATCH,),
                                     matched_kind=True) for name in names.values()}
    if not _finite(cand["boxes"], cand["scores"], tolerance):
        counted = cand["scores"].astype(np.float64) >= tolerance.score_threshold - tolerance.score_band
        bad = {"scores": non_finite_text(np.where(np.isinf(cand["scores"]) & ~counted, 0.0, cand["scores"])),
               "boxes": non_finite_text(np.where(counted[..., None], cand["boxes"], 0.0))}
        reason = "detections contain " + "; ".join(f"{part}: {text}" for part, (n, text) in bad.items() if n) \
            + " (NaN scores, and Inf in a counted detection's box or score)"
        return {name: Comparison(FAIL, reason, samples=samples, failures=(reason,), failed_checks=(NON_FINITE,),
                                 matched_kind=True, non_finite=sum(n for n, _ in bad.values()))
                for name in names.values()}
    matches = tuple(match_image(r, c, tolerance.score_threshold, tolerance.score_band) for r, c in zip(
        image_detections(ref["boxes"], ref["scores"], ref["labels"]),
        image_detections(cand["boxes"], cand["scores"], cand["labels"])))
    verdicts = {"boxes": _boxes_verdict(matches, tolerance), "scores": _scores_verdict(matches, tolerance),
                "labels": _labels_verdict(matches)}
    return {names[part]: Comparison(
        FAIL if failures else PASS, "; ".join(failures) or summary, samples=samples, max_abs_diff=worst,
        failures=tuple(failures), failed_checks=(MATCH,) if failures else (), images=matches, matched_kind=True)
        for part, (failures, summary, worst) in verdicts.items()}


def _named(matches: tuple[ImageMatch, ...], rows: list[int], what) -> str:
    shown = ", ".join(f"image {i}: {what(matches[i])}" for i in rows[:SHOWN])
    return shown + (f" and {len(rows) - SHOWN} more" if len(rows) > SHOWN else "")


def _boxes_verdict(matches: tuple[ImageMatch, ...], tolerance: Tolerance) -> tuple[list[str], str, float]:
    found = sum(m.matched + m.relabelled for m in matches)
    worst_iou = min((m.worst_iou for m in matches if m.matched), default=1.0)
    worst_shift = max((m.worst_coordinate_diff for m in matches), default=0.0)
    failures = []
    lost = [i for i, m in enumerate(matches) if m.missed or m.extra]
    if lost:
        failures.append(f"{sum(m.missed for m in matches)} detection(s) missed and {sum(m.extra for m in matches)} "
                        f"extra scoring >= {tolerance.score_threshold + tolerance.score_band:g} in {len(lost)} "
                        f"image(s) ({_named(matches, lost, lambda m: f'{m.missed} missed, {m.extra} extra')})")
    moved = [i for i, m in enumerate(matches) if m.matched and m.worst_iou < tolerance.min_iou]
    if moved:
        failures.append(f"matched boxes moved: worst IoU {worst_iou:.4f} < {tolerance.min_iou:g} in {len(moved)} "
                        f"image(s) ({_named(matches, moved, lambda m: f'IoU {m.worst_iou:.4f}')}); worst shift "
                        f"{worst_shift:.3g} px")
    in_band = sum(m.in_band for m in matches)
    summary = (f"{found} detection(s) matched in {len(matches)} image(s), worst IoU {worst_iou:.5f}"
               + (f"; {in_band} unmatched inside the score band (allowed)" if in_band else ""))
    return failures, summary, worst_shift


def _scores_verdict(matches: tuple[ImageMatch, ...], tolerance: Tolerance) -> tuple[list[str], str, float]:
    worst = max((m.worst_score_diff for m in matches), default=0.0)
    off = [i for i, m in enumerate(matches) if m.worst_score_diff > tolerance.score_atol]
    failures = [f"matched scores differ by up to {worst:.3g} > score_atol {tolerance.score_atol:g} in {len(off)} "
                f"image(s) ({_named(matches, off, lambda m: f'{m.worst_score_diff:.3g}')})"] if off else []
    return failures, f"worst matched score difference {worst:.3g}", worst


def _labels_verdict(matches: tuple[ImageMatch, ...]) -> tuple[list[str], str, float]:
    changed = [i for i, m in enumerate(matches) if m.relabelled]
    failures = [f"{sum(m.relabelled for m in matches)} detection(s) changed class in {len(changed)} image(s) "
                f"({_named(matches, changed, lambda m: f'{m.relabelled} relabelled')})"] if changed else []
    return failures, "no detection changed class", float(bool(changed))
