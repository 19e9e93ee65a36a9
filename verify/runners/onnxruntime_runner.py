"""ONNX Runtime on the raw and the simplified ONNX model: CPU, CUDA and TensorRT execution providers."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .base import Availability, DeviceUnavailable, Feeds, LoadRequest, Runner, RunnerError

PROVIDERS = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}


class OnnxRuntimeRunner(Runner):
    @classmethod
    def unavailable(cls, device: str, availability: Availability) -> str | None:
        wanted = PROVIDERS[device][0]
        if wanted not in availability.onnxruntime_providers:
            return f"onnxruntime has no {wanted} (available: {', '.join(availability.onnxruntime_providers)})"
        return None

    def load(self, request: LoadRequest) -> None:
        import onnxruntime as ort

        check_external_data(request.path)
        options = ort.SessionOptions()
        # ONNX Runtime's documented CPU setup: every graph optimisation, one intra-op pool of `threads`,
        # sequential execution (a CNN has no parallel branches worth a second pool), the memory arena on
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = request.threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.enable_cpu_mem_arena = True
        options.log_severity_level = 4  # its errors arrive as exceptions, reported with the cell: not on stderr too
        self.session = ort.InferenceSession(str(request.path), sess_options=options,
                                            providers=PROVIDERS[request.device])
        active = self.session.get_providers()
        # ONNX Runtime quietly falls back to the CPU when a GPU provider cannot start.
        if active[0] != PROVIDERS[request.device][0]:
            raise DeviceUnavailable(f"onnxruntime fell back to {active[0]} instead of {PROVIDERS[request.device][0]}")
        # The exporter names the graph's inputs and outputs as the zoo declares them.
        for kind, found, declared in (("inputs", self.session.get_inputs(), request.inputs),
                                      ("outputs", self.session.get_outputs(), request.outputs)):
            if sorted(o.name for o in found) != sorted(declared):
                raise RunnerError(f"the model's {kind} are {[o.name for o in found]}, the zoo declares {list(declared)}")
        self.outputs = list(request.outputs)
        self.threads = request.threads

    def run(self, feeds: Feeds) -> Feeds:
        return {name: np.asarray(value) for name, value in zip(self.outputs, self.session.run(self.outputs, feeds))}

    def describe(self) -> dict:
        import onnxruntime as ort

        return {"version": ort.__version__, "providers": self.session.get_providers(), "precision": "fp32",
                "graph_optimization": "ORT_ENABLE_ALL", "threads": self.threads, "execution": "sequential",
                "memory_arena": True}


def check_external_data(model_path: Path) -> None:
    """Tensors stored outside the .onnx file may only come from inside the model's own folder: a location
    that escapes it (../, an absolute path, a symlink out) would let a model file read any file."""
    import onnx
    from onnx.external_data_helper import uses_external_data

    model = onnx.load(str(model_path), load_external_data=False)
    folder = model_path.parent.resolve()
    tensors = list(model.graph.initializer) + [
        attr.t for node in model.graph.node for attr in node.attribute if attr.HasField("t")]
    for tensor in tensors:
        if not uses_external_data(tensor):
            continue
        location = next((e.value for e in tensor.external_data if e.key == "location"), "")
        target = (folder / location).resolve()
        if os.path.isabs(location) or not target.is_relative_to(folder):
            raise RunnerError(f"external data of tensor '{tensor.name}' at '{location}' is outside the "
                              f"artifact folder: refused")
