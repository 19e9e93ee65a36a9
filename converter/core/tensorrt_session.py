"""A TensorRT engine loaded on the GPU, run on named host arrays through torch's CUDA tensors (torch is already
here; no pycuda). Used by the converter's check of a fresh engine and by the verifier's tensorrt runtime."""
from __future__ import annotations

from pathlib import Path

import numpy as np


class EngineSession:
    def __init__(self, path: Path, outputs: list[str]):
        import tensorrt as trt
        import torch

        self.torch = torch
        self.runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = self.runtime.deserialize_cuda_engine(Path(path).read_bytes())
        if self.engine is None:
            raise RuntimeError(f"{path}: TensorRT could not deserialise the engine (built by another TensorRT "
                               f"version or for another GPU?)")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = list(outputs)
        self.types = {n: np.dtype(trt.nptype(self.engine.get_tensor_dtype(n))) for n in names}
        missing = [n for n in self.outputs if n not in names]
        if missing:
            raise RuntimeError(f"the engine has no output(s) {missing} (its tensors: {names})")

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        torch = self.torch
        stream = torch.cuda.current_stream()
        keep = []
        for name in self.inputs:  # each in the engine's own type (token ids are integers)
            tensor = torch.from_numpy(np.ascontiguousarray(feeds[name], dtype=self.types[name])).cuda()
            keep.append(tensor)
            self.context.set_input_shape(name, tuple(tensor.shape))
            self.context.set_tensor_address(name, tensor.data_ptr())
        results = []
        for name in self.outputs:
            dtype = torch.from_numpy(np.empty(0, self.types[name])).dtype
            out = torch.empty(tuple(self.context.get_tensor_shape(name)), dtype=dtype, device="cuda")
            self.context.set_tensor_address(name, out.data_ptr())
            results.append(out)
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise RuntimeError("TensorRT's execute_async_v3 failed")
        return [out.cpu().numpy() for out in results]  # .cpu() synchronises with the stream
