"""TensorRT on its own engine (built on this GPU by the converter, strongly typed: fp32 with TF32 off, fp16 or
QDQ int8 as its ONNX declared), on CUDA."""
from __future__ import annotations

from converter.core.outputs import named_outputs

from .base import Availability, DeviceUnavailable, Feeds, LoadRequest, Runner, RunnerError


class TensorRtRunner(Runner):
    @classmethod
    def unavailable(cls, device: str, availability: Availability) -> str | None:
        if not availability.tensorrt_python:
            return "TensorRT is not installed (pip install '.[gpu]' on a CUDA machine)"
        if not availability.torch_cuda:
            return "tensorrt: no CUDA GPU visible"
        return None

    def load(self, request: LoadRequest) -> None:
        import torch

        from converter.core.tensorrt_session import EngineSession

        if not torch.cuda.is_available():
            raise DeviceUnavailable("tensorrt: no CUDA GPU visible")
        try:
            self.session = EngineSession(request.path, list(request.outputs))
        except RuntimeError as exc:
            raise RunnerError(str(exc)) from None
        self.request = request

    def run(self, feeds: Feeds) -> Feeds:
        return named_outputs(self.session.run({name: feeds[name] for name in self.request.inputs}),
                             self.request.outputs)

    def describe(self) -> dict:
        import tensorrt as trt
        import torch

        return {"version": trt.__version__, "device": torch.cuda.get_device_name(0),
                "typing": "strong (each layer in the type its ONNX declares)", "tf32": False, "api": "execute_async_v3"}
