"""A detector's cells in the reports: per image, how each runtime's detections match the reference's
(detections.csv), each cell's mAP (detection_scores.csv), and the report's section. Pure functions of the results."""
from __future__ import annotations

import math

import pandas as pd

from ...judge.accuracy import drop_points
from ...judge.compare import output_and_size
from ...report.tables import table
from ...results import Cell, ModelResult
from .scores import HALF, LEAD

MATCH_COLUMNS = ["model", "artifact", "runtime", "device", "precision", "status", "size", "image", "matched", "missed",
                 "extra", "relabelled", "in_band", "worst_iou", "worst_score_diff", "worst_shift_px"]
SCORE_COLUMNS = ["model", "artifact", "runtime", "device", "precision", "status", "images", LEAD, HALF, "drop_points"]
SHOWN_IMAGES = 8  # per failing cell in the markdown; detections.csv has every image


def part_names(result: ModelResult) -> dict[str, str]:
    """The detector's outputs by part: {'boxes': name, 'scores': name, 'labels': name}."""
    return {kind: name for name, kind in result.output_kinds.items() if kind in ("boxes", "scores", "labels")}


def box_comparisons(cell: Cell, result: ModelResult):
    """The cell's comparison of the boxes at each size, by the size's label."""
    boxes = part_names(result).get("boxes")
    return {output_and_size(key)[1]: c for key, c in cell.comparisons.items() if output_and_size(key)[0] == boxes}


def matches_frame(results: list[ModelResult]) -> pd.DataFrame:
    rows = []
    for result in results:
        for cell in result.cells:
            if cell.reference:
                continue
            for size, comparison in box_comparisons(cell, result).items():
                for image, match in enumerate(comparison.images):
                    rows.append({"model": result.model, "artifact": cell.artifact, "runtime": cell.runtime,
                                 "device": cell.device, "precision": cell.precision, "status": cell.status,
                                 "size": size, "image": result.input_names[image] if image < len(result.input_names)
                                 else str(image), "matched": match.matched, "missed": match.missed,
                                 "extra": match.extra, "relabelled": match.relabelled, "in_band": match.in_band,
                                 "worst_iou": match.worst_iou, "worst_score_diff": match.worst_score_diff,
                                 "worst_shift_px": match.worst_coordinate_diff})
    return pd.DataFrame(rows, columns=MATCH_COLUMNS)


def scores_frame(results: list[ModelResult]) -> pd.DataFrame:
    rows = []
    for result in results:
        reference = result.reference
        for cell in result.cells:
            if cell.accuracy is None:
                continue
            drop = None if cell.reference or reference is None else drop_points(reference.accuracy, cell.accuracy)
            rows.append({"model": result.model, "artifact": cell.artifact, "runtime": cell.runtime, "device": cell.device,
                         "precision": cell.precision, "status": cell.status, "images": cell.accuracy.samples,
                         LEAD: cell.accuracy.metrics.get(LEAD), HALF: cell.accuracy.metrics.get(HALF),
                         "drop_points": drop})
    return pd.DataFrame(rows, columns=SCORE_COLUMNS)


def detection_section(result: ModelResult, picture: str | None) -> list[str]:
    """Per cell: detections matched, missed, extra and relabelled over the images, worst IoU and score difference,
    and mAP where the images are labelled; then the images of each disagreeing cell; then the picture."""
    reference = result.reference
    if reference is None:
        return []
    lines = ["", f"#### Detections: {result.model}", ""]
    found = reference.predictions
    if found is not None:
        lines.append(f"The reference finds {int((found[..., 4] >= 0).sum())} detection(s) scoring at or above the band's "
                     f"floor on {len(found)} image(s).")
    rows, failing = [], []
    for cell in result.cells:
        if cell.reference:
            continue
        for size, comparison in box_comparisons(cell, result).items():
            matches = comparison.images
            if not matches:
                continue
            score = cell.accuracy.metrics if cell.accuracy is not None else {}
            reference_score = reference.accuracy.metrics if reference.accuracy is not None else {}
            rows.append([f"{cell.runtime} ({cell.device})", cell.artifact + (f" @ {size}" if size else ""),
                         cell.precision, cell.status, str(sum(m.matched for m in matches)),
                         str(sum(m.missed for m in matches)), str(sum(m.extra for m in matches)),
                         str(sum(m.relabelled for m in matches)),
                         f"{min((m.worst_iou for m in matches), default=math.nan):.4f}",
                         f"{max((m.worst_score_diff for m in matches), default=math.nan):.2g}",
                         _points(score.get(LEAD), reference_score.get(LEAD))])
            bad = [i for i, m in enumerate(matches) if m.missed or m.extra or m.relabelled]
            if bad:
                failing.append((cell, size, matches, bad))
    if rows:
        lines += ["", *table(["runtime", "artifact", "precision", "status", "matched", "missed", "extra", "relabelled",
                              "worst IoU", "worst score diff", f"{LEAD} (drop)"], rows)]
    if reference.accuracy is not None:
        lines += ["", f"The reference's {LEAD} on the labelled boxes: {100 * reference.accuracy.value:.1f}% "
                      f"({HALF}: {100 * reference.accuracy.metrics[HALF]:.1f}%)."]
    for cell, size, matches, bad in failing:
        lines += ["", f"{cell.runtime} on {cell.artifact}{f' @ {size}' if size else ''}: images that disagree",
                  "", *table(["image", "matched", "missed", "extra", "relabelled", "worst IoU"],
                             [[result.input_names[i] if i < len(result.input_names) else str(i), str(matches[i].matched),
                               str(matches[i].missed), str(matches[i].extra), str(matches[i].relabelled),
                               f"{matches[i].worst_iou:.4f}"] for i in bad[:SHOWN_IMAGES]])]
        if len(bad) > SHOWN_IMAGES:
            lines.append(f"... and {len(bad) - SHOWN_IMAGES} more images (detections.csv).")
    if picture:
        lines += ["", f"![detections of {result.model}]({picture})"]
    return lines


def _points(value: float | None, reference: float | None) -> str:
    if value is None:
        return ""
    if reference is None:
        return f"{100 * value:.1f}%"
    return f"{100 * value:.1f}% ({100 * (reference - value):+.1f})"
