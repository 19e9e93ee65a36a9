"""A detector and a segmenter through the converter and the verifier: their detections and masks matched between
runtimes, scored against labels (COCO boxes, PNG masks), reported with pictures; an ONNX edited after export
blocks and names its runtime. The models are made by hand (no training), so their outputs are real and fixed:
red squares are class 0, green ones class 1."""
from __future__ import annotations

import csv
import json

import numpy as np
import onnx
import pytest
import torch
import yaml
from PIL import Image
from torch import nn

from converter.core.errors import ZooError
from converter.core.shapes import decode_centres
from converter.zoo import Preprocess, load_zoo
from tests.conftest import verify_api
from verify.plan.inputs import InputError, load_images
from verify.tasks.detection.labels import read_boxes
from verify.tasks.geometry import boxes_to_input

SIZE = 64
PREPROCESS = {"resize": SIZE, "crop": SIZE, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}


def _gaussian(size: int, sigma: float) -> torch.Tensor:
    grid = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    kernel = torch.exp(-(grid[:, None] ** 2 + grid[None, :] ** 2) / (2 * sigma ** 2))
    return kernel / kernel.sum()


class SquareFinder(nn.Module):
    """Red minus green light, blurred, at stride 4: class 0 peaks on red squares, class 1 on green ones; every box
    is 14 px."""

    def __init__(self):
        super().__init__()
        self.heat = nn.Conv2d(3, 2, 11, stride=4, padding=5)
        self.box = nn.Conv2d(3, 4, 1, stride=4)
        with torch.no_grad():
            blur = _gaussian(11, 2.5)
            self.heat.weight.zero_()
            self.heat.weight[0, 0], self.heat.weight[0, 1] = 4 * blur, -4 * blur
            self.heat.weight[1, 1], self.heat.weight[1, 0] = 4 * blur, -4 * blur
            self.heat.bias.fill_(-3.0)
            self.box.weight.zero_()
            self.box.bias.copy_(torch.tensor([3.5, 3.5, 0.5, 0.5]))

    def forward(self, image):
        return decode_centres(self.heat(image), self.box(image), detections=8)


class SquarePainter(nn.Module):
    """Per pixel: background, red, green (a 1x1 convolution of the colours)."""

    def __init__(self):
        super().__init__()
        self.classes = nn.Conv2d(3, 3, 1)
        with torch.no_grad():
            self.classes.weight.copy_(torch.tensor([[-1.0, -1.0, 0.0], [2.0, -2.0, 0.0], [-2.0, 2.0, 0.0]])[..., None, None])
            self.classes.bias.copy_(torch.tensor([1.0, -1.0, -1.0]))

    def forward(self, image):
        return self.classes(image)


def square_finder(**kwargs):
    return SquareFinder()


def square_painter(**kwargs):
    return SquarePainter()


def write_squares(folder, count: int = 6, seed: int = 0) -> None:
    """`images/*.png`: 2-3 red or green squares of 14 px on a dark noisy background; `boxes.json` (COCO) and
    `masks/*.png` (0 background, 1 red, 2 green)."""
    rng = np.random.default_rng(seed)
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    coco = {"images": [], "annotations": [], "categories": [{"id": 1, "name": "red"}, {"id": 2, "name": "green"}]}
    for index in range(count):
        pixels = rng.normal(50, 6, size=(SIZE, SIZE, 3))
        mask = np.zeros((SIZE, SIZE), np.uint8)
        name = f"squares_{index}.png"
        coco["images"].append({"id": index + 1, "file_name": name, "width": SIZE, "height": SIZE})
        placed = 0
        while placed < 2 + index % 2:
            x, y = (int(v) for v in rng.integers(2, SIZE - 16, size=2))
            if mask[y - 2:y + 16, x - 2:x + 16].any():
                continue
            label = int(rng.integers(0, 2))
            pixels[y:y + 14, x:x + 14] = (220, 30, 30) if label == 0 else (30, 220, 30)
            mask[y:y + 14, x:x + 14] = label + 1
            coco["annotations"].append({"id": len(coco["annotations"]) + 1, "image_id": index + 1,
                                        "category_id": label + 1, "bbox": [x, y, 14, 14], "area": 196, "iscrowd": 0})
            placed += 1
        Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(folder / "images" / name)
        Image.fromarray(mask).save(folder / "masks" / name)
    (folder / "boxes.json").write_text(json.dumps(coco))


def squares_zoo(tmp_path) -> dict:
    """The two models as checkpoints (their hand-set weights, which `weights: random` would replace)."""
    write_squares(tmp_path / "squares")
    torch.save(SquareFinder().state_dict(), tmp_path / "finder.pt")
    torch.save(SquarePainter().state_dict(), tmp_path / "painter.pt")
    common = {"input": {"shape": [3, SIZE, SIZE]}, "preprocess": PREPROCESS, "images": "squares/images",
              "formats": ["eager", "onnx"], "onnx": {"simplify": False}, "deployments": []}
    models = [{"name": "finder", "arch": "tests.test_detection_tasks:square_finder", "checkpoint": "finder.pt",
               "classes": ["red", "green"], "annotations": "squares/boxes.json",
               "outputs": [{"name": "boxes", "kind": "boxes"}, {"name": "scores", "kind": "scores"},
                           {"name": "labels", "kind": "labels"}], **common},
              {"name": "painter", "arch": "tests.test_detection_tasks:square_painter", "checkpoint": "painter.pt",
               "classes": ["background", "red", "green"], "annotations": "squares/masks",
               "outputs": [{"name": "mask", "kind": "mask_logits"}], **common}]
    zoo = {"models": models}
    (tmp_path / "zoo.yaml").write_text(yaml.safe_dump(zoo, sort_keys=False))
    return zoo


def test_detections_and_masks_are_matched_scored_reported_and_an_edited_onnx_blocks(tmp_path):
    from converter.pipeline import RunOptions, convert
    from verify.selftest.faults import resign

    squares_zoo(tmp_path)
    zoo = load_zoo(tmp_path / "zoo.yaml")
    assert [m.task_name for m in zoo.models] == ["detection", "segmentation"]
    convert(zoo, RunOptions(out=tmp_path / "artifacts"))
    assert verify_api(tmp_path, models=None, runtimes=("torch", "onnxruntime")) == 0

    reports = tmp_path / "reports"
    report = (reports / "report.md").read_text()
    assert "#### Detections: finder" in report and "#### Masks: painter" in report
    assert "| onnxruntime (cpu) | onnx | fp32 | PASS |" in report
    matches = list(csv.DictReader((reports / "detections.csv").read_text().splitlines()))
    assert {r["runtime"] for r in matches} == {"onnxruntime"} and len(matches) == 6
    assert all(r["missed"] == r["extra"] == "0" and float(r["worst_iou"]) > 0.999 for r in matches)
    scores = list(csv.DictReader((reports / "detection_scores.csv").read_text().splitlines()))
    # the boxes are 14 px where the squares are, give or take the stride: found, not all at the tightest IoUs
    assert all(0.3 < float(r["mAP@0.5:0.95"]) < 1.0 and float(r["mAP@0.5"]) > 0.9 for r in scores)
    masks = list(csv.DictReader((reports / "segmentation.csv").read_text().splitlines()))
    assert {float(r["miou"]) for r in masks} == {1.0}  # the painter is right on every labelled pixel
    summary = json.loads((reports / "summary.json").read_text())["models"]
    assert summary["finder"]["task"] == "detection" and summary["painter"]["task"] == "segmentation"
    for picture in ("detections/finder.png", "masks/painter.png"):
        assert (reports / picture).stat().st_size > 10_000 and f"]({picture})" in report

    # the box head's width scaled by 1.2 in the ONNX after export: every box grows, the runtime is named
    from converter.manifest import read_manifest

    path = tmp_path / "artifacts" / read_manifest(tmp_path / "artifacts").models["finder"].artifacts["onnx"].path
    model = onnx.load(path)
    bias = next(t for t in model.graph.initializer if onnx.numpy_helper.to_array(t).tolist() == [3.5, 3.5, 0.5, 0.5])
    bias.CopyFrom(onnx.numpy_helper.from_array(np.asarray([4.2, 3.5, 0.5, 0.5], np.float32), bias.name))
    onnx.save(model, path)
    resign(tmp_path / "artifacts", "onnx", "finder")
    assert verify_api(tmp_path, models=("finder",), runtimes=("torch", "onnxruntime")) != 0
    report = (reports / "report.md").read_text()
    assert "| onnxruntime (cpu) | onnx | fp32 | FAIL |" in report
    assert "matched boxes moved: worst IoU 0.8" in report


def test_coco_boxes_land_where_the_preprocessing_puts_the_image(tmp_path):
    write_squares(tmp_path, count=2)
    images = load_images(tmp_path / "images")
    settings = Preprocess(resize=80, crop=64)
    labels = read_boxes(tmp_path / "boxes.json", images, ["red", "green"], "m", settings)
    coco = json.loads((tmp_path / "boxes.json").read_text())
    x, y, w, h = coco["annotations"][0]["bbox"]
    # resized 64 -> 80 (x1.25), then the centre 64 cropped: 8 px off each side, and clipped to the crop
    expected = np.clip([x * 1.25 - 8, y * 1.25 - 8, (x + w) * 1.25 - 8, (y + h) * 1.25 - 8], 0, 64)
    assert labels[0]["boxes"][0] == pytest.approx(expected.tolist(), abs=0.01)
    assert boxes_to_input(np.asarray([[0, 0, 4, 4]]), 64, 64, settings).tolist() == [[0, 0, 0, 0]]  # cropped away
    with pytest.raises(InputError, match=r"boxes.json: model 'm', field annotations: categories \['green', 'red'\]"):
        read_boxes(tmp_path / "boxes.json", images, ["cat", "dog"], "m", settings)


def test_annotations_must_exist_and_label_the_models_own_images(write_zoo, tmp_path):
    detector = {"name": "d", "arch": "torchvision:resnet18", "weights": "random",
                "outputs": [{"name": "boxes", "kind": "boxes"}, {"name": "scores", "kind": "scores"},
                            {"name": "labels", "kind": "labels"}]}
    with pytest.raises(ZooError, match=r"model 'd'.*annotations.*set images too"):
        load_zoo(write_zoo([{**detector, "annotations": str(tmp_path)}]))
    (tmp_path / "pictures").mkdir()
    with pytest.raises(ZooError, match=r"model 'd'.*annotations.*no such file or folder"):
        load_zoo(write_zoo([{**detector, "images": str(tmp_path / "pictures"),
                             "annotations": str(tmp_path / "missing.json")}]))
    assert load_zoo(write_zoo([detector])).models[0].task_name == "detection"


class FoundSome(nn.Module):
    """A stand-in for a torchvision detector: per image, as many detections as its first pixel says."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(2.0))
        self.roi_heads = nn.Module()
        self.roi_heads.detections_per_img = 4

    def forward(self, images):
        found = []
        for image in images:
            count = int(image[0, 0, 0])
            found.append({"boxes": torch.ones(count, 4) * self.scale, "scores": torch.linspace(0.9, 0.5, count),
                          "labels": torch.arange(count) + 1})
        return found


def test_a_torchvision_style_detector_gives_fixed_shape_padded_outputs_and_keeps_its_state_dict():
    from converter.core.archs import model_registry
    from converter.core.detection_wrappers import PaddedDetections

    wrapped = PaddedDetections(FoundSome())
    images = torch.zeros(2, 3, 8, 8)
    images[0, 0, 0, 0], images[1, 0, 0, 0] = 3, 0
    boxes, scores, labels = wrapped(images)
    assert boxes.shape == (2, 4, 4) and scores.shape == labels.shape == (2, 4)
    assert scores[0].tolist() == pytest.approx([0.9, 0.7, 0.5, -1.0]) and scores[1].tolist() == [-1.0] * 4
    assert labels[0].tolist() == [1, 2, 3, -1] and (boxes[0, :3] == 2).all() and (boxes[0, 3] == 0).all()
    assert list(wrapped.state_dict()) == ["scale"]  # the detector's own keys: its checkpoints load as they are
    wrapped.load_state_dict({"scale": torch.tensor(5.0)})
    assert float(wrapped.detector.scale) == 5.0
    assert "fasterrcnn_mobilenet_v3_large_320_fpn" in model_registry("torchvision-detection:x").names()


def test_the_demo_trains_its_shapes_models_and_writes_labels_the_tasks_read(tmp_path):
    """A few training steps (the demo runs hundreds): the models' outputs have the declared shapes, and the
    labelled pictures it writes are read back by the detection and segmentation tasks."""
    from converter import demo_shapes
    from converter.core.shapes import DETECTIONS, SHAPES
    from verify.tasks.segmentation.labels import mask_paths, read_mask

    detector = demo_shapes.train_detector(steps=2, count=40)
    segmenter = demo_shapes.train_segmenter(steps=2, count=40)
    pictures = demo_shapes.image_set(3, seed=5)
    with torch.no_grad():
        boxes, scores, labels = detector(demo_shapes.as_tensor(pictures))
        masks = segmenter(demo_shapes.as_tensor(pictures))
    assert boxes.shape == (3, DETECTIONS, 4) and scores.shape == labels.shape == (3, DETECTIONS)
    assert masks.shape == (3, 1 + len(SHAPES), 96, 96)
    demo_shapes.write_labelled(tmp_path / "val", pictures)
    images = load_images(tmp_path / "val" / "images")
    settings = Preprocess(resize=96, crop=96)
    truth = read_boxes(tmp_path / "val" / "boxes.json", images, list(SHAPES), "m", settings)
    assert [len(label["labels"]) for label in truth] == [len(p.labels) for p in pictures]
    assert np.allclose(truth[0]["boxes"], pictures[0].boxes)
    paths = mask_paths(tmp_path / "val" / "masks", images, 1 + len(SHAPES), "m")
    assert (read_mask(paths[1], settings) == pictures[1].mask).all()
