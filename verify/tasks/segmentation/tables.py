"""A segmenter's cells in the reports: per cell, its pixels' agreement with the reference and its mIoU
(segmentation.csv), and the report's section. Pure functions of the results."""
from __future__ import annotations

import pandas as pd

from ...report.tables import table
from ...results import Cell, ModelResult

LEAD = "mIoU"
COLUMNS = ["model", "artifact", "runtime", "device", "precision", "status", "size", "pixel_agreement",
           "lowest_image_miou_vs_reference", "logits_max_abs_diff", "images", "miou", "pixel_accuracy", "drop_points"]


def mask_output(kinds: dict[str, str]) -> str:
    return next(name for name, kind in kinds.items() if kind == "mask_logits")


def mask_comparisons(cell: Cell, result: ModelResult) -> dict[str, object]:
    from ...judge.compare import output_and_size

    name = mask_output(result.output_kinds)
    return {output_and_size(key)[1]: c for key, c in cell.comparisons.items() if output_and_size(key)[0] == name}


def segmentation_frame(results: list[ModelResult]) -> pd.DataFrame:
    rows = []
    for result in results:
        reference = result.reference
        for cell in result.cells:
            score = cell.accuracy.metrics if cell.accuracy is not None else {}
            drop = (100 * (reference.accuracy.value - cell.accuracy.value) if reference is not None and not cell.reference
                    and reference.accuracy is not None and cell.accuracy is not None else None)
            for size, comparison in (mask_comparisons(cell, result) or {"": None}).items():
                rows.append({"model": result.model, "artifact": cell.artifact, "runtime": cell.runtime,
                             "device": cell.device, "precision": cell.precision, "status": cell.status, "size": size,
                             "pixel_agreement": None if comparison is None or cell.reference else comparison.top1_agreement,
                             "lowest_image_miou_vs_reference": None if comparison is None or cell.reference
                             else comparison.miou,
                             "logits_max_abs_diff": None if comparison is None or cell.reference
                             else comparison.max_abs_diff,
                             "images": cell.accuracy.samples if cell.accuracy else None, "miou": score.get(LEAD),
                             "pixel_accuracy": score.get("pixel accuracy"), "drop_points": drop})
    return pd.DataFrame(rows, columns=COLUMNS)


def segmentation_section(result: ModelResult, picture: str | None) -> list[str]:
    reference = result.reference
    if reference is None:
        return []
    lines = ["", f"#### Masks: {result.model}", ""]
    rows = []
    for cell in result.cells:
        if cell.reference:
            continue
        for size, comparison in mask_comparisons(cell, result).items():
            if comparison.miou is None:
                continue
            score = ""
            if cell.accuracy is not None:
                score = f"{100 * cell.accuracy.value:.1f}%"
                if reference.accuracy is not None:
                    score += f" ({100 * (reference.accuracy.value - cell.accuracy.value):+.1f})"
            rows.append([f"{cell.runtime} ({cell.device})", cell.artifact + (f" @ {size}" if size else ""),
                         cell.precision, cell.status, f"{100 * comparison.top1_agreement:.3f}%",
                         f"{comparison.miou:.4f}", f"{comparison.max_abs_diff:.3g}", score])
    if rows:
        lines += table(["runtime", "artifact", "precision", "status", "pixels as the reference",
                        "lowest mIoU with the reference", "logits max |diff|", f"{LEAD} (drop)"], rows)
    if reference.accuracy is not None:
        lines += ["", f"The reference's {LEAD} on the labelled masks: {100 * reference.accuracy.value:.1f}% (pixel "
                      f"accuracy {100 * reference.accuracy.metrics['pixel accuracy']:.1f}%)."]
    if picture:
        lines += ["", f"![masks of {result.model}]({picture})"]
    return lines
