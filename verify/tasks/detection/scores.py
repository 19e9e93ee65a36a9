"""What a detector's cell predicts and how well: its detections above the band, and COCO's mean average precision
against the labelled boxes (pycocotools, the reference implementation)."""
from __future__ import annotations

import contextlib
import io
import threading

import numpy as np

from ...judge.accuracy import Score
from ...judge.matching import image_detections

LEAD, HALF = "mAP@0.5:0.95", "mAP@0.5"
_QUIET = threading.Lock()


def kept_detections(boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray, floor: float) -> np.ndarray:
    """(samples, slots, 6): x1, y1, x2, y2, score, label of the detections scoring >= floor, best first; the empty
    slots have score -1."""
    kept = np.full((*scores.shape, 6), -1.0, np.float32)
    for sample, found in enumerate(image_detections(boxes, scores, labels)):
        found = found.above(floor)
        order = np.argsort(-found.scores, kind="stable")
        rows = np.concatenate([found.boxes[order], found.scores[order, None], found.labels[order, None]], axis=1)
        kept[sample, :len(rows)] = rows
    return kept


def mean_average_precision(boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray, truth: list[dict],
                           classes: int) -> Score:
    """COCO's box mAP over the images (every detection with a score above 0 counts, as COCO's evaluation wants),
    mAP@0.5:0.95 first."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    dataset = {"images": [{"id": i + 1} for i in range(len(truth))],
               "categories": [{"id": c + 1} for c in range(classes)], "annotations": []}
    for image, label in enumerate(truth):
        for (x1, y1, x2, y2), cls in zip(label["boxes"], label["labels"]):
            dataset["annotations"].append({"id": len(dataset["annotations"]) + 1, "image_id": image + 1,
                                           "category_id": int(cls) + 1, "bbox": [x1, y1, x2 - x1, y2 - y1],
                                           "area": (x2 - x1) * (y2 - y1), "iscrowd": 0})
    found = [{"image_id": image + 1, "category_id": int(d.labels[j]) + 1, "score": float(d.scores[j]),
              "bbox": [float(x1), float(y1), float(x2 - x1), float(y2 - y1)]}
             for image, d in enumerate(image_detections(boxes, scores, labels))
             for j, (x1, y1, x2, y2) in enumerate(d.boxes) if d.scores[j] > 0 and 0 <= d.labels[j] < classes]
    if not found:
        return Score(len(truth), {LEAD: 0.0, HALF: 0.0})
    # pycocotools prints its progress and table; sys.stdout is global, and cells are scored in threads: one at a
    # time, or one thread's restore lets another's table through to the console
    with _QUIET, contextlib.redirect_stdout(io.StringIO()):
        truth_api = COCO()
        truth_api.dataset = dataset
        truth_api.createIndex()
        evaluation = COCOeval(truth_api, truth_api.loadRes(found), "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    lead, half = (max(float(v), 0.0) for v in evaluation.stats[:2])  # -1: no labelled box at all
    return Score(len(truth), {LEAD: lead, HALF: half})
