"""Segmentation: per-pixel class scores (a mask_logits output), compared by each pixel's class and the classes'
IoU with the reference's mask (verify.judge.masks). What the task adds: each cell's mask and, with PNG masks as
labels, its mIoU and pixel accuracy; segmentation.csv, the report's section and a picture of the masks."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ...judge.accuracy import Score
from ...judge.masks import mean_iou
from ..base import Outputs, Task
from .labels import IGNORE, mask_paths, read_mask
from .pictures import gallery, write_pictures
from .tables import LEAD, mask_output, segmentation_frame, segmentation_section


class SegmentationTask(Task):
    name = "segmentation"
    labelled = True
    score_name = LEAD

    def output_order(self, entry) -> list[str]:
        kinds = entry.output_kinds
        return sorted(entry.output_names, key=lambda name: kinds[name] != "mask_logits")

    def read_labels(self, entry, images, classes) -> list | None:
        if entry.annotations is None:
            return None
        return mask_paths(Path(entry.annotations), images, len(classes) if classes else None, entry.name)

    def cell_facts(self, entry, outputs: Outputs, labels) -> dict[str, Any]:
        logits = outputs[mask_output(entry.output_kinds)]
        predicted = logits.argmax(axis=1).astype(np.uint8 if logits.shape[1] <= 256 else np.int32)
        score = None
        if labels is not None:
            truth = np.stack([read_mask(path, entry.preprocess) for path in labels])
            if truth.shape == predicted.shape:  # (a model whose masks are not at its input's size is not scored)
                known = (truth != IGNORE) & (truth < logits.shape[1])
                score = Score(len(labels), {LEAD: mean_iou(predicted[known], truth[known], logits.shape[1]),
                                            "pixel accuracy": float((predicted == truth)[known].mean())})
        return {"predictions": predicted, "accuracy": score}

    def gallery(self, result) -> list[int]:
        return gallery(result)

    def sections(self, result, picture: str | None) -> list[str]:
        return segmentation_section(result, picture)

    def tables(self, results) -> dict:
        return {"segmentation.csv": segmentation_frame(results)}

    def pictures(self, results, entries, folder, run_id, drawn) -> dict[str, str]:
        return write_pictures(results, entries, folder, run_id, drawn)


SEGMENTATION = SegmentationTask()
