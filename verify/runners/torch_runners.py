"""PyTorch eager (the reference), TorchScript and torch.export programs, at PyTorch's documented CPU inference settings: inference mode,
threads set in the worker, channels-last memory for image models (oneDNN's fast convolution layout: ResNet18
at batch 8 on 2 cores, 192 -> 147 ms eager), and TorchScript frozen (weights folded in as constants).
None of these changes the precision: the cells stay float32."""
from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import numpy as np

from converter.core.outputs import named_outputs

from .base import Availability, Feeds, LoadRequest, Runner

if TYPE_CHECKING:  # imported in the methods, which run in the cell's worker: the verifier's own process plans
    import torch  # and compares without torch (a second and a half on every run)

TORCH_DEVICES = {"cpu": "cpu", "cuda": "cuda"}


class _TorchRunner(Runner):
    @classmethod
    def unavailable(cls, device: str, availability: Availability) -> str | None:
        if device == "cuda" and not availability.torch_cuda:
            return "torch: CUDA is not available (no GPU, or a CPU-only build)"
        return None

    channels_last = False  # decided at the first call, from the input's rank (4: images)

    def load(self, request: LoadRequest) -> None:
        import torch

        self.request = request
        self.device = torch.device(TORCH_DEVICES[request.device])
        torch.set_num_threads(request.threads)
        self.module = self._in_eval_mode(self._load_module(request).to(self.device))
        self._formatted = False

    def _in_eval_mode(self, module: torch.nn.Module) -> torch.nn.Module:
        return module.eval()

    def _load_module(self, request: LoadRequest) -> torch.nn.Module:
        raise NotImplementedError

    def run(self, feeds: Feeds) -> Feeds:
        import torch

        tensors = [torch.from_numpy(feeds[name]).to(self.device) for name in self.request.inputs]
        if not self._formatted:
            self._formatted = True
            self.channels_last = all(t.dim() == 4 for t in tensors)
            if self.channels_last:
                self.module = self.module.to(memory_format=torch.channels_last)
            self.module = self._optimise(self.module)
        if self.channels_last:
            tensors = [t.contiguous(memory_format=torch.channels_last) for t in tensors]
        with torch.inference_mode():
            return named_outputs(self.module(*tensors), self.request.outputs)

    def _optimise(self, module: torch.nn.Module) -> torch.nn.Module:
        return module

    def noise_variants(self, feeds: Feeds) -> dict[str, Feeds | str]:
        import torch

        from converter.core.errors import one_line

        variants: dict[str, Feeds | str] = {}
        threads = torch.get_num_threads()
        other = 1 if threads > 1 else 2  # another split of every reduction
        torch.set_num_threads(other)
        try:
            variants[f"threads={other}"] = self.run(feeds)
        except Exception as exc:
            variants[f"threads={other}"] = one_line(exc)
        finally:
            torch.set_num_threads(threads)
        try:  # each sample's neighbours in the batch change
            backwards = self.run({name: np.ascontiguousarray(array[::-1]) for name, array in feeds.items()})
            variants["reversed"] = {name: np.ascontiguousarray(array[::-1]) for name, array in backwards.items()}
        except Exception as exc:
            variants["reversed"] = one_line(exc)
        variants["float64"] = self._in_float64(feeds)
        return variants

    def _in_float64(self, feeds: Feeds) -> Feeds | str:
        return "not a module whose weights can be cast"

    def describe(self) -> dict:
        import torch

        info = {"version": torch.__version__, "device": str(self.device), "threads": torch.get_num_threads(),
                "precision": "fp32", "inference_mode": True,
                "memory_format": "channels_last" if self.channels_last else "contiguous",
                "onednn": torch.backends.mkldnn.is_available()}
        if self.device.type == "cuda":
            info["gpu"] = torch.cuda.get_device_name(self.device)
        return info


class TorchEagerRunner(_TorchRunner):
    def _load_module(self, request: LoadRequest) -> torch.nn.Module:
        from converter.core.reference import load_reference

        return load_reference(request.path.parent, trust_pickle=request.trust_pickle)

    def _in_float64(self, feeds: Feeds) -> Feeds | str:
        """A float64 copy of the model on float64 inputs (integer inputs as they are)."""
        import copy

        import torch

        from converter.core.errors import one_line

        try:
            module = copy.deepcopy(self.module).double()
            tensors = [torch.from_numpy(feeds[name]).to(self.device) for name in self.request.inputs]
            tensors = [t.double() if t.is_floating_point() else t for t in tensors]
            if self.channels_last:
                tensors = [t.contiguous(memory_format=torch.channels_last) for t in tensors]
            with torch.inference_mode():
                return named_outputs(module(*tensors), self.request.outputs)
        except Exception as exc:  # a model that makes float32 tensors of its own in forward
            return one_line(exc)


class TorchScriptRunner(_TorchRunner):
    def _load_module(self, request: LoadRequest) -> torch.nn.Module:
        import torch

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # "torch.jit.load is deprecated": it is what we verify
            return torch.jit.load(str(request.path), map_location="cpu")

    frozen: bool | str = False

    def _optimise(self, module: torch.nn.Module) -> torch.nn.Module:
        import torch

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # "torch.jit.freeze is deprecated"
                frozen = torch.jit.freeze(module)  # weights become constants the graph optimiser can fold
        except Exception as exc:  # a module freezing cannot handle runs as loaded; describe() says why
            self.frozen = f"no ({type(exc).__name__})"
            return module
        self.frozen = True
        return frozen

    def describe(self) -> dict:
        return {**super().describe(), "frozen": self.frozen}


class TorchExportRunner(_TorchRunner):
    """An ExportedProgram (`torch.export.load(...).module()`), the artifact of torch.export."""

    def _load_module(self, request: LoadRequest) -> torch.nn.Module:
        from torch.export import load

        return load(str(request.path)).module()

    def _in_eval_mode(self, module: torch.nn.Module) -> torch.nn.Module:
        return module  # exported in eval mode; the program's module refuses eval() ("not supported yet")


class TorchBf16Runner(TorchEagerRunner):
    """The eager model under CPU autocast to bfloat16 (matmuls and convolutions in bf16, as PyTorch's CPU autocast
    list says); the outputs come back as float32."""

    def run(self, feeds: Feeds) -> Feeds:
        import torch

        with torch.autocast("cpu", dtype=torch.bfloat16):
            outputs = super().run(feeds)
        return {name: array.astype("float32", copy=False) for name, array in outputs.items()}

    def describe(self) -> dict:
        return {**super().describe(), "precision": "bf16", "autocast": "cpu, torch.bfloat16"}
