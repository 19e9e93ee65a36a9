"""Runners: device availability logic (faked, so it is tested without a GPU), fallback detection, and every
registered runtime on a tiny converted model."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml

from converter.pipeline import RunOptions, convert_zoo
from converter.zoo import DEVICES, RUNTIMES, load_zoo
from tests.conftest import tiny_entry
from verify.runners import RUNNERS, Availability, DeviceUnavailable, LoadRequest

CPU_ONLY = Availability()
FULL_GPU = Availability(torch_cuda=True, paddle_cuda=True, paddle_tensorrt=True, onnxruntime_providers=(
    "TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"))


def test_registry_matches_the_zoo_vocabulary():
    assert tuple(RUNNERS) == RUNTIMES
    for runner in RUNNERS.values():
        assert set(runner.devices) <= set(DEVICES)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_cpu_is_always_available(runtime):
    assert RUNNERS[runtime].unavailable("cpu", CPU_ONLY) is None


@pytest.mark.parametrize("runtime,device,fragment", [
    ("torch", "cuda", "CUDA is not available"),
    ("torchscript", "cuda", "CUDA is not available"),
    ("onnxruntime", "cuda", "no CUDAExecutionProvider"),
    ("onnxruntime", "tensorrt", "no TensorrtExecutionProvider"),
    ("paddle-inference", "cuda", "paddlepaddle-gpu"),
    ("paddle-inference", "tensorrt", "paddlepaddle-gpu"),
    ("paddle-jit", "cuda", "paddlepaddle-gpu"),
])
def test_gpu_devices_skip_with_a_reason_on_a_cpu_machine(runtime, device, fragment):
    assert fragment in RUNNERS[runtime].unavailable(device, CPU_ONLY)
    assert RUNNERS[runtime].unavailable(device, FULL_GPU) is None


def test_partial_gpu_stacks():
    cuda_only_ort = Availability(onnxruntime_providers=("CUDAExecutionProvider", "CPUExecutionProvider"))
    assert RUNNERS["onnxruntime"].unavailable("cuda", cuda_only_ort) is None
    assert "Tensorrt" in RUNNERS["onnxruntime"].unavailable("tensorrt", cuda_only_ort)
    paddle_no_trt = Availability(paddle_cuda=True)
    assert RUNNERS["paddle-inference"].unavailable("cuda", paddle_no_trt) is None
    assert "without TensorRT" in RUNNERS["paddle-inference"].unavailable("tensorrt", paddle_no_trt)


def test_probe_reports_this_machine():
    probed = Availability.probe()
    assert "CPUExecutionProvider" in probed.onnxruntime_providers
    assert probed.torch_cuda == torch.cuda.is_available()


@pytest.fixture(scope="module")
def tiny_artifacts(tmp_path_factory):
    root = tmp_path_factory.mktemp("runners")
    (root / "zoo.yaml").write_text(yaml.safe_dump({"models": [tiny_entry()]}))
    manifest = convert_zoo(load_zoo(root / "zoo.yaml"), RunOptions(out=root / "artifacts"))
    return root / "artifacts", manifest.models["tiny"]


def _cases():
    return [(name, artifact) for name, runner in RUNNERS.items() for artifact in runner.artifacts]


@pytest.mark.parametrize("runtime,artifact", _cases(), ids=[f"{r}-{a}" for r, a in _cases()])
def test_every_runtime_matches_the_reference_on_cpu(tiny_artifacts, runtime, artifact):
    root, record = tiny_artifacts
    batch = np.random.default_rng(0).standard_normal((3, 3, 32, 32)).astype(np.float32)
    reference = RUNNERS["torch"]()
    reference.load(LoadRequest(root / record.artifacts["eager"].path, "cpu", 1))
    runner = RUNNERS[runtime]()
    runner.load(LoadRequest(root / record.artifacts[artifact].path, "cpu", 1))
    out = runner.run(batch)
    assert out.dtype == np.float32 and out.shape == (3, 10)
    np.testing.assert_allclose(out, reference.run(batch), atol=1e-4, rtol=1e-3)
    config = runner.describe()
    assert config["version"]
    if runtime == "paddle-inference":
        assert config["onednn"] and config["ir_optim"] and config["threads"] == 1
    if runtime == "onnxruntime":
        assert config["providers"] == ["CPUExecutionProvider"] and config["graph_optimization"] == "ORT_ENABLE_ALL"


@pytest.mark.skipif("CUDAExecutionProvider" in Availability.probe().onnxruntime_providers,
                    reason="this onnxruntime has CUDA: no fallback to observe")
def test_onnxruntime_fallback_to_cpu_is_detected_not_passed(tiny_artifacts):
    root, record = tiny_artifacts
    runner = RUNNERS["onnxruntime"]()
    with pytest.raises(DeviceUnavailable, match="fell back to CPUExecutionProvider"):
        runner.load(LoadRequest(root / record.artifacts["onnx"].path, "cuda", 1))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")
def test_torch_cuda_matches_cpu(tiny_artifacts):
    root, record = tiny_artifacts
    batch = np.random.default_rng(0).standard_normal((3, 3, 32, 32)).astype(np.float32)
    outputs = {}
    for device in ("cpu", "cuda"):
        runner = RUNNERS["torch"]()
        runner.load(LoadRequest(root / record.artifacts["eager"].path, device, 1))
        outputs[device] = runner.run(batch)
    np.testing.assert_allclose(outputs["cuda"], outputs["cpu"], atol=1e-3, rtol=1e-3)
