"""The one interface every runtime implements, and what the machine offers them."""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from converter.core.errors import WorkbenchError
from converter.core.machine import CpuFeatures, cpu_features, nvidia_gpu_visible
from converter.core.outputs import Feeds  # the runners import it from here


class RunnerError(WorkbenchError):
    """A runtime could not load or run an artifact."""


class DeviceUnavailable(RunnerError):
    """The requested device cannot run the cell here (missing, silently replaced by the CPU, or without the
    instructions the cell's precision needs): a SKIP with the reason, not a disagreement between backends."""


@dataclass(frozen=True)
class Availability:
    """What GPU support this machine and these packages have, and which instructions its CPU has; probed once,
    passed in (tests fake it)."""

    torch_cuda: bool = False
    onnxruntime_providers: tuple[str, ...] = ("CPUExecutionProvider",)
    paddle_cuda: bool = False
    paddle_tensorrt: bool = False
    openvino_cpu: bool = True  # the openvino package (a pinned dependency) is installed; it runs on any x86 or ARM CPU
    tvm_cpu: bool = False  # apache-tvm (the optional `tvm` extra) is installed
    tensorrt_python: bool = False  # TensorRT's Python package (the `gpu` extra) is installed
    cpu: CpuFeatures = field(default_factory=cpu_features)  # this machine's CPU unless a test fakes another

    @property
    def devices(self) -> tuple[str, ...]:
        """The devices some installed runtime can use here: the CPU, and a CUDA GPU and TensorRT when present
        (what --devices defaults to)."""
        cuda = self.torch_cuda or self.paddle_cuda or "CUDAExecutionProvider" in self.onnxruntime_providers
        tensorrt = (self.paddle_tensorrt or "TensorrtExecutionProvider" in self.onnxruntime_providers
                    or (self.tensorrt_python and self.torch_cuda))
        return ("cpu",) + (("cuda",) if cuda else ()) + (("tensorrt",) if tensorrt else ())

    @classmethod
    def probe(cls, torch: ModuleType | None = None, onnxruntime: ModuleType | None = None,
              paddle: ModuleType | None = None, gpu_visible: bool | None = None) -> "Availability":
        """Ask the installed packages (or the ones passed in). A GPU stack that raises while being asked means
        no GPU cells, never a crash; TensorRT through Paddle needs Paddle's CUDA first. Where the machine shows
        no NVIDIA GPU at all (`gpu_visible`; None: its device nodes, see nvidia_gpu_visible) torch and Paddle
        are not imported to ask (2.5 s of a run that may need neither)."""
        visible = nvidia_gpu_visible() if gpu_visible is None else gpu_visible
        ask = visible is not False
        if onnxruntime is None:
            import onnxruntime
        paddle_cuda = paddle_trt = False
        try:
            if paddle is None and ask:
                import paddle
            if paddle is not None:
                paddle_cuda = bool(paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0)
            if paddle_cuda:
                paddle_trt = tuple(paddle.inference.get_trt_compile_version()) != (0, 0, 0)
        except Exception:
            paddle_cuda = paddle_trt = False
        try:
            if torch is None and ask:
                import torch
            torch_cuda = torch is not None and bool(torch.cuda.is_available())
        except Exception:
            torch_cuda = False
        import importlib.util

        return cls(torch_cuda=torch_cuda, onnxruntime_providers=tuple(onnxruntime.get_available_providers()),
                   paddle_cuda=paddle_cuda, paddle_tensorrt=bool(paddle_trt),
                   openvino_cpu=importlib.util.find_spec("openvino") is not None,
                   tvm_cpu=importlib.util.find_spec("tvm") is not None,
                   tensorrt_python=importlib.util.find_spec("tensorrt") is not None)


@dataclass(frozen=True)
class LoadRequest:
    path: Path  # the artifact's main file
    device: str
    threads: int
    inputs: tuple[str, ...] = ("input",)  # the model's input names, in order
    outputs: tuple[str, ...] = ("logits",)  # the names the zoo declares for its outputs, in order
    trust_pickle: bool = False


class Runner(ABC):
    """Loads one artifact on one device and runs it on named inputs. Its name, the artifacts it loads and the
    devices it supports are registered in converter.core.vocabulary."""

    @classmethod
    @abstractmethod
    def unavailable(cls, device: str, availability: Availability) -> str | None:
        """Why `device` cannot be used here, or None."""

    @abstractmethod
    def load(self, request: LoadRequest) -> None: ...

    @abstractmethod
    def run(self, feeds: Feeds) -> Feeds:
        """{input name: float32 array} in; {declared output name: array} out, on the host (so GPU timing
        includes the synchronisation)."""

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """The effective configuration: version, device, providers, threads, optimisations."""

    def noise_variants(self, feeds: Feeds) -> dict[str, Feeds | str]:
        """The same samples computed otherwise (in float64, on another number of threads, in another order), each
        by a name, or the reason it could not run: what the reference's noise floor is measured from
        (verify.judge.noise). A runtime that cannot vary its arithmetic has none."""
        return {}
