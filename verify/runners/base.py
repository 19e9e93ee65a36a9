"""The one interface every runtime implements, and what the machine offers them."""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from converter.errors import WorkbenchError


class RunnerError(WorkbenchError):
    """A runtime could not load or run an artifact."""


class DeviceUnavailable(RunnerError):
    """The requested device is not really in use (missing, or silently replaced by the CPU): a SKIP."""


@dataclass(frozen=True)
class Availability:
    """What GPU support this machine and these packages have; probed once, passed in (tests fake it)."""

    torch_cuda: bool = False
    onnxruntime_providers: tuple[str, ...] = ("CPUExecutionProvider",)
    paddle_cuda: bool = False
    paddle_tensorrt: bool = False

    @classmethod
    def probe(cls) -> "Availability":
        import onnxruntime
        import torch

        paddle_cuda = paddle_trt = False
        try:
            import paddle

            paddle_cuda = paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0
            if paddle_cuda:
                import paddle.inference

                paddle_trt = tuple(paddle.inference.get_trt_compile_version()) != (0, 0, 0)
        except Exception:  # a broken GPU stack means no GPU cells, not a crash
            pass
        return cls(torch_cuda=torch.cuda.is_available(),
                   onnxruntime_providers=tuple(onnxruntime.get_available_providers()),
                   paddle_cuda=bool(paddle_cuda), paddle_tensorrt=bool(paddle_trt))


@dataclass(frozen=True)
class LoadRequest:
    path: Path  # the artifact's main file
    device: str
    threads: int
    input_name: str = "input"
    trust_pickle: bool = False


class Runner(ABC):
    name: ClassVar[str]
    artifacts: ClassVar[tuple[str, ...]]  # the artifact kinds this runtime loads
    devices: ClassVar[tuple[str, ...]]

    @classmethod
    @abstractmethod
    def unavailable(cls, device: str, availability: Availability) -> str | None:
        """Why `device` cannot be used here, or None."""

    @abstractmethod
    def load(self, request: LoadRequest) -> None: ...

    @abstractmethod
    def run(self, batch: np.ndarray) -> np.ndarray:
        """float32 NCHW in, float32 logits out, on the host (so GPU timing includes synchronisation)."""

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """The effective configuration: version, device, providers, threads, optimisations."""
