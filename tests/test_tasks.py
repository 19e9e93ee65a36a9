"""Tasks plug into one seam (verify.tasks.base.Task): a toy task of this module's own, one class and one
registration, gets its labels scored, its section in the report, its CSV and its score in What to ship, with no
edit to the session, the gate, the report writer or the CLI. The zoo picks a model's task and refuses a task
its outputs cannot serve."""
from __future__ import annotations

import csv
import json

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from PIL import Image
from torch import nn

from converter.core.errors import ZooError
from converter.core.vocabulary import TASKS, TaskSpec
from converter.zoo import load_zoo
from tests.conftest import verify_api
from verify.judge.accuracy import Score
from verify.report.tables import table
from verify.tasks import task_named
from verify.tasks.base import Task


class Brightness(Task):
    """Says whether a picture is bright: the model's one regression output above 0 means the class 'bright'."""

    name = "brightness"
    labelled = True
    score_name = "hit rate"

    def cell_facts(self, entry, outputs, labels):
        said = (outputs["score"][:, 0] > 0).astype(np.int64)
        if labels is None:
            return {"predictions": said[:, None]}
        right = said == np.asarray(labels)
        return {"predictions": said[:, None], "accuracy": Score(len(right), {"hit_rate": float(right.mean())})}

    def sections(self, result, picture):
        scored = [cell for cell in result.cells if cell.accuracy is not None]
        return ["", "Brightness calls:", ""] + table(
            ["runtime", "artifact", "hit rate"],
            [[c.runtime, c.artifact, f"{100 * c.accuracy.value:.1f}%"] for c in scored])

    def tables(self, results):
        rows = [{"model": r.model, "runtime": c.runtime, "artifact": c.artifact, "hit_rate": c.accuracy.value}
                for r in results for c in r.cells if c.accuracy is not None]
        return {"brightness.csv": pd.DataFrame(rows, columns=["model", "runtime", "artifact", "hit_rate"])}


BRIGHTNESS = Brightness()


class MeanLight(nn.Module):
    """The picture's mean (normalised) light, as one score per sample: a convolution whose weights are a buffer
    (the zoo's initialisation of random weights leaves them as they are)."""

    def __init__(self):
        super().__init__()
        self.register_buffer("weight", torch.full((4, 3, 3, 3), 1.0 / 27))

    def forward(self, image):
        return nn.functional.conv2d(image, self.weight, padding=1).mean(dim=(1, 2, 3)).unsqueeze(1)


def mean_light(**kwargs) -> nn.Module:
    return MeanLight()


@pytest.fixture()
def registered():
    TASKS.register("brightness", TaskSpec("brightness", "tests.test_tasks:BRIGHTNESS", ("regression",),
                                          "bright or dark"))
    try:
        yield
    finally:
        TASKS.unregister("brightness")


def test_a_new_task_is_one_class_and_one_registration(tmp_path, registered):
    from converter.pipeline import RunOptions, convert

    rng = np.random.default_rng(0)
    for label, light in (("dark", 40), ("bright", 215)):
        (tmp_path / "images" / label).mkdir(parents=True)
        for index in range(4):
            pixels = np.clip(rng.normal(light, 20, size=(40, 40, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(tmp_path / "images" / label / f"{index}.png")
    model = {"name": "light", "arch": "tests.test_tasks:mean_light", "weights": "random", "task": "brightness",
             "images": "images", "classes": ["dark", "bright"], "input": {"shape": [3, 32, 32]},
             "preprocess": {"resize": 36, "crop": 32}, "outputs": [{"name": "score", "kind": "regression"}],
             "formats": ["eager", "onnx"]}
    (tmp_path / "zoo.yaml").write_text(yaml.safe_dump({"models": [model]}, sort_keys=False))
    convert(load_zoo(tmp_path / "zoo.yaml"), RunOptions(out=tmp_path / "artifacts"))
    assert verify_api(tmp_path, models=None, runtimes=("torch", "onnxruntime")) == 0

    reports = tmp_path / "reports"
    report = (reports / "report.md").read_text()
    assert "Brightness calls:" in report and "| onnxruntime | onnx | 100.0% |" in report
    # What to ship scores the cells by the task's metric
    assert "What to ship (hit rate on 8 labelled images" in report
    assert "| onnxruntime | onnx | cpu | fp32 | 100.0% |" in report
    rows = list(csv.DictReader((reports / "brightness.csv").read_text().splitlines()))
    assert {(r["runtime"], r["artifact"], float(r["hit_rate"])) for r in rows} == {
        ("torch", "eager", 1.0), ("onnxruntime", "onnx", 1.0), ("onnxruntime", "onnx_simplified", 1.0)}
    summary = json.loads((reports / "summary.json").read_text())["models"]["light"]
    assert summary["task"] == "brightness"
    assert summary["accuracy"]["light/onnx/onnxruntime@cpu"] == {"precision": "fp32", "hit_rate": 1.0}
    # the classifier's table is written, without this model
    assert list(csv.DictReader((reports / "predictions.csv").read_text().splitlines())) == []


def test_the_task_is_chosen_by_the_outputs_or_named_and_checked(write_zoo):
    base = {"name": "m", "arch": "torchvision:resnet18", "weights": "random"}
    assert load_zoo(write_zoo([base])).models[0].task_name == "classification"
    embedding = {**base, "outputs": [{"name": "vector", "kind": "embedding"}]}
    assert load_zoo(write_zoo([embedding])).models[0].task_name == "generic"
    assert task_named("generic").name == "generic" and not task_named("generic").predicts
    with pytest.raises(ZooError, match=r"model 'm'.*task.*unknown task 'captioning'"):
        load_zoo(write_zoo([{**base, "task": "captioning"}]))
    with pytest.raises(ZooError, match=r"model 'm'.*task.*classification reads an output of kind logits"):
        load_zoo(write_zoo([{**embedding, "task": "classification"}]))


@pytest.mark.parametrize("task,shown", [("classification", True), ("generic", False), ("a-plugin-of-a-shard", False)])
def test_the_report_shows_a_models_own_task_sections_only(task, shown):
    """The same cells with predictions and accuracy: the classifier's tables appear for a classification result
    only; a result whose task is not registered here (a shard of a workbench with a plugin) keeps its parity."""
    from dataclasses import replace

    from tests.test_accuracy import labelled_result
    from verify.judge.gate import decide
    from verify.report.markdown import markdown

    result = replace(labelled_result(), task=task)
    report = markdown([result], decide([result], {}), {})
    assert ("Accuracy on 4 labelled images" in report) == shown and ("Predictions" in report) == shown
    assert "| onnx_int8 | onnxruntime | cpu | int8 |" in report  # the parity rows, whatever the task
