"""A classifier's predictions and accuracy in the reports: the long-form CSVs and the per-model tables, pure
functions of the results (the prediction grid, which writes a file, is in grid.py)."""
from __future__ import annotations

from itertools import zip_longest

import pandas as pd

from ...judge.accuracy import drop_points
from ...report.tables import table
from ...results import ModelResult

SHOWN_IMAGES = 16  # rows in the markdown; predictions.csv has every image

PREDICTION_COLUMNS = ["model", "image", "label", "artifact", "runtime", "device", "precision", "top1", "top1_index",
                      "agrees_with_reference", "correct", "reference_top5"]
ACCURACY_COLUMNS = ["model", "artifact", "runtime", "device", "precision", "status", "class", "images", "top1",
                    "top5", "drop_points"]


def showcase(result: ModelResult, count: int) -> list[int]:
    """Which images to show when there are more than `count`: those where a cell's top-1 differs from the
    reference's first, then those the reference gets wrong, then the rest taken in turn from each class."""
    reference = result.reference
    total = len(result.input_names)
    if reference is None or reference.predictions is None or total <= count:
        return list(range(min(total, count)))
    top1 = reference.predictions[:, 0]
    others = [cell.predictions[:, 0] for cell in result.cells if cell.predictions is not None and not cell.reference]
    differ = [i for i in range(total) if any(int(p[i]) != int(top1[i]) for p in others)]
    wrong = [i for i in range(total) if result.labels is not None and result.labels[i] != int(top1[i])]
    by_label: dict[int, list[int]] = {}
    for i in range(total):
        by_label.setdefault(result.labels[i] if result.labels is not None else 0, []).append(i)
    in_turn = [i for group in zip_longest(*by_label.values()) for i in group if i is not None]
    chosen = list(dict.fromkeys([*differ, *wrong, *in_turn]))[:count]
    return sorted(chosen)


def reference_top5(result: ModelResult, sample: int) -> str:
    """The reference's top 5 for one image, as 'name probability' pairs."""
    reference = result.reference
    if reference is None or reference.predictions is None or result.reference_probabilities is None:
        return ""
    return "; ".join(f"{result.class_name(int(index))} {prob:.3f}" for index, prob in
                     zip(reference.predictions[sample], result.reference_probabilities[sample]))


def predictions_frame(results: list[ModelResult]) -> pd.DataFrame:
    rows = []
    for result in results:
        reference = result.reference
        if reference is None or reference.predictions is None:
            continue
        for cell in result.cells:
            if cell.predictions is None:
                continue
            for sample, name in enumerate(result.input_names):
                top1 = int(cell.predictions[sample, 0])
                label = result.labels[sample] if result.labels is not None else None
                rows.append({"model": result.model, "image": name,
                             "label": result.class_name(label) if label is not None else "",
                             "artifact": cell.artifact, "runtime": cell.runtime, "device": cell.device,
                             "precision": cell.precision, "top1": result.class_name(top1), "top1_index": top1,
                             "agrees_with_reference": top1 == int(reference.predictions[sample, 0]),
                             "correct": (top1 == label) if label is not None else None,
                             "reference_top5": reference_top5(result, sample)})
    return pd.DataFrame(rows, columns=PREDICTION_COLUMNS)


def accuracy_frame(results: list[ModelResult]) -> pd.DataFrame:
    """Per cell with labelled images: overall top-1/top-5 and the drop against the reference, then per class."""
    rows = []
    for result in results:
        reference = result.reference
        for cell in result.cells:
            if cell.accuracy is None:
                continue
            base = {"model": result.model, "artifact": cell.artifact, "runtime": cell.runtime, "device": cell.device,
                    "precision": cell.precision, "status": cell.status}
            drop = drop_points(reference.accuracy if reference else None, cell.accuracy)
            rows.append({**base, "class": "(all)", "images": cell.accuracy.samples,
                         "top1": cell.accuracy.metrics["top1"], "top5": cell.accuracy.metrics["top5"],
                         "drop_points": drop})
            for index, right, images in cell.accuracy.per_class:
                rows.append({**base, "class": result.class_name(index), "images": images, "top1": right / images,
                             "top5": None, "drop_points": None})
    return pd.DataFrame(rows, columns=ACCURACY_COLUMNS)


def predictions_section(result: ModelResult, grid: str | None) -> list[str]:
    """The reference's top 5 per image with the true label, and every cell whose top-1 differs from it."""
    reference = result.reference
    if reference is None or reference.predictions is None or result.reference_probabilities is None:
        return []
    lines = []
    scored = [cell for cell in result.cells if cell.accuracy is not None]
    if scored:
        lines += ["", f"Accuracy on {result.samples} labelled images ({result.image_source}):", ""]
        lines += table(["runtime", "artifact", "device", "precision", "status", "top-1", "top-5", "drop (points)"],
                       [[c.runtime, c.artifact, c.device, c.precision, c.status,
                         f"{100 * c.accuracy.metrics['top1']:.1f}%", f"{100 * c.accuracy.metrics['top5']:.1f}%",
                         f"{drop_points(reference.accuracy, c.accuracy):+.1f}"] for c in scored])
    elif result.accuracy_note:
        lines += ["", f"Accuracy: {result.accuracy_note}."]
    ran = [cell for cell in result.cells if cell.predictions is not None and not cell.reference]
    rows = []
    for sample in showcase(result, SHOWN_IMAGES):
        name = result.input_names[sample]
        top1 = int(reference.predictions[sample, 0])
        label = result.labels[sample] if result.labels is not None else None
        differ = [f"{c.runtime}:{c.artifact} -> {result.class_name(int(c.predictions[sample, 0]))}"
                  for c in ran if int(c.predictions[sample, 0]) != top1]
        mark = "" if label is None else (" (right)" if label == top1 else " (**wrong**)")
        rows.append([name, result.class_name(label) if label is not None else "-", reference_top5(result, sample)
                     + mark, "; ".join(differ) or "none"])
    more = (f" ({SHOWN_IMAGES} of {len(result.input_names)}: those where a cell differs and those the reference "
            "gets wrong first, then in turn from each class; all in predictions.csv)"
            if len(result.input_names) > SHOWN_IMAGES else "")
    lines += ["", f"Predictions{more}: the reference's top 5 with softmax probabilities, and each cell whose top-1 "
                  "differs:", ""]
    lines += table(["image", "label", "reference top 5", "cells that disagree"], rows)
    if grid:
        lines += ["", f"![{result.model} predictions]({grid})"]
    return lines
