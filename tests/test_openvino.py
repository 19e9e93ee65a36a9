"""OpenVINO: the IR exporter (fp32 weights, the zoo's names), the runner (fp32 pinned and recorded), and the
gate on an IR whose weights changed after conversion."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from converter.core.openvino_cpu import compile_for_cpu, without_telemetry
from tests.conftest import built_artifact, convert_tiny_zoo, private_copy, tiny_entry
from verify.__main__ import main as verify_main
from verify.runners.base import Availability
from verify.runners.openvino_runner import OpenVinoRunner

ov = pytest.importorskip("openvino")


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    return convert_tiny_zoo(tmp_path_factory.mktemp("openvino"),
                            [tiny_entry(formats=["eager", "onnx", "openvino"], onnx={"simplify": False})])


@pytest.fixture
def workdir(converted, tmp_path):
    return private_copy(converted, tmp_path)


def _ir(root):
    return built_artifact(root, "openvino_ir")


def test_the_ir_keeps_fp32_weights_a_dynamic_batch_and_the_zoos_names(converted):
    path, record = _ir(converted)
    assert {name.rsplit("/", 1)[-1] for name in record.files} == {"model.xml", "model.bin"}
    model = ov.Core().read_model(str(path))
    constants = {str(op.get_output_element_type(0)) for op in model.get_ops() if op.get_type_name() == "Constant"}
    assert "<Type: 'float16'>" not in constants and "<Type: 'float32'>" in constants  # save_model compresses by default
    assert [p.get_any_name() for p in model.inputs] == ["input"] and [p.get_any_name() for p in model.outputs] == ["logits"]
    assert model.inputs[0].get_partial_shape()[0].is_dynamic
    assert record.details["weights"] == "fp32" and record.details["openvino_max_abs_diff"] < 1e-4


def test_the_runner_pins_fp32_and_says_so(converted):
    path, _ = _ir(converted)
    from verify.runners.base import LoadRequest

    runner = OpenVinoRunner()
    runner.load(LoadRequest(path, "cpu", 1, ("input",), ("logits",)))
    batch = np.random.default_rng(0).standard_normal((3, 3, 32, 32)).astype(np.float32)
    first, second = runner.run({"input": batch}), runner.run({"input": batch[:1]})
    assert first["logits"].shape == (3, 10) and second["logits"].shape == (1, 10)
    np.testing.assert_allclose(first["logits"][:1], second["logits"], atol=1e-5)  # not overwritten by the next call
    config = runner.describe()
    assert config["precision"] == "fp32" and config["inference_precision"] == "f32 (pinned)" and config["threads"] == 1
    assert config["performance_hint"] == "LATENCY for batch 1, THROUGHPUT for larger batches"
    assert config["throughput_requests"] >= 1
    assert compile_for_cpu(str(path)).get_property("INFERENCE_PRECISION_HINT") == ov.Type.f32


@pytest.mark.parametrize("size,parts,expected", [
    (8, 2, [(0, 4), (4, 8)]), (3, 2, [(0, 2), (2, 3)]), (2, 4, [(0, 1), (1, 2)]), (8, 1, [(0, 8)]),
])
def test_a_batch_is_split_over_the_throughput_requests_without_empty_parts(size, parts, expected):
    from verify.runners.openvino_runner import split_batch

    assert [(s.start, s.stop) for s in split_batch(size, parts)] == expected


def test_openvino_is_skipped_with_the_reason_where_it_is_not_installed():
    assert OpenVinoRunner.unavailable("cpu", Availability(openvino_cpu=False)) == \
        "openvino is not installed (pip install openvino)"
    assert OpenVinoRunner.unavailable("cpu", Availability()) is None


def test_the_converter_keeps_openvinos_telemetry_from_sending(monkeypatch):
    import importlib
    import sys

    monkeypatch.delitem(sys.modules, "openvino_telemetry", raising=False)
    without_telemetry()
    with pytest.raises(ImportError):
        importlib.import_module("openvino_telemetry")
    assert sys.modules["openvino_telemetry"] is None


def test_the_verifiers_openvino_cells_import_openvino_with_its_telemetry_off(converted):
    from converter.core.isolation import run_isolated

    from tests.openvino_probe import openvino_telemetry_after_load

    outcome = run_isolated(openvino_telemetry_after_load, str(built_artifact(converted, "openvino_ir")[0]))
    assert outcome.ok and outcome.value == (False, "None"), outcome.value or outcome.message


def _scale_first_conv_weight(path, factor: float) -> None:
    """Rewrite the IR with its first 4-d float constant (a conv weight) times `factor`, fp32 kept."""
    import openvino.opset13 as ops

    model = ov.Core().read_model(str(path))
    weight = next(op for op in model.get_ordered_ops() if op.get_type_name() == "Constant"
                  and op.get_output_element_type(0) == ov.Type.f32 and len(op.get_output_shape(0)) == 4)
    weight.output(0).replace(ops.constant(weight.get_data() * np.float32(factor)).output(0))
    ov.save_model(model, str(path.with_name("edited.xml")), compress_to_fp16=False)
    for suffix in (".xml", ".bin"):
        path.with_name("edited" + suffix).replace(path.with_suffix(suffix))


def test_an_ir_whose_weights_changed_after_conversion_blocks_the_gate_and_names_openvino(workdir):
    from verify.selftest.faults import resign

    path, _ = _ir(workdir)
    _scale_first_conv_weight(path, 1.05)
    resign(workdir / "artifacts", "openvino_ir", model="tiny")  # the hashes match: only the comparison can tell
    code = verify_main(["--artifacts", str(workdir / "artifacts"), "--report", str(workdir / "reports"),
                        "--zoo", str(workdir / "zoo.yaml"), "--devices", "cpu", "--partial", "--no-timing",
                        "--num-images", "3"])
    frame = pd.read_csv(workdir / "reports" / "parity.csv")
    status = {(row.runtime, row.artifact): row.status for row in frame.itertuples()}
    assert code == 1 and status[("openvino", "openvino_ir")] == "FAIL"
    assert status[("openvino", "onnx")] == "PASS" and status[("onnxruntime", "onnx")] == "PASS"
    summary = json.loads((workdir / "reports" / "summary.json").read_text())
    assert any("openvino" in line for line in summary["blocking"])
