"""PyTorch eager (the reference) and TorchScript."""
from __future__ import annotations

import warnings

import numpy as np
import torch

from converter.exporters.eager import load_reference

from .base import Availability, LoadRequest, Runner, RunnerError

TORCH_DEVICES = {"cpu": "cpu", "cuda": "cuda"}


class _TorchRunner(Runner):
    devices = ("cpu", "cuda")

    @classmethod
    def unavailable(cls, device: str, availability: Availability) -> str | None:
        if device == "cuda" and not availability.torch_cuda:
            return "torch: CUDA is not available (no GPU, or a CPU-only build)"
        return None

    def load(self, request: LoadRequest) -> None:
        self.device = torch.device(TORCH_DEVICES[request.device])
        torch.set_num_threads(request.threads)
        self.module = self._load_module(request).to(self.device).eval()

    def _load_module(self, request: LoadRequest) -> torch.nn.Module:
        raise NotImplementedError

    def run(self, batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            out = self.module(torch.from_numpy(batch).to(self.device))
        if not isinstance(out, torch.Tensor):
            raise RunnerError(f"the module returned {type(out).__name__}, expected one tensor of logits")
        return out.cpu().numpy()

    def describe(self) -> dict:
        info = {"version": torch.__version__, "device": str(self.device), "threads": torch.get_num_threads()}
        if self.device.type == "cuda":
            info["gpu"] = torch.cuda.get_device_name(self.device)
        return info


class TorchEagerRunner(_TorchRunner):
    name = "torch"
    artifacts = ("eager",)

    def _load_module(self, request: LoadRequest) -> torch.nn.Module:
        return load_reference(request.path.parent, trust_pickle=request.trust_pickle)


class TorchScriptRunner(_TorchRunner):
    name = "torchscript"
    artifacts = ("torchscript",)

    def _load_module(self, request: LoadRequest) -> torch.nn.Module:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # "torch.jit.load is deprecated": it is what we verify
            return torch.jit.load(str(request.path), map_location="cpu")
