"""The dynamo-based ONNX export (torch.onnx.export(dynamo=True)) and its onnxsim twin: a dynamic batch, the zoo's
names, both ONNX runtimes, localisation through the scopes it records, and the gate on an edited file."""
from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
import pytest
from onnx import helper

from tests.conftest import built_artifact, convert_tiny_zoo, private_copy, tiny_entry
from verify.__main__ import main as verify_main
from verify.cells.localize import node_module
from verify.selftest.faults import resign, scale_conv_weight

FORMATS = ["eager", "onnx_dynamo"]


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    return convert_tiny_zoo(tmp_path_factory.mktemp("dynamo"), [
        tiny_entry(formats=FORMATS),
        tiny_entry("two_heads", arch="tests.tiny_models:two_heads_cnn", outputs=["logits", "embedding"],
                   formats=FORMATS, onnx={"simplify": False}),
        tiny_entry("fixed", formats=FORMATS, onnx={"dynamic_batch": False, "simplify": False}),
    ])


def _record(root, artifact="onnx_dynamo", model="tiny"):
    return built_artifact(root, artifact, model)


@pytest.mark.parametrize("artifact", ["onnx_dynamo", "onnx_dynamo_simplified"])
def test_the_dynamo_export_takes_any_batch_under_the_zoos_names(converted, artifact):
    path, record = _record(converted, artifact)
    model = onnx.load(str(path))
    assert [i.name for i in model.graph.input] == ["input"] and [o.name for o in model.graph.output] == ["logits"]
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # a symbol, not a number
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    batch = np.random.default_rng(0).standard_normal((5, 3, 32, 32)).astype(np.float32)
    (out,) = session.run(None, {"input": batch})
    assert out.shape == (5, 10)
    np.testing.assert_allclose(out[:1], session.run(None, {"input": batch[:1]})[0], atol=1e-5)
    assert record.details["ort_max_abs_diff"] < 1e-4


def test_the_zoos_opset_below_18_is_raised_and_said(converted):
    _, record = _record(converted)
    assert record.details["opset"] == 18 and "opset 17" in record.details["opset_note"]
    assert record.details["exporter"] == "torch.onnx.export(dynamo=True)"


def test_every_declared_output_is_named(converted):
    path, _ = _record(converted, model="two_heads")
    assert [o.name for o in onnx.load(str(path)).graph.output] == ["logits", "embedding"]


def test_a_fixed_batch_export_is_built_for_batch_1(converted):
    path, record = _record(converted, model="fixed")
    assert not record.details["dynamic_batch"]
    assert onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim[0].dim_value == 1


def test_a_node_is_filed_under_the_module_scope_the_exporter_records():
    dynamo = helper.make_node("Conv", ["x", "w"], ["y"], name="node_Conv_12")
    entry = dynamo.metadata_props.add()
    entry.key, entry.value = "pkg.torch.onnx.name_scopes", "['', 'layer1', 'layer1.0', 'layer1.0.bn1', '_native_bn']"
    assert node_module(dynamo) == "layer1.0.bn1"
    legacy = helper.make_node("Conv", ["x", "w"], ["y"], name="/layer1/layer1.0/conv1/Conv")
    assert node_module(legacy) == "layer1.0.conv1"  # the TorchScript-based exporter's scope is in the name
    top = helper.make_node("Relu", ["x"], ["y"], name="node_relu")
    entry = top.metadata_props.add()
    entry.key, entry.value = "pkg.torch.onnx.name_scopes", "['', 'relu']"
    assert node_module(top) is None


def test_a_dynamo_onnx_whose_weights_changed_after_export_blocks_and_is_localised(converted, tmp_path):
    workdir = private_copy(converted, tmp_path)
    path, _ = _record(workdir)
    model = onnx.load(str(path))
    conv = next(n for n in model.graph.node if n.op_type == "Conv")
    scale_conv_weight(model, conv.name, 1.05)
    onnx.save(model, str(path))
    resign(workdir / "artifacts", "onnx_dynamo", model="tiny")  # the hashes match: only the comparison can tell
    code = verify_main(["--artifacts", str(workdir / "artifacts"), "--report", str(workdir / "reports"),
                        "--zoo", str(workdir / "zoo.yaml"), "--devices", "cpu", "--partial", "--no-timing",
                        "--models", "tiny", "--num-images", "3"])
    frame = pd.read_csv(workdir / "reports" / "parity.csv")
    status = {(row.runtime, row.artifact): row for row in frame.itertuples()}
    assert code == 1
    for runtime in ("onnxruntime", "openvino"):
        assert status[(runtime, "onnx_dynamo")].status == "FAIL"
        assert status[(runtime, "onnx_dynamo_simplified")].status == "PASS"
    summary = json.loads((workdir / "reports" / "summary.json").read_text())
    assert any("onnx_dynamo" in line and "onnxruntime" in line for line in summary["blocking"])
    assert "first divergence at ONNX node node_Conv" in status[("onnxruntime", "onnx_dynamo")].first_divergence
