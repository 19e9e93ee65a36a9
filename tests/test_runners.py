"""Runners: device availability logic (faked, so it is tested without a GPU), the probe's handling of broken GPU
stacks, fallback detection, and every registered runtime on tiny converted models, single and multi-output."""
from __future__ import annotations

import sys
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import yaml

from converter.core.machine import parse_cpuinfo
from converter.core.vocabulary import RUNTIMES, cell_precision
from converter.pipeline import RunOptions, convert
from converter.zoo import load_zoo
from tests.conftest import cannot_run_here, tiny_entry
from verify.runners import Availability, DeviceUnavailable, LoadRequest, registered_runners
from converter.core.machine import nvidia_gpu_visible

RUNNERS = registered_runners()
# a CPU with every instruction the runtimes ask for (AVX-512, bf16): these tests are about packages and devices,
# whatever CPU runs them (the CPU's own decisions: tests/test_cpu.py)
CAPABLE_CPU = parse_cpuinfo("model name\t: test CPU\nflags\t: avx2 avx512f avx512_vnni avx512_bf16 amx_bf16 amx_tile\n")
CPU_ONLY = Availability(tvm_cpu=True, cpu=CAPABLE_CPU)  # every CPU package installed (apache-tvm is an extra), no GPU
FULL_GPU = Availability(torch_cuda=True, paddle_cuda=True, paddle_tensorrt=True, tvm_cpu=True, tensorrt_python=True,
                        onnxruntime_providers=("TensorrtExecutionProvider", "CUDAExecutionProvider",
                                               "CPUExecutionProvider"), cpu=CAPABLE_CPU)


def test_every_registered_runtime_has_a_runner_for_its_devices():
    assert set(RUNNERS) == set(RUNTIMES)
    for name, runner in RUNNERS.items():
        for device in RUNTIMES[name].devices:
            assert runner.unavailable(device, FULL_GPU) is None, (name, device)


@pytest.mark.parametrize("runtime", [name for name, spec in RUNTIMES.items() if "cpu" in spec.devices])
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


def _fake_stacks(cuda: bool, providers=("CPUExecutionProvider",), paddle_gpus=0, trt=(0, 0, 0), paddle_raises=False):
    def gpu_count():
        if paddle_raises:
            raise RuntimeError("libcudart.so.12: cannot open shared object file")
        return paddle_gpus

    torch_module = SimpleNamespace(cuda=SimpleNamespace(is_available=lambda: cuda))
    ort = SimpleNamespace(get_available_providers=lambda: list(providers))
    paddle = SimpleNamespace(device=SimpleNamespace(is_compiled_with_cuda=lambda: True,
                                                    cuda=SimpleNamespace(device_count=gpu_count)),
                             inference=SimpleNamespace(get_trt_compile_version=lambda: trt))
    return {"torch": torch_module, "onnxruntime": ort, "paddle": paddle}


def test_probe_reads_each_stack_and_survives_a_broken_one():
    cpu = Availability.probe(**_fake_stacks(cuda=False))
    assert replace(cpu, tvm_cpu=False, tensorrt_python=False) == Availability()  # those two: what pip installed
    gpu = Availability.probe(**_fake_stacks(cuda=True, providers=("CUDAExecutionProvider", "CPUExecutionProvider"),
                                            paddle_gpus=1, trt=(8, 6, 1)))
    assert gpu.torch_cuda and gpu.paddle_cuda and gpu.paddle_tensorrt
    assert gpu.onnxruntime_providers == ("CUDAExecutionProvider", "CPUExecutionProvider")
    # a Paddle GPU build whose CUDA libraries are missing: no Paddle GPU cells, and the rest is still probed
    broken = Availability.probe(**_fake_stacks(cuda=True, paddle_gpus=1, trt=(8, 6, 1), paddle_raises=True))
    assert broken.torch_cuda and not broken.paddle_cuda and not broken.paddle_tensorrt
    # TensorRT compiled in but no GPU visible is not TensorRT available
    assert not Availability.probe(**_fake_stacks(cuda=False, paddle_gpus=0, trt=(8, 6, 1))).paddle_tensorrt


def test_without_a_visible_gpu_the_probe_asks_neither_torch_nor_paddle(monkeypatch):
    """The frameworks' own GPU questions cost their import (2.5 s); with no NVIDIA device node there is nothing to
    find. Stand-ins in sys.modules record whether the probe imported and asked them."""
    stacks = _fake_stacks(cuda=True, paddle_gpus=1)
    asked = []
    stacks["torch"].cuda.is_available = lambda: asked.append("torch") or True
    stacks["paddle"].device.is_compiled_with_cuda = lambda: asked.append("paddle") or True
    monkeypatch.setitem(sys.modules, "torch", stacks["torch"])
    monkeypatch.setitem(sys.modules, "paddle", stacks["paddle"])
    hidden = Availability.probe(onnxruntime=stacks["onnxruntime"], gpu_visible=False)
    assert asked == [] and not hidden.torch_cuda and not hidden.paddle_cuda and hidden.devices == ("cpu",)
    shown = Availability.probe(onnxruntime=stacks["onnxruntime"], gpu_visible=True)
    assert sorted(asked) == ["paddle", "torch"] and shown.torch_cuda and shown.paddle_cuda


def test_a_gpu_is_visible_through_the_drivers_device_nodes_or_its_list_of_gpus(tmp_path):
    node, listed = tmp_path / "nvidiactl", tmp_path / "gpus"
    assert nvidia_gpu_visible("linux", (str(node),), str(listed)) is False
    listed.mkdir()
    assert nvidia_gpu_visible("linux", (str(node),), str(listed)) is False  # the driver loaded, no GPU
    (listed / "0000:01:00.0").mkdir()  # a GPU whose nodes are made on first use
    assert nvidia_gpu_visible("linux", (str(node),), str(listed)) is True
    node.touch()
    assert nvidia_gpu_visible("linux", (str(node),), str(tmp_path / "none")) is True
    assert nvidia_gpu_visible("win32", (str(node),)) is None  # not told this way elsewhere: the frameworks are asked


@pytest.fixture(scope="module")
def tiny_artifacts(tmp_path_factory):
    root = tmp_path_factory.mktemp("runners")
    (root / "zoo.yaml").write_text(yaml.safe_dump({"models": [
        tiny_entry(), tiny_entry("two", arch="tests.tiny_models:two_heads_cnn", outputs=["logits", "embedding"])]}))
    manifest = convert(load_zoo(root / "zoo.yaml"), RunOptions(out=root / "artifacts"))
    return root / "artifacts", manifest


def _cases():
    """Every CPU runtime with every artifact it loads (TensorRT runs on CUDA only: see the GPU test)."""
    return [(name, artifact) for name, spec in RUNTIMES.items() if "cpu" in spec.devices for artifact in spec.artifacts]


def _run(root, record, runtime, artifact, feeds, outputs=("logits",)):
    runner = RUNNERS[runtime]()
    runner.load(LoadRequest(root / record.artifacts[artifact].path, "cpu", 1, ("input",), outputs))
    return runner, runner.run(feeds)


@pytest.mark.parametrize("runtime,artifact", _cases(), ids=[f"{r}-{a}" for r, a in _cases()])
def test_every_runtime_matches_the_reference_on_cpu(tiny_artifacts, runtime, artifact):
    cannot = cannot_run_here(runtime)  # decided from the installed packages and this CPU's flags (test_cpu.py)
    if cannot:
        pytest.skip(cannot)
    root, manifest = tiny_artifacts
    record = manifest.models["tiny"]
    feeds = {"input": np.random.default_rng(0).standard_normal((3, 3, 32, 32)).astype(np.float32)}
    _, reference = _run(root, record, "torch", "eager", feeds)
    runner, out = _run(root, record, runtime, artifact, feeds)
    assert list(out) == ["logits"]
    assert out["logits"].dtype == np.float32 and out["logits"].shape == (3, 10)
    if cell_precision(runtime, artifact) == "fp32":
        np.testing.assert_allclose(out["logits"], reference["logits"], atol=1e-4, rtol=1e-3)
    else:  # fp16, bf16, int8: close, not equal (their budget is the verifier's business)
        got, want = out["logits"].ravel(), reference["logits"].ravel()
        assert got @ want / np.linalg.norm(got) / np.linalg.norm(want) > 0.98
        assert not np.array_equal(got, want)  # it really ran at a reduced precision
    config = runner.describe()
    # timing never mixes precisions unawares: the runner says what it was set to
    assert config["version"] and config["precision"] == RUNTIMES[runtime].precision
    if runtime != "paddle-inference":
        assert config["threads"] == 1  # every runtime at the same, recorded thread count
    if runtime in ("torch", "torchscript"):
        # both torch cells at PyTorch's CPU inference settings alike: an image model in channels-last
        # memory (oneDNN's fast layout), TorchScript frozen; a difference here reads as a runtime's speed
        assert config["memory_format"] == "channels_last" and config["inference_mode"]
        assert config["frozen"] is True if runtime == "torchscript" else "frozen" not in config
    if runtime == "paddle-inference":
        assert config["onednn"] and config["ir_optim"] and config["threads"] == 1
    if runtime == "onnxruntime":
        assert config["providers"] == ["CPUExecutionProvider"] and config["graph_optimization"] == "ORT_ENABLE_ALL"


@pytest.mark.parametrize("runtime,artifact", _cases(), ids=[f"{r}-{a}" for r, a in _cases()])
def test_every_runtime_returns_each_named_output(tiny_artifacts, runtime, artifact):
    """A two-head model (logits, embedding): every runtime returns both under the declared names, each matching
    the reference's own; a swap of the two would change the shapes (10 vs 16 columns)."""
    root, manifest = tiny_artifacts
    record = manifest.models["two"]
    feeds = {"input": np.random.default_rng(1).standard_normal((2, 3, 32, 32)).astype(np.float32)}
    outputs = ("logits", "embedding")
    _, reference = _run(root, record, "torch", "eager", feeds, outputs)
    _, out = _run(root, record, runtime, artifact, feeds, outputs)
    assert sorted(out) == ["embedding", "logits"]
    assert out["logits"].shape == (2, 10) and out["embedding"].shape == (2, 16)
    for name in outputs:
        if cell_precision(runtime, artifact) == "fp32":
            np.testing.assert_allclose(out[name], reference[name], atol=1e-4, rtol=1e-3)
        else:
            got, want = out[name].ravel(), reference[name].ravel()
            assert got @ want / np.linalg.norm(got) / np.linalg.norm(want) > 0.98


def test_onnxruntime_refuses_outputs_the_zoo_does_not_declare(tiny_artifacts):
    from verify.runners import RunnerError

    root, manifest = tiny_artifacts
    runner = RUNNERS["onnxruntime"]()
    with pytest.raises(RunnerError, match=r"outputs are \['logits', 'embedding'\], the zoo declares \['logits'\]"):
        runner.load(LoadRequest(root / manifest.models["two"].artifacts["onnx"].path, "cpu", 1))


@pytest.mark.skipif("CUDAExecutionProvider" in Availability.probe().onnxruntime_providers,
                    reason="this onnxruntime has CUDA: no fallback to observe")
def test_onnxruntime_fallback_to_cpu_is_detected_not_passed(tiny_artifacts):
    root, manifest = tiny_artifacts
    runner = RUNNERS["onnxruntime"]()
    with pytest.raises(DeviceUnavailable, match="fell back to CPUExecutionProvider"):
        runner.load(LoadRequest(root / manifest.models["tiny"].artifacts["onnx"].path, "cuda", 1))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")
def test_torch_cuda_matches_cpu(tiny_artifacts):
    root, manifest = tiny_artifacts
    record = manifest.models["tiny"]
    feeds = {"input": np.random.default_rng(0).standard_normal((3, 3, 32, 32)).astype(np.float32)}
    outputs = {}
    for device in ("cpu", "cuda"):
        runner = RUNNERS["torch"]()
        runner.load(LoadRequest(root / record.artifacts["eager"].path, device, 1))
        outputs[device] = runner.run(feeds)["logits"]
    np.testing.assert_allclose(outputs["cuda"], outputs["cpu"], atol=1e-3, rtol=1e-3)


@pytest.mark.parametrize("availability,devices", [
    (Availability(), ("cpu",)),
    (Availability(torch_cuda=True), ("cpu", "cuda")),
    (Availability(onnxruntime_providers=("TensorrtExecutionProvider", "CUDAExecutionProvider")),
     ("cpu", "cuda", "tensorrt")),
    (Availability(tensorrt_python=True), ("cpu",)),  # TensorRT's package without a GPU runs nothing
    (Availability(paddle_cuda=True, paddle_tensorrt=True), ("cpu", "cuda", "tensorrt")),
])
def test_the_devices_present_are_what_some_runtime_finds(availability, devices):
    assert availability.devices == devices  # what --devices defaults to


def test_paddle_bf16_asks_paddle_before_it_runs(tiny_artifacts, monkeypatch):
    """Paddle's own capability query at load: a CPU whose flags were misread (or described with instructions it
    lacks) is still a SKIP with the reason, never a crash in oneDNN nor an fp32 figure under a bf16 name."""
    from paddle.base import core

    from verify.runners import DeviceUnavailable

    root, manifest = tiny_artifacts
    monkeypatch.setattr(core, "supports_bfloat16_fast_performance", lambda: False)
    with pytest.raises(DeviceUnavailable, match="Paddle says this CPU has no bf16 instructions"):
        RUNNERS["paddle-inference-bf16"]().load(
            LoadRequest(root / manifest.models["tiny"].artifacts["paddle"].path, "cpu", 1))


def test_paddle_falls_back_to_plain_kernels_in_fp32_only(monkeypatch):
    """Without oneDNN Paddle runs fp32 kernels: an fp32 cell may fall back (recorded), a bf16 cell must not, or
    an fp32 figure would be reported under the bf16 name."""
    from verify.runners import RunnerError

    fp32, bf16 = RUNNERS["paddle-inference"](), RUNNERS["paddle-inference-bf16"]()
    for runner in (fp32, bf16):
        monkeypatch.setattr(runner, "_create_predictor", lambda onednn: None)
    failure = RuntimeError("input's second dimension is 301056")
    assert fp32._without_onednn(failure, lambda: "ran") == "ran"
    assert fp32.onednn_fallback == "input's second dimension is 301056"
    with pytest.raises(RunnerError, match="only they run bf16: input's second dimension is 301056"):
        bf16._without_onednn(failure, lambda: "ran")
    assert bf16.onednn_fallback is None
