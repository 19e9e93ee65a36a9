"""Paddle's second route (x2paddle's ONNX front end) and the dygraph model: the fallback when the tracer fails,
the route recorded, the ONNX fixes x2paddle needs, and the paddle-dygraph runtime."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from converter.core.paddle_dygraph import NotX2PaddleCode, load_dygraph
from converter.exporters.paddle import x2paddle_ready
from tests.conftest import built_artifact, loaded_on_any_batch, convert_tiny_zoo, tiny_entry, verify_api
from verify.runners.base import Availability
from verify.runners.paddle_runners import PaddleDygraphRunner

FORMATS = ["eager", "paddle_dygraph"]


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    return convert_tiny_zoo(tmp_path_factory.mktemp("paddle_routes"), [
        tiny_entry(formats=FORMATS, paddle={"route": "onnx"}),
        # torch.flip: x2paddle's tracer has no aten::flip, its ONNX front end maps the Slice it exports to
        tiny_entry("flipper", arch="tests.tiny_models:flipping_cnn", formats=FORMATS),
        tiny_entry("viewer", arch="tests.tiny_models:view_by_batch_cnn", formats=["eager", "paddle"]),
    ])


def _artifact(root, model, artifact):
    return built_artifact(root, artifact, model)


def test_the_onnx_route_is_taken_when_asked_and_recorded(converted):
    _, record = _artifact(converted, "tiny", "paddle")
    assert record.details["route"] == "onnx" and "onnx2paddle" in record.details["converter"]
    assert "direct_route_error" not in record.details and record.details["predictor_max_abs_diff"] < 1e-4


def test_auto_falls_back_to_the_onnx_route_where_the_tracer_fails_and_says_why(converted):
    _, record = _artifact(converted, "flipper", "paddle")
    assert record.details["route"] == "onnx"
    assert "aten::flip" in record.details["direct_route_error"]


def test_auto_falls_back_where_the_tracers_model_fails_at_batch_3_as_efficientnet_lite0_does(converted):
    _, record = _artifact(converted, "viewer", "paddle")
    assert record.details["route"] == "onnx" and "In operator matmul" in record.details["direct_route_error"]


def test_both_routes_verify_in_every_paddle_runtime_and_the_report_names_the_route(converted):
    assert verify_api(converted, models=("tiny", "flipper"), timing=False, num_images=3) == 0
    report = (converted / "reports" / "report.md").read_text()
    assert "flipper / paddle: x2paddle onnx2paddle" in report and "the direct route failed first" in report
    import pandas as pd

    frame = pd.read_csv(converted / "reports" / "parity.csv")
    cells = {(r.model, r.runtime): r.status for r in frame.itertuples() if r.device == "cpu"}
    for model in ("tiny", "flipper"):
        for runtime in ("paddle-inference", "paddle-jit", "paddle-dygraph"):
            assert cells[(model, runtime)] == "PASS", (model, runtime)


def test_the_dygraph_runner_runs_the_generated_layer_on_any_batch(converted):
    path, record = _artifact(converted, "tiny", "paddle_dygraph")
    assert path.name == "x2paddle_code.py" and (path.parent / "model.pdparams").is_file()
    runner = loaded_on_any_batch(PaddleDygraphRunner, path)
    assert runner.describe()["api"].startswith("dygraph") and record.details["dygraph_max_abs_diff"] < 1e-4


def test_a_file_that_is_not_x2paddles_code_is_refused(tmp_path):
    code = tmp_path / "x2paddle_code.py"
    code.write_text("import os\n")
    with pytest.raises(NotX2PaddleCode, match="not x2paddle's generated code"):
        load_dygraph(code)


def test_cuda_without_a_gpu_build_is_a_skip_with_the_reason():
    assert "CPU-only build" in PaddleDygraphRunner.unavailable("cuda", Availability())


def _graph(nodes, initializers):
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])]
    outputs = [helper.make_tensor_value_info(nodes[-1].output[0], TensorProto.FLOAT, [1, 2, 2, 2])]
    return helper.make_model(helper.make_graph(nodes, "g", inputs, outputs, initializers),
                             opset_imports=[helper.make_opsetid("", 13)])


def test_x2paddle_ready_drops_default_dilations_and_unshares_weights():
    weight = numpy_helper.from_array(np.ones((2, 2, 1, 1), np.float32), "w")
    model = _graph([
        helper.make_node("Conv", ["x", "w"], ["a"], name="c1"),
        helper.make_node("Conv", ["a", "w"], ["b"], name="c2"),  # the same weight: x2paddle renames it at first use
        helper.make_node("MaxPool", ["b"], ["c"], kernel_shape=[2, 2], dilations=[1, 1], name="p1"),
        helper.make_node("MaxPool", ["c"], ["d"], kernel_shape=[1, 1], dilations=[2, 2], name="p2"),
    ], [weight])
    ready = x2paddle_ready(model)
    onnx.checker.check_model(ready)
    convs = [n for n in ready.graph.node if n.op_type == "Conv"]
    assert convs[0].input[1] == "w" and convs[1].input[1] != "w"
    assert {t.name for t in ready.graph.initializer} == {"w", convs[1].input[1]}
    pools = {n.name: {a.name for a in n.attribute} for n in ready.graph.node if n.op_type == "MaxPool"}
    assert "dilations" not in pools["p1"] and "dilations" in pools["p2"]  # only the default is dropped
