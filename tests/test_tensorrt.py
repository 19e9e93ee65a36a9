"""TensorRT: the engine's build options (strongly typed, precision from its ONNX, TF32 off; the batch range), the
int8 engine's QDQ model (symmetric, run here in ONNX Runtime), and, on a machine without
a GPU or TensorRT, the engine skipped with the reason at conversion and its cells SKIP, the gate unaffected."""
from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from converter.core.vocabulary import ARTIFACTS, cell_precision
from converter.exporters.tensorrt_engine import MAX_BATCH, OPT_BATCH, engine_options, unavailable_here
from converter.manifest import read_manifest
from tests.conftest import convert_tiny_zoo, tiny_entry
from verify.__main__ import main as verify_main
from verify.runners.base import Availability
from verify.runners.tensorrt_runner import TensorRtRunner


def test_an_fp32_engine_is_strongly_typed_from_the_fp32_onnx_with_tf32_off():
    options = engine_options([("input", ["batch", 3, 224, 224])], {}, dynamic_batch=True)
    assert options.precision == "fp32" and options.source == "onnx" and options.strongly_typed and not options.tf32
    (shapes,) = options.inputs
    assert shapes.min_shape == (1, 3, 224, 224) and shapes.opt_shape == (OPT_BATCH, 3, 224, 224)
    assert shapes.max_shape == (MAX_BATCH, 3, 224, 224) and shapes.name == "input"


def test_an_engine_profile_spans_every_named_input_and_its_declared_sizes():
    options = engine_options([("input_ids", ["batch", "sequence"]), ("mask", ["batch", "sequence"])],
                             {"sequence": [16, 8, 77]}, dynamic_batch=True)
    assert [(s.name, s.min_shape, s.opt_shape, s.max_shape) for s in options.inputs] == [
        (name, (1, 8), (OPT_BATCH, 16), (MAX_BATCH, 77)) for name in ("input_ids", "mask")]


def test_reduced_precision_engines_take_it_from_their_graph_not_from_builder_flags():
    # TensorRT 11 removed BuilderFlag.FP16/INT8: the fp16 engine parses the fp16 ONNX, the int8 one a QDQ model
    fp16 = engine_options([("input", ["batch", 3, 224, 224])], {}, dynamic_batch=True, precision="fp16")
    int8 = engine_options([("x", ["batch", 3, 8, 8])], {}, dynamic_batch=False, precision="int8")
    assert (fp16.source, fp16.precision, fp16.strongly_typed, fp16.tf32) == ("onnx_fp16", "fp16", True, False)
    assert (int8.source, int8.precision, int8.inputs[0].min_shape, int8.inputs[0].max_shape) == (
        "onnx", "int8", (1, 3, 8, 8), (1, 3, 8, 8))
    assert ARTIFACTS["tensorrt_engine_fp16"].requires == "onnx_fp16" and ARTIFACTS["onnx_fp16"].precision == "fp16"
    assert cell_precision("tensorrt", "tensorrt_engine_int8") == "int8"
    with pytest.raises(ValueError, match="not bf16"):
        engine_options([("input", ["batch", 3, 224, 224])], {}, dynamic_batch=True, precision="bf16")


def _zero_points(model) -> dict[str, np.ndarray]:
    """Each QuantizeLinear's output tensor -> its zero point."""
    from onnx import numpy_helper

    constants = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    return {node.output[0]: constants[node.input[2]] for node in model.graph.node if node.op_type == "QuantizeLinear"}


def test_the_int8_engines_qdq_model_has_zero_points_of_zero_and_still_computes_the_model(tmp_path):
    """TensorRT takes only symmetric int8 Q/DQ (zero point 0); ONNX Runtime's CPU scheme has uint8 zero points.
    The TensorRT scheme's model, run in ONNX Runtime, still gives the fp32 model's answer (the builder itself
    needs a GPU)."""
    import onnx
    import onnxruntime as ort

    from converter.exporters.onnx_precision import FOR_ONNXRUNTIME, FOR_TENSORRT, quantise_qdq
    from converter.models import image_batch
    from converter.zoo import load_zoo

    root = convert_tiny_zoo(tmp_path, [tiny_entry(formats=["eager", "onnx"], onnx={"simplify": False})])
    entry = load_zoo(root / "zoo.yaml").models[0]
    fp32 = root / "artifacts" / read_manifest(root / "artifacts").models["tiny"].artifacts["onnx"].path
    context = SimpleNamespace(entry=entry, out_dir=tmp_path)
    for scheme in (FOR_TENSORRT, FOR_ONNXRUNTIME):
        assert quantise_qdq(context, fp32, tmp_path / f"{scheme.activation_type}.onnx", scheme) == "32 synthetic images"
    symmetric, asymmetric = (_zero_points(onnx.load(str(tmp_path / f"{name}.onnx"))) for name in ("QInt8", "QUInt8"))
    assert len(symmetric) >= 4 and all(z.dtype == np.int8 and not z.any() for z in symmetric.values())
    assert {z.dtype for z in asymmetric.values()} == {np.dtype(np.uint8)} and any(z.any() for z in asymmetric.values())

    images = image_batch(entry.preprocess, 16, seed=5).numpy()
    expected, got = (ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input": images})[0]
                     for path in (fp32, tmp_path / "QInt8.onnx"))
    cosine = (expected * got).sum(1) / np.linalg.norm(expected, axis=1) / np.linalg.norm(got, axis=1)
    assert cosine.min() > 0.99 and (expected.argmax(1) == got.argmax(1)).mean() >= 0.75, cosine


def test_a_fixed_batch_engine_is_built_for_batch_1_only():
    (shapes,) = engine_options([("pixels", ["batch", 3, 32, 32])], {}, dynamic_batch=False).inputs
    assert shapes.min_shape == shapes.opt_shape == shapes.max_shape == (1, 3, 32, 32)


@pytest.mark.parametrize("availability,reason", [
    (Availability(), "TensorRT is not installed"),
    (Availability(tensorrt_python=True), "no CUDA GPU visible"),
    (Availability(tensorrt_python=True, torch_cuda=True), None),
])
def test_the_tensorrt_runtime_needs_its_package_and_a_gpu(availability, reason):
    found = TensorRtRunner.unavailable("cuda", availability)
    assert found is None if reason is None else reason in found


def test_the_build_check_names_what_is_missing(monkeypatch):
    import importlib.util

    import torch

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorrt" else real(name, *a))
    assert "TensorRT is not installed" in unavailable_here()
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: object() if name == "tensorrt" else real(name, *a))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert unavailable_here() == "no CUDA GPU: a TensorRT engine is built on the GPU it runs on"


@pytest.mark.skipif(unavailable_here() is None, reason="this machine can build TensorRT engines")
def test_without_a_gpu_the_engine_is_skipped_and_its_cells_skip_without_blocking(tmp_path):
    root = convert_tiny_zoo(tmp_path, [tiny_entry(formats=["eager", "tensorrt"], onnx={"simplify": False})])
    record = read_manifest(root / "artifacts").models["tiny"].artifacts["tensorrt_engine"]
    assert record.skipped and record.error == unavailable_here() and record.path is None
    assert read_manifest(root / "artifacts").models["tiny"].artifacts["onnx"].ok  # what it is built from still is
    code = verify_main(["--artifacts", str(root / "artifacts"), "--report", str(root / "reports"),
                        "--zoo", str(root / "zoo.yaml"), "--no-timing", "--num-images", "3",
                        "--devices", "cpu,cuda,tensorrt"])  # asked for: a missing device's cells are SKIP rows
    frame = pd.read_csv(root / "reports" / "parity.csv")
    cell = frame[(frame.runtime == "tensorrt")].iloc[0]
    assert code == 0 and cell.status == "SKIP" and cell.device == "cuda"
    assert "tensorrt_engine was not built" in cell.detail
    summary = json.loads((root / "reports" / "summary.json").read_text())
    assert not summary["blocking"]


def test_an_engine_is_exported_without_a_memory_cap_and_the_other_formats_keep_theirs(write_zoo):
    from converter.core.isolation import Limits
    from converter.pipeline import RunOptions, export_limits
    from converter.zoo import load_zoo

    entry = load_zoo(write_zoo(models=[tiny_entry(limits={"timeout_s": 99})])).models[0]
    options = RunOptions(out=None, limits=Limits(timeout_s=600, memory_mb=4096))
    assert export_limits(entry, "tensorrt_engine", options) == Limits(timeout_s=99, memory_mb=0)  # CUDA needs it off
    assert export_limits(entry, "onnx", options) == Limits(timeout_s=99, memory_mb=4096)
