"""A detector's labelled images: boxes in a COCO JSON file (`annotations:` in the zoo), read into the model's input
pixels and class indices."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ...plan.inputs import ImageSet, InputError
from ..geometry import boxes_to_input


def read_boxes(path: Path, images: ImageSet, classes: list[str] | None, model: str, preprocess) -> list[dict]:
    """Per image of `images` (matched by file name), {"boxes": [[x1, y1, x2, y2], ...], "labels": [...]} in the
    model's input pixels. The categories are matched to the model's classes by name (without classes: their ids
    in order). Every image must be listed (one without objects has no annotations). InputError naming the file and
    what is wrong."""
    where = f"{path}: model '{model}', field annotations"
    try:
        coco = json.loads(path.read_text())
        listed = {Path(item["file_name"]).name: item for item in coco["images"]}
        categories = {item["id"]: item["name"] for item in coco["categories"]}
        annotations = coco.get("annotations", [])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{where}: not COCO JSON with images (file_name), categories (id, name) and annotations "
                         f"({type(exc).__name__}: {exc})") from None
    names = classes if classes is not None else [categories[key] for key in sorted(categories)]
    unknown = sorted(set(categories.values()) - set(names))
    if unknown:
        raise InputError(f"{where}: categories {unknown} are none of the model's classes {names}")
    index = {key: names.index(name) for key, name in categories.items()}
    by_image: dict[int, list[dict]] = {}
    for annotation in annotations:
        by_image.setdefault(annotation.get("image_id"), []).append(annotation)
    labels = []
    for position, name in enumerate(images.names):
        item = listed.get(Path(name).name)
        if item is None:
            raise InputError(f"{where}: image {name} is not listed (list every image, an empty one without "
                             "annotations)")
        found = by_image.get(item["id"], [])
        try:
            xywh = np.asarray([a["bbox"] for a in found], np.float64).reshape(-1, 4)
            classes_of = [index[a["category_id"]] for a in found]
        except (KeyError, ValueError, TypeError) as exc:
            raise InputError(f"{where}: image {name}: an annotation without a bbox [x, y, w, h] or a known "
                             f"category_id ({exc})") from None
        width, height = item.get("width"), item.get("height")
        if not (width and height):
            width, height = images.image(position).size
        boxes = boxes_to_input(np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1), width, height,
                               preprocess)
        kept = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        labels.append({"boxes": boxes[kept].round(2).tolist(), "labels": [c for c, k in zip(classes_of, kept) if k]})
    if not any(label["labels"] for label in labels):
        raise InputError(f"{where}: no box lies on any of the {len(images)} images of {images.source}")
    return labels
