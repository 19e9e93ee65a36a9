"""OpenVINO on the ONNX models and on its own IR: CPU, fp32 pinned (see converter.core.openvino_cpu), threads =
the run's threads. A single image runs on a model compiled with the LATENCY hint; a batch runs on one compiled
with the THROUGHPUT hint, split over the number of requests OpenVINO says keeps its streams busy, all in flight
at once (its documented way to reach throughput): the batch figure is that throughput."""
from __future__ import annotations

import numpy as np

from converter.core.openvino_cpu import PRECISION, NotFp32, compile_for_cpu, openvino

from .base import Availability, DeviceUnavailable, Feeds, LoadRequest, Runner, RunnerError


def port_names(ports, declared: tuple[str, ...] = ()) -> list[str]:
    """Each port's name: the declared one where the port carries it among its tensor names (a converted graph
    can give a tensor several, e.g. an fp16 model's input and the cast that reads it), else any of them."""
    return [next((name for name in declared if name in port.get_names()), port.get_any_name()) for port in ports]


def split_batch(size: int, parts: int) -> list[slice]:
    """Contiguous slices of a batch of `size` over at most `parts` requests, none empty."""
    bounds = np.linspace(0, size, min(parts, size) + 1).round().astype(int)
    return [slice(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]


class OpenVinoRunner(Runner):
    precision = PRECISION  # the inference precision pinned

    @classmethod
    def unavailable(cls, device: str, availability: Availability) -> str | None:
        return None if availability.openvino_cpu else "openvino is not installed (pip install openvino)"

    def load(self, request: LoadRequest) -> None:
        if request.path.suffix == ".onnx":
            from .onnxruntime_runner import check_external_data

            check_external_data(request.path)
        try:
            self.latency = compile_for_cpu(str(request.path), request.threads, "LATENCY", self.precision)
            self.throughput = compile_for_cpu(str(request.path), request.threads, "THROUGHPUT", self.precision)
        except NotFp32 as exc:  # never an fp32 figure from a cell that ran in another precision
            raise RunnerError(str(exc)) from None
        for kind, found, declared in (("inputs", port_names(self.latency.inputs, request.inputs), request.inputs),
                                      ("outputs", port_names(self.latency.outputs, request.outputs),
                                       request.outputs)):
            if sorted(found) != sorted(declared):
                raise RunnerError(f"the model's {kind} are {found}, the zoo declares {list(declared)}")
        self.single = self.latency.create_infer_request()
        self.requests = [self.throughput.create_infer_request()
                         for _ in range(int(self.throughput.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))]
        self.names = port_names(self.latency.outputs, request.outputs)

    def run(self, feeds: Feeds) -> Feeds:
        size = len(next(iter(feeds.values())))
        if size == 1:
            results = self.single.infer(feeds)
            # the request reuses its output tensors on the next call: copy
            return {name: np.array(results[port], copy=True) for name, port in zip(self.names, self.latency.outputs)}
        parts = split_batch(size, len(self.requests))
        for request, part in zip(self.requests, parts):
            request.start_async({name: np.ascontiguousarray(array[part]) for name, array in feeds.items()})
        for request in self.requests[:len(parts)]:
            request.wait()
        return {name: np.concatenate([np.array(request.get_output_tensor(index).data, copy=True)
                                      for request in self.requests[:len(parts)]])
                for index, name in enumerate(self.names)}

    def describe(self) -> dict:
        ov = openvino()

        def hint(compiled) -> str:
            return str(compiled.get_property("PERFORMANCE_HINT")).split(".")[-1]

        return {"version": ov.get_version().split("-")[0], "device": "CPU",
                "precision": {"f32": "fp32", "bf16": "bf16"}[self.precision],
                "inference_precision": f"{self.precision} (pinned)",
                "performance_hint": f"{hint(self.latency)} for batch 1, {hint(self.throughput)} for larger batches",
                "threads": int(self.latency.get_property("INFERENCE_NUM_THREADS")),
                "throughput_streams": int(self.throughput.get_property("NUM_STREAMS")),
                "throughput_requests": len(self.requests)}


class OpenVinoBf16Runner(OpenVinoRunner):
    """OpenVINO with its inference precision pinned to bf16. Native on CPUs with AVX-512 BF16 or AMX; OpenVINO
    emulates it on other AVX-512 CPUs (slower than fp32) and compiles in fp32 on CPUs without AVX-512, where the
    cell is skipped rather than reported as bf16."""

    precision = "bf16"

    @classmethod
    def unavailable(cls, device: str, availability: Availability) -> str | None:
        cpu = availability.cpu
        if cpu.known and not (cpu.avx512 or cpu.bf16):
            return (f"OpenVINO runs bf16 only on CPUs with AVX-512 or bf16 instructions; this CPU ({cpu.model}) "
                    "has neither, so it would run the cell in fp32")
        return super().unavailable(device, availability)

    def load(self, request: LoadRequest) -> None:
        ov = openvino()

        capabilities = ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
        if "BF16" not in capabilities:  # OpenVINO's own word on this CPU
            raise DeviceUnavailable(f"OpenVINO's CPU plugin does not offer bf16 on this CPU (its capabilities: "
                                    f"{', '.join(capabilities)})")
        super().load(request)
