"""A detector's picture (detections/<model>.png): a few images with the reference's boxes beside each runtime that
disagrees, its missed, extra and moved detections marked."""
from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np

from ...judge.matching import Detections, pair_detections
from ...report.charts import png_bytes, pyplot, write_model_pictures
from ...results import ModelResult
from .tables import box_comparisons

PICTURE_IMAGES = 4
DISAGREEING_SHOWN = 3


def gallery(result: ModelResult) -> list[int]:
    """The images where some cell's detections differ most from the reference's first (missed, extra or
    relabelled, then the lowest IoU), then the first ones."""
    worst: dict[int, tuple[int, float]] = {}
    for cell in result.cells:
        if cell.reference:
            continue
        for comparison in box_comparisons(cell, result).values():
            for i, m in enumerate(comparison.images):
                lost, iou = worst.get(i, (0, 1.0))
                worst[i] = (max(lost, m.missed + m.extra + m.relabelled), min(iou, m.worst_iou))
    differ = sorted((i for i, (lost, iou) in worst.items() if lost or iou < 0.99),
                    key=lambda i: (-worst[i][0], worst[i][1]))
    return list(dict.fromkeys([*differ, *range(len(result.input_names))]))[:PICTURE_IMAGES]


def write_pictures(results: list[ModelResult], entries: dict, folder: Path, run_id: str,
                   drawn: Path | None) -> dict[str, str]:
    return write_model_pictures(results, entries, folder, run_id, drawn, "detections", detections_picture)


def _held(entry, cell, result: ModelResult):
    """The tolerance the cell's boxes were judged by: its own (overrides included), at its precision's limits."""
    boxes = next(name for name, kind in result.output_kinds.items() if kind == "boxes")
    tolerance = entry.tolerance_for(cell.runtime, cell.artifact, cell.device, boxes)
    budget = entry.budget_for(cell.precision) if not cell.reference else None
    return budget.limit(tolerance) if budget is not None else tolerance


def _found(row: np.ndarray) -> Detections:
    kept = row[row[:, 4] >= 0]
    return Detections(kept[:, :4], kept[:, 4], kept[:, 5].astype(int))


def detections_picture(result: ModelResult, entry) -> bytes:
    matplotlib, plt = pyplot()
    from matplotlib.patches import Rectangle

    reference = result.reference
    disagreeing = [cell for cell in result.cells if not cell.reference and cell.predictions is not None
                   and any(c.status != "PASS" for c in box_comparisons(cell, result).values())][:DISAGREEING_SHOWN]
    columns = [("reference: " + f"{reference.runtime} {reference.artifact}", reference), *[
        (f"{cell.runtime} {cell.artifact} ({cell.precision})", cell) for cell in disagreeing]]
    images = [i for i in gallery(result) if i in result.gallery]
    figure, axes = plt.subplots(len(images), len(columns), figsize=(3.2 * len(columns), 3.3 * len(images) + 0.6),
                                dpi=100, squeeze=False)
    mean, std = np.asarray(entry.preprocess.mean, np.float32), np.asarray(entry.preprocess.std, np.float32)
    names = result.classes or []
    threshold = entry.tolerance.score_threshold
    for row, image in enumerate(images):
        pixels = result.gallery[image].transpose(1, 2, 0) * std + mean
        expected = _found(reference.predictions[image])
        for column, (title, cell) in enumerate(columns):
            axis = axes[row, column]
            axis.imshow(pixels.clip(0, 1) if pixels.shape[-1] == 3 else pixels[..., 0].clip(0, 1), cmap="gray")
            axis.set_xticks([])
            axis.set_yticks([])
            held = _held(entry, cell, result)
            paired = pair_detections(expected, _found(cell.predictions[image]), held.score_threshold, held.score_band)
            got, iou = paired.candidate, paired.iou
            colours = {}
            for ref_index, index in paired.pairs:  # moved beyond min_iou: orange
                colours[index] = "lime" if iou[ref_index, index] >= held.min_iou or cell.reference else "orange"
            for _, index in paired.relabelled:
                colours[index] = "red"
            for index in np.flatnonzero(paired.candidate_free):  # unpaired: red above the band, grey inside it
                colours[index] = "red" if got.scores[index] >= paired.high else "grey"
            for index, (x1, y1, x2, y2) in enumerate(got.boxes):
                if cell.reference and got.scores[index] < threshold:
                    continue
                colour = "lime" if cell.reference else colours[index]
                axis.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=colour, linewidth=1.5))
                label = names[got.labels[index]] if 0 <= got.labels[index] < len(names) else str(got.labels[index])
                axis.text(x1, y1 - 1, f"{label} {got.scores[index]:.2f}", color=colour, fontsize=7,
                          bbox={"facecolor": "black", "alpha": 0.5, "pad": 0.5, "linewidth": 0})
            if not cell.reference:  # the reference's detections this runtime lost: dashed
                lost = paired.reference_free & (paired.reference.scores >= paired.high)
                for x1, y1, x2, y2 in paired.reference.boxes[lost]:
                    axis.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor="yellow",
                                             linestyle="--", linewidth=1.5))
            match_line = ""
            for comparison in box_comparisons(cell, result).values():
                if comparison.images and not cell.reference:
                    m = comparison.images[image]
                    match_line = f"\n{m.missed} missed, {m.extra} extra, {m.relabelled} relabelled, IoU {m.worst_iou:.3f}"
                    break
            name = result.input_names[image] if image < len(result.input_names) else str(image)
            axis.set_title((title if row == 0 else "") + f"\n{name}{match_line}", fontsize=8)
    agreed = "" if disagreeing else " (every runtime agrees with the reference)"
    legend = (f"{result.model}: the reference's detections scoring >= {threshold:g}{agreed}. Green: as the "
              "reference's; orange: moved beyond the cell's min_iou; red: extra or relabelled; grey: unpaired inside "
              "the score band; dashed yellow: the reference's, lost")
    figure.suptitle("\n".join(textwrap.wrap(legend, 48 * len(columns))), fontsize=8)
    figure.tight_layout()
    return png_bytes(figure)
