"""Divergence localisation: scope parsing and the tolerance rule on arrays, then the real thing: a perturbed
conv in the middle of a small model's ONNX and TorchScript files is named in the report."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from converter.manifest import read_manifest
from converter.zoo import Tolerance
from tests.conftest import convert_tiny_zoo, private_copy, tiny_entry
from verify.__main__ import main as verify_main
from verify.cells.localize import capture_module_calls, exceeds, locate_in_onnx, scope_module
from verify.selftest.faults import resign, scale_conv_weight


@pytest.mark.parametrize("node, module", [
    ("/layer1/layer1.0/conv1/Conv", "layer1.0.conv1"),
    ("/features/features.3/Conv", "features.3"),
    ("/mid/conv/Conv", "mid.conv"),
    ("/classifier/Gemm", "classifier"),
    ("/Flatten", None),
    ("Conv_12", None),
])
def test_scope_module_from_onnx_node_names(node, module):
    assert scope_module(node) == module


def test_exceeds_uses_each_samples_magnitude():
    reference = np.array([[1.0, 100.0], [1.0, 1.0]])
    tolerance = Tolerance(atol=0.0, rtol=1e-2)
    assert not exceeds(reference, reference + np.array([[0.5, 0.5], [0.0, 0.0]]), tolerance)[0]  # 0.5 <= 1.0
    bad, diff, allowed = exceeds(reference, reference + np.array([[0.0, 0.0], [0.5, 0.0]]), tolerance)
    assert bad and diff == 0.5 and allowed == pytest.approx(0.01)
    assert exceeds(reference, reference * np.nan, tolerance)[0]


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    return convert_tiny_zoo(tmp_path_factory.mktemp("localize"),
                            [tiny_entry("tiny", deployments=[], tolerance={"atol": 1e-5, "rtol": 1e-4})])


def _perturb(workdir, artifact: str) -> None:
    """Scale features.3 (the middle conv of TinyCNN) by 1.01 inside the artifact, and re-sign it."""
    root = workdir / "artifacts"
    path = root / read_manifest(root).models["tiny"].artifacts[artifact].path
    if artifact == "torchscript":
        module = torch.jit.load(str(path))
        with torch.no_grad():
            getattr(module.features, "3").weight.mul_(1.01)
        torch.jit.save(module, str(path))
    else:
        import onnx

        model = onnx.load(str(path))
        scale_conv_weight(model, "/features/features.3/Conv", 1.01)
        onnx.save(model, str(path))
    resign(root, artifact, model="tiny")


@pytest.mark.parametrize("artifact, runtimes, words", [
    # OpenVINO runs the same ONNX file: its own values are matched to the file's nodes by their tensor names
    ("onnx", ("onnxruntime", "openvino"), "/features/features.3/Conv (Conv), module features.3"),
    ("torchscript", ("torchscript",), "TorchScript submodule features.3 (Conv2d)"),
])
def test_a_perturbed_middle_conv_is_named_as_the_first_divergence(converted, tmp_path, artifact, runtimes, words):
    workdir = private_copy(converted, tmp_path)
    _perturb(workdir, artifact)
    code = verify_main(["--artifacts", str(workdir / "artifacts"), "--report", str(workdir / "reports"),
                        "--devices", "cpu", "--partial", "--num-images", "4", "--no-timing"])
    assert code == 1
    summary = json.loads((workdir / "reports" / "summary.json").read_text())
    failing = summary["failing_cells"]
    assert tuple(cell["runtime"] for cell in failing) == runtimes
    for cell in failing:
        assert cell["first_divergence"]["module"] == "features.3" and words in cell["first_divergence"]["summary"]
        # each runtime's own values: OpenVINO's ops, named as the ONNX nodes they came from
        own = {"onnxruntime": "at ONNX node ", "openvino": "at OpenVINO op (ONNX node) ", "torchscript": "TorchScript"}
        assert own[cell["runtime"]] in cell["first_divergence"]["summary"]
    assert words in (workdir / "reports" / "report.md").read_text()
    assert words in summary["blocking"][0]  # the CI log line says where, too


def test_a_clean_onnx_graph_reports_no_divergence_inside_the_graph(converted):
    """A failure fed in from outside (here: nothing wrong at all) is not blamed on a layer."""
    from converter.core.reference import load_reference

    root = converted / "artifacts"
    record = read_manifest(root).models["tiny"]
    reference = load_reference((root / record.artifacts["eager"].path).parent)
    batch = np.random.default_rng(0).normal(size=(2, 3, 32, 32)).astype(np.float32)
    calls = capture_module_calls(reference, batch)
    assert [c.name for c in calls][:3] == ["features.0", "features.1", "features.2"]
    found = locate_in_onnx(root / record.artifacts["onnx"].path, batch, calls, Tolerance(atol=1e-5, rtol=1e-4))
    assert found.available and found.layer is None and found.layers_compared >= 8
    assert "not in the model's weights or ops" in found.summary



def test_a_cell_failing_only_on_top1_is_not_blamed_on_a_layer(tmp_path):
    from converter.zoo import ModelEntry
    from verify.judge.compare import Comparison
    from verify.results import Cell
    from verify.cells.session import SessionOptions, _localize

    entry = ModelEntry(name="m", arch="tests.tiny_models:tiny_cnn", weights="random")
    cell = Cell("m", "onnx", "onnxruntime", "cpu", "FAIL", "top-1", comparisons={"logits": Comparison(
        "FAIL", "top-1", failures=("top-1 agreement 0.5 < 1",), failed_checks=("top1",))})
    found = _localize(cell, entry, tmp_path, tmp_path / "model.onnx", np.zeros((1, 3, 8, 8), np.float32), False,
                      SessionOptions(artifacts=tmp_path))
    assert not found.available and "fails only on cosine, top-1 or neighbours" in found.summary


def test_a_difference_spread_over_every_layer_reports_where_it_starts(converted, tmp_path):
    """Every conv's weights x (1 + 3e-4), as an fp16 cast or another epsilon does: each layer alone is inside
    rtol 5e-4, the accumulated difference is not; the report also names where it rose above float32 noise."""
    import onnx

    from converter.core.reference import load_reference

    root = converted / "artifacts"
    record = read_manifest(root).models["tiny"]
    model = onnx.load(str(root / record.artifacts["onnx"].path))
    for node in [n for n in model.graph.node if n.op_type == "Conv"]:
        scale_conv_weight(model, node.name, 1 + 3e-4)
    path = tmp_path / "spread.onnx"
    onnx.save(model, str(path))
    batch = np.random.default_rng(1).normal(size=(2, 3, 32, 32)).astype(np.float32)
    calls = capture_module_calls(load_reference((root / record.artifacts["eager"].path).parent), batch)
    found = locate_in_onnx(path, batch, calls, Tolerance(atol=0.0, rtol=5e-4))
    assert found.module not in (None, "features.0") and found.onset_module == "features.0", found.summary
    assert "already above float32 noise" in found.summary and "module features.0" in found.summary


@pytest.fixture(scope="module")
def converted_for_openvino_and_paddle(tmp_path_factory):
    return convert_tiny_zoo(tmp_path_factory.mktemp("localize-ov-paddle"), [tiny_entry(
        "tiny", deployments=[], tolerance={"atol": 1e-5, "rtol": 1e-4},
        formats=["eager", "openvino", "paddle", "paddle_dygraph"])])


@pytest.mark.parametrize("artifact, runtime, words, module", [
    # OpenVINO IR from its PyTorch front end: ops named "__module.features.7/aten::batch_norm/..."; the conv has
    # BatchNorm folded in, so its BatchNorm's output is the first to differ
    ("openvino_ir", "openvino", "OpenVINO op __module.features.7/aten::batch_norm", "features.7"),
    # x2paddle names layers conv2d0, conv2d1, ...: paired with the PyTorch convs in call order
    ("paddle_dygraph", "paddle-dygraph", "in x2paddle's dygraph program from the same conversion: first divergence at "
                                         "Paddle layer conv2d2 (Conv2D), module features.6", "features.6"),
])
def test_openvino_and_paddle_name_the_perturbed_layer_from_their_own_values(converted_for_openvino_and_paddle,
                                                                             tmp_path, artifact, runtime, words,
                                                                             module):
    from verify.selftest.faults import scale_dygraph_mid_conv_weight, scale_ir_mid_conv_weight

    workdir = private_copy(converted_for_openvino_and_paddle, tmp_path)
    (scale_ir_mid_conv_weight if artifact == "openvino_ir" else scale_dygraph_mid_conv_weight)(workdir, "tiny")
    code = verify_main(["--artifacts", str(workdir / "artifacts"), "--report", str(workdir / "reports"),
                        "--devices", "cpu", "--partial", "--num-images", "4", "--no-timing", "--runtimes", runtime])
    assert code == 1
    (cell,) = json.loads((workdir / "reports" / "summary.json").read_text())["failing_cells"]
    assert cell["runtime"] == runtime and cell["first_divergence"]["module"] == module, cell["first_divergence"]
    assert words in cell["first_divergence"]["summary"]
