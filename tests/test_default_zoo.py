"""The README's main job on the shipped zoo.yaml (slow): demo checkpoint, convert, verify on the CPU."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from converter.__main__ import main as converter_main
from converter.demo import main as demo_main
from tests.conftest import cannot_run_here
from verify.__main__ import main as verify_main

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parent.parent


def test_default_zoo_converts_and_passes_every_cpu_runtime(tmp_path):
    """The classifiers of the shipped zoo. Its shapes detector and segmenter are left out here: training them is most
    of a minute, and test_detection_tasks and the self-test's detector exercise the same code on models made by
    hand (the main job verifies the trained ones)."""
    zoo = yaml.safe_load((REPO / "zoo.yaml").read_text())
    assert {m["name"] for m in zoo["models"] if m.get("arch", "").startswith("demo:")} == {"shapes-detector",
                                                                                         "shapes-segmenter"}
    zoo["models"] = [m for m in zoo["models"] if not m.get("arch", "").startswith("demo:")]
    names = {m["name"] for m in zoo["models"]}
    assert {"resnet18", "mobilenet_v3_small", "efficientnet_lite0", "bees-vs-ants"} <= names
    for model in zoo["models"]:
        if "checkpoint" in model:  # the demo writes its checkpoint, validation and calibration images beside it
            assert demo_main(["--out", str(tmp_path / model["checkpoint"]), "--no-shapes"]) == 0
    (tmp_path / "zoo.yaml").write_text(yaml.safe_dump(zoo))
    artifacts, reports = tmp_path / "artifacts", tmp_path / "reports"
    assert converter_main([str(tmp_path / "zoo.yaml"), "--out", str(artifacts)]) == 0
    # the whole zoo's verdict from parity alone (the models side by side), then one model timed end to end
    assert verify_main(["--artifacts", str(artifacts), "--report", str(reports), "--no-timing",
                        "--num-images", "4"]) == 0
    timed = tmp_path / "timed"
    assert verify_main(["--artifacts", str(artifacts), "--report", str(timed), "--models", "bees-vs-ants", "--partial",
                        "--runs", "6", "--warmup", "0", "--min-time", "0.05", "--batches", "2",
                        "--max-wait", "0"]) == 0
    summary = json.loads((reports / "summary.json").read_text())
    assert summary["verdict"] == "PASS" and not summary["partial"]  # a whole-zoo deployment verdict
    # per model: torch, torchscript, paddle-inference, paddle-jit, onnxruntime and openvino on the four ONNX models
    # (both exporters, each simplified), torch-bf16, openvino-bf16 and paddle-inference-bf16: 15, less the bf16
    # cells this CPU cannot run (SKIP with the reason); resnet18 and mobilenet_v3_small explore int8 in onnxruntime
    # and openvino (mobilenet's outside its budget: not shippable, not blocking, no waiver), bees-vs-ants int8 and fp16
    skipped_here = [runtime for runtime in ("torch-bf16", "openvino-bf16", "paddle-inference-bf16")
                    if cannot_run_here(runtime)]
    bf16_cells = {"torch-bf16": 1, "openvino-bf16": 2, "paddle-inference-bf16": 1}
    per_model = 15 - sum(bf16_cells[runtime] for runtime in skipped_here)
    assert summary["cells"]["PASS"] == per_model * len(names) + 2 + 4
    assert summary["cells"]["FAIL"] == 2 and summary["waived"] == [] and summary["blocking"] == []
    assert all("explored, not deployed" in line for line in summary["notes"] if "onnx_int8" in line)
    assert summary["cells"].get("SKIP", 0) >= len(skipped_here) * len(names)
    assert set(summary["cells"]) <= {"PASS", "SKIP", "FAIL"}
    bees = summary["models"]["bees-vs-ants"]
    assert bees["classes"] == 2 and "64 images in 2 labelled classes" in bees["images"]
    reference = bees["accuracy"]["bees-vs-ants/eager/torch@cpu"]
    assert reference["top1"] > 0.75  # the demo model has learned its task (87.5% measured)
    for name in ("predictions.csv", "accuracy.csv", "predictions/bees-vs-ants.png", "predictions/efficientnet_lite0.png"):
        assert (reports / name).is_file()
    assert "Accuracy on 64 labelled images" in (reports / "report.md").read_text()
    timed_summary = json.loads((timed / "summary.json").read_text())
    assert timed_summary["verdict"] == "PASS (partial)" and timed_summary["partial"]
    assert timed_summary["models"]["bees-vs-ants"]["recommendation"].startswith("Ship ")
    assert (timed / "charts" / "bees-vs-ants-tradeoff.png").is_file() and (timed / "timing.csv").is_file()
    assert "What to ship" in (timed / "report.md").read_text()
