"""Runtimes registered by name. Adding one is a module implementing Runner and a line here."""
from __future__ import annotations

from .base import Availability, DeviceUnavailable, LoadRequest, Runner, RunnerError
from .onnxruntime_runner import OnnxRuntimeRunner
from .paddle_runners import PaddleInferenceRunner, PaddleJitRunner
from .torch_runners import TorchEagerRunner, TorchScriptRunner

RUNNERS: dict[str, type[Runner]] = {
    runner.name: runner
    for runner in (TorchEagerRunner, TorchScriptRunner, OnnxRuntimeRunner, PaddleInferenceRunner, PaddleJitRunner)
}
REFERENCE = ("torch", "eager", "cpu")  # runtime, artifact, device: eager PyTorch, CPU, float32

__all__ = ["RUNNERS", "REFERENCE", "Availability", "DeviceUnavailable", "LoadRequest", "Runner", "RunnerError"]
