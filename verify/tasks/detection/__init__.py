"""Detection: boxes, scores and labels (each padded to a fixed number of detections per image), compared by
matching each image's detections to the reference's (verify.judge.detections). What the task adds: each cell's
detections and, with boxes labelled in a COCO file, its mAP; the matches per image (detections.csv), the scores
(detection_scores.csv), the report's section and a picture of the boxes; `verify.predict`'s detections."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..base import Outputs, Task
from .labels import read_boxes
from .pictures import gallery, write_pictures
from .scores import LEAD, kept_detections, mean_average_precision
from .tables import detection_section, matches_frame, scores_frame


def _parts(entry) -> dict[str, str]:
    return {kind: name for name, kind in entry.output_kinds.items() if kind in ("boxes", "scores", "labels")}


class DetectionTask(Task):
    name = "detection"
    labelled = True
    predicts = True
    score_name = LEAD

    def output_order(self, entry) -> list[str]:
        parts = ["boxes", "scores", "labels"]
        kinds = entry.output_kinds
        return sorted(entry.output_names, key=lambda name: parts.index(kinds[name]) if kinds[name] in parts else 3)

    def read_labels(self, entry, images, classes) -> list | None:
        if entry.annotations is None:
            return None
        return read_boxes(Path(entry.annotations), images, classes, entry.name, entry.preprocess)

    def cell_facts(self, entry, outputs: Outputs, labels) -> dict[str, Any]:
        parts = _parts(entry)
        boxes, scores, found = (outputs[parts[part]] for part in ("boxes", "scores", "labels"))
        floor = entry.tolerance.score_threshold - entry.tolerance.score_band
        classes = entry.class_names()
        score = None
        if labels is not None:
            count = len(classes) if classes else 1 + max((c for label in labels for c in label["labels"]), default=0)
            score = mean_average_precision(boxes, scores, found, labels, count)
        return {"predictions": kept_detections(boxes, scores, found, floor), "accuracy": score}

    def gallery(self, result) -> list[int]:
        return gallery(result)

    def sections(self, result, picture: str | None) -> list[str]:
        return detection_section(result, picture)

    def tables(self, results) -> dict:
        return {"detections.csv": matches_frame(results), "detection_scores.csv": scores_frame(results)}

    def pictures(self, results, entries, folder, run_id, drawn) -> dict[str, str]:
        return write_pictures(results, entries, folder, run_id, drawn)

    def predict(self, entry, outputs: Outputs, topk: int, class_name) -> list[list[tuple[str, float]]]:
        parts = _parts(entry)
        kept = kept_detections(*(outputs[parts[part]] for part in ("boxes", "scores", "labels")),
                               entry.tolerance.score_threshold)
        return [[(f"{class_name(int(row[5]))} at ({row[0]:.0f}, {row[1]:.0f}, {row[2]:.0f}, {row[3]:.0f})",
                  float(row[4])) for row in sample if row[4] >= 0][:topk] for sample in kept]


DETECTION = DetectionTask()
