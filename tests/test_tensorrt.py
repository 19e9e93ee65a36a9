"""TensorRT: the engine's build options (fp32: no fp16, int8 or TF32; the batch range), and, on a machine without
a GPU or TensorRT, the engine skipped with the reason at conversion and its cells SKIP, the gate unaffected."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from converter.exporters.tensorrt_engine import MAX_BATCH, OPT_BATCH, engine_options, unavailable_here
from converter.manifest import read_manifest
from tests.conftest import convert_tiny_zoo, tiny_entry
from verify.__main__ import main as verify_main
from verify.runners.base import Availability
from verify.runners.tensorrt_runner import TensorRtRunner


def test_an_fp32_engine_turns_every_reduced_precision_off():
    options = engine_options("input", (3, 224, 224), dynamic_batch=True)
    assert not (options.fp16 or options.int8 or options.tf32)
    assert options.min_shape == (1, 3, 224, 224) and options.opt_shape == (OPT_BATCH, 3, 224, 224)
    assert options.max_shape == (MAX_BATCH, 3, 224, 224) and options.input_name == "input"


def test_an_fp16_engine_allows_fp16_kernels_and_nothing_else():
    options = engine_options("input", (3, 224, 224), dynamic_batch=True, precision="fp16")
    assert options.fp16 and not (options.int8 or options.tf32)
    assert engine_options("x", (3, 8, 8), dynamic_batch=False, precision="fp16").fp16
    with pytest.raises(ValueError, match="not int8"):
        engine_options("input", (3, 224, 224), dynamic_batch=True, precision="int8")


def test_a_fixed_batch_engine_is_built_for_batch_1_only():
    options = engine_options("pixels", (3, 32, 32), dynamic_batch=False)
    assert options.min_shape == options.opt_shape == options.max_shape == (1, 3, 32, 32)


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
