"""The registries are the only list of names: duplicates are refused, the zoo and the command lines check
against them, and a runtime added by registration alone is planned, validated and run."""
from __future__ import annotations

import numpy as np
import pytest
import yaml

from converter.core.registry import Registry
from converter.core.vocabulary import (ARTIFACTS, DEVICES, RUNTIMES, CellSelector, RuntimeSpec, formats,
                                       parse_selector, register_runtime)
from converter.core.errors import ZooError
from converter.zoo import load_zoo
from tests.conftest import convert_tiny_zoo, private_copy, tiny_entry, verify_api
from verify.runners import registered_runners
from verify.runners.onnxruntime_runner import OnnxRuntimeRunner


def test_a_name_registered_twice_is_refused():
    registry: Registry[int] = Registry("widget")
    registry.register("a", 1)
    with pytest.raises(ValueError, match="widget 'a' is already registered"):
        registry.register("a", 2)
    with pytest.raises(ValueError, match="runtime 'torch' is already registered"):
        register_runtime(RuntimeSpec("torch", ("eager",), ("cpu",), "verify.runners.torch_runners:TorchEagerRunner"))
    with pytest.raises(KeyError, match=r"unknown widget 'b' \(registered: a\)"):
        registry["b"]


def test_a_runtime_must_name_registered_artifacts_and_devices():
    with pytest.raises(ValueError, match="unknown artifact 'tflite'"):
        register_runtime(RuntimeSpec("tflite-runtime", ("tflite",), ("cpu",), "x:y"))
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        register_runtime(RuntimeSpec("tpu-runtime", ("onnx",), ("tpu",), "x:y"))
    assert "tflite-runtime" not in RUNTIMES and "tpu-runtime" not in RUNTIMES


def test_formats_and_build_order_come_from_the_artifacts():
    assert formats() == ("eager", "torchscript", "onnx", "onnx_dynamo", "paddle", "paddle_dygraph", "torch_export",
                         "openvino", "tvm", "tensorrt", "onnx_fp16", "onnx_int8", "tensorrt_fp16", "tensorrt_int8")
    names = list(ARTIFACTS)
    for spec in ARTIFACTS.values():
        assert spec.requires is None or names.index(spec.requires) < names.index(spec.name)


@pytest.mark.parametrize("text,expected", [
    ("onnxruntime", CellSelector("onnxruntime")),
    ("onnx_simplified", CellSelector(artifact="onnx_simplified")),
    ("torchscript", CellSelector("torchscript")),  # a runtime and an artifact: the runtime (the same cells)
    ("onnxruntime@cuda", CellSelector("onnxruntime", device="cuda")),
    ("paddle@cpu", CellSelector(artifact="paddle", device="cpu")),
    ("onnxruntime:onnx_simplified", CellSelector("onnxruntime", "onnx_simplified")),
    ("onnxruntime:onnx_simplified@tensorrt", CellSelector("onnxruntime", "onnx_simplified", "tensorrt")),
])
def test_selectors(text, expected):
    selector = parse_selector(text)
    assert selector == expected and str(selector) == text


def test_selector_specificity_orders_every_form():
    forms = ["onnxruntime", "onnx", "onnxruntime:onnx", "onnxruntime@cpu", "onnx@cpu", "onnxruntime:onnx@cpu"]
    ranked = sorted(forms, key=lambda text: parse_selector(text).specificity)
    assert ranked == forms
    assert len({parse_selector(text).specificity for text in forms}) == len(forms)
    assert all(parse_selector(text).matches("onnxruntime", "onnx", "cpu") for text in forms)
    assert not parse_selector("onnx@cpu").matches("onnxruntime", "onnx", "cuda")


class EchoRuntime(OnnxRuntimeRunner):
    """A new runtime that loads an existing artifact: here, ONNX Runtime under another name."""


@pytest.fixture
def echo_registered():
    register_runtime(RuntimeSpec("echo", ("onnx",), ("cpu", "cuda"), "tests.test_vocabulary:EchoRuntime"))
    try:
        yield
    finally:
        RUNTIMES.unregister("echo")


def test_a_registered_runtime_is_known_to_the_zoo_without_editing_it(write_zoo, echo_registered):
    path = write_zoo(models=[tiny_entry(required=["echo@cuda"], tolerance_overrides={"echo": {"atol": 1e-3}},
                                        allow_failures=[{"runtime": "echo", "device": "cuda", "reason": "new"}])])
    entry = load_zoo(path).models[0]
    assert entry.is_required("echo", "onnx", "cuda") and entry.tolerance_for("echo", "onnx", "cpu").atol == 1e-3
    assert registered_runners()["echo"] is EchoRuntime


def test_an_unregistered_runtime_is_refused_by_the_zoo(write_zoo):
    with pytest.raises(ZooError, match="'echo' is neither a runtime"):
        load_zoo(write_zoo(models=[tiny_entry(required=["echo"])]))


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    return convert_tiny_zoo(tmp_path_factory.mktemp("vocabulary"),
                            [tiny_entry(formats=["eager", "onnx"], onnx={"simplify": False}, deployments=[])])


def test_a_registered_runtime_is_planned_run_and_reported(converted, tmp_path, echo_registered):
    workdir = private_copy(converted, tmp_path)
    assert verify_api(workdir, {"echo": EchoRuntime}) == 0
    import pandas as pd

    frame = pd.read_csv(workdir / "reports" / "parity.csv")
    echo = frame[frame.runtime == "echo"]
    assert list(zip(echo.artifact, echo.device, echo.status)) == [("onnx", "cpu", "PASS")]
    assert np.isclose(echo.max_abs_diff.iloc[0], frame[frame.runtime == "onnxruntime"].max_abs_diff.iloc[0])


def test_the_devices_registry_marks_gpus():
    assert [name for name in DEVICES if DEVICES[name].gpu] == ["cuda", "tensorrt"]


def test_zoo_text_names_only_registered_things():
    """The default zoo file validates against the registries as shipped."""
    from pathlib import Path

    data = yaml.safe_load((Path(__file__).resolve().parent.parent / "zoo.yaml").read_text())
    assert set(data["defaults"]["formats"]) <= set(formats())



def test_a_cells_precision_is_its_runtimes_setting_else_its_artifacts():
    from converter.core.vocabulary import PRECISIONS, cell_precision

    assert cell_precision("torch", "eager") == "fp32"
    assert cell_precision("torch-bf16", "eager") == "bf16"
    assert cell_precision("onnxruntime", "onnx_int8") == "int8"
    assert cell_precision("openvino", "onnx_fp16") == "fp16"
    assert cell_precision("openvino-bf16", "onnx_simplified") == "bf16"
    assert cell_precision("tensorrt", "tensorrt_engine_fp16") == "fp16"
    assert cell_precision("paddle-inference-bf16", "paddle") == "bf16"
    assert {spec.precision for spec in ARTIFACTS.values()} | {spec.precision for spec in RUNTIMES.values()} \
        <= set(PRECISIONS)
