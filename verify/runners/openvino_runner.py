"""OpenVINO on the ONNX models and on its own IR: CPU, fp32 pinned (see converter.core.openvino_cpu), the
LATENCY performance hint, threads = the run's threads."""
from __future__ import annotations

import numpy as np

from converter.core.openvino_cpu import PERFORMANCE_HINT, PRECISION, NotFp32, compile_for_cpu

from .base import Availability, Feeds, LoadRequest, Runner, RunnerError


def port_names(ports) -> list[str]:
    return [port.get_any_name() for port in ports]


class OpenVinoRunner(Runner):
    @classmethod
    def unavailable(cls, device: str, availability: Availability) -> str | None:
        return None if availability.openvino_cpu else "openvino is not installed (pip install openvino)"

    def load(self, request: LoadRequest) -> None:
        if request.path.suffix == ".onnx":
            from .onnxruntime_runner import check_external_data

            check_external_data(request.path)
        try:
            self.compiled = compile_for_cpu(str(request.path), request.threads)
        except NotFp32 as exc:  # never an fp32 figure from a cell that ran in another precision
            raise RunnerError(str(exc)) from None
        for kind, found, declared in (("inputs", port_names(self.compiled.inputs), request.inputs),
                                      ("outputs", port_names(self.compiled.outputs), request.outputs)):
            if sorted(found) != sorted(declared):
                raise RunnerError(f"the model's {kind} are {found}, the zoo declares {list(declared)}")
        self.request = self.compiled.create_infer_request()
        self.ports = dict(zip(port_names(self.compiled.outputs), self.compiled.outputs))

    def run(self, feeds: Feeds) -> Feeds:
        results = self.request.infer(feeds)
        # the request reuses its output tensors on the next call: copy
        return {name: np.array(results[port], copy=True) for name, port in self.ports.items()}

    def describe(self) -> dict:
        import openvino as ov

        compiled = self.compiled
        return {"version": ov.get_version().split("-")[0], "device": "CPU", "precision": "fp32",
                "inference_precision": f"{PRECISION} (pinned)",
                "performance_hint": str(compiled.get_property("PERFORMANCE_HINT")).split(".")[-1] or PERFORMANCE_HINT,
                "threads": int(compiled.get_property("INFERENCE_NUM_THREADS")),
                "streams": int(compiled.get_property("NUM_STREAMS"))}
