"""PyTorch eager (the reference) and TorchScript."""
from __future__ import annotations

import warnings

import torch

from converter.core.outputs import named_outputs
from converter.core.reference import load_reference

from .base import Availability, Feeds, LoadRequest, Runner

TORCH_DEVICES = {"cpu": "cpu", "cuda": "cuda"}


class _TorchRunner(Runner):
    @classmethod
    def unavailable(cls, device: str, availability: Availability) -> str | None:
        if device == "cuda" and not availability.torch_cuda:
            return "torch: CUDA is not available (no GPU, or a CPU-only build)"
        return None

    def load(self, request: LoadRequest) -> None:
        self.request = request
        self.device = torch.device(TORCH_DEVICES[request.device])
        torch.set_num_threads(request.threads)
        self.module = self._load_module(request).to(self.device).eval()

    def _load_module(self, request: LoadRequest) -> torch.nn.Module:
        raise NotImplementedError

    def run(self, feeds: Feeds) -> Feeds:
        tensors = [torch.from_numpy(feeds[name]).to(self.device) for name in self.request.inputs]
        with torch.inference_mode():
            return named_outputs(self.module(*tensors), self.request.outputs)

    def describe(self) -> dict:
        info = {"version": torch.__version__, "device": str(self.device), "threads": torch.get_num_threads()}
        if self.device.type == "cuda":
            info["gpu"] = torch.cuda.get_device_name(self.device)
        return info


class TorchEagerRunner(_TorchRunner):
    def _load_module(self, request: LoadRequest) -> torch.nn.Module:
        return load_reference(request.path.parent, trust_pickle=request.trust_pickle)


class TorchScriptRunner(_TorchRunner):
    def _load_module(self, request: LoadRequest) -> torch.nn.Module:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # "torch.jit.load is deprecated": it is what we verify
            return torch.jit.load(str(request.path), map_location="cpu")
