"""The README's main job on the shipped zoo.yaml (slow): demo checkpoint, convert, verify on the CPU."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from converter.__main__ import main as converter_main
from converter.demo import make_checkpoint
from verify.__main__ import main as verify_main

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parent.parent


def test_default_zoo_converts_and_passes_every_cpu_runtime(tmp_path):
    zoo = yaml.safe_load((REPO / "zoo.yaml").read_text())
    names = {m["name"] for m in zoo["models"]}
    assert {"resnet18", "mobilenet_v3_small", "efficientnet_b0", "bees-vs-ants"} <= names
    for model in zoo["models"]:
        if "checkpoint" in model:
            model["checkpoint"] = str(make_checkpoint(tmp_path / model["checkpoint"]))
    (tmp_path / "zoo.yaml").write_text(yaml.safe_dump(zoo))
    artifacts, reports = tmp_path / "artifacts", tmp_path / "reports"
    assert converter_main([str(tmp_path / "zoo.yaml"), "--out", str(artifacts)]) == 0
    assert verify_main(["--artifacts", str(artifacts), "--report", str(reports),
                        "--runs", "5", "--warmup", "0", "--min-time", "0.05", "--batches", "2",
                        "--num-images", "4"]) == 0
    summary = json.loads((reports / "summary.json").read_text())
    assert summary["verdict"] == "PASS" and not summary["partial"]  # a whole-zoo deployment verdict
    # per model: torch, torchscript, paddle-inference, paddle-jit, and onnxruntime and openvino on the four ONNX
    # models (both exporters, each simplified)
    assert summary["cells"]["PASS"] == 12 * len(names) and set(summary["cells"]) <= {"PASS", "SKIP"}
