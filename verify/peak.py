"""What the machine can do: the best of a few large fp32 kernels that the runtimes themselves use, measured once
per verify run. A cell's % of peak is its achieved GFLOP/s over this. The peak must come from the best kernel
on the machine, or a runtime whose kernel beats the one measured reads above 100%: on an AMD EPYC (Zen 4,
2 cores) ONNX Runtime's 3x3 convolution reached 215 GFLOP/s where the best 2048x2048 matmul (numpy's
OpenBLAS) reached 190 and ONNX Runtime's own MatMul 170, so convolution is among the kernels measured."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

CALLS = 10
MATMUL = 2048  # square matrices
CONV = (8, 256, 28)  # batch, channels in and out, height and width: a ResNet stage-3 3x3 convolution

Kernel = Callable[[int], tuple[Callable[[], object], float]]  # threads -> (one call, its floating-point operations)


@dataclass(frozen=True)
class PeakJob:
    kernel: str  # a name in KERNELS: each runs in a worker of its own, so no idle thread pool of another
    threads: int  # runtime spins beside it
    calls: int = CALLS


def run_peak_job(job: PeakJob) -> float:
    """GFLOP/s of one kernel: its fastest of `calls` after one warm-up (a peak is what the machine can do;
    a call slowed by something else on the machine says nothing about that)."""
    call, flops = KERNELS[job.kernel](job.threads)
    call()
    seconds = []
    for _ in range(job.calls):
        started = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - started)
    return round(flops / min(seconds) / 1e9, 1)


def measure_peak(threads: int, kernels: tuple[str, ...] | None = None) -> dict[str, float]:
    """GFLOP/s of every kernel that runs here (a runtime that is not installed has none to measure)."""
    from converter.core.isolation import run_isolated

    found = {}
    for name in kernels or tuple(KERNELS):
        outcome = run_isolated(run_peak_job, PeakJob(name, threads))
        if outcome.ok:
            found[name] = outcome.value
    return found


def _matrices(count: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.standard_normal((MATMUL, MATMUL), dtype=np.float32) for _ in range(count)]


def _onnxruntime_session(nodes, inputs: dict[str, list[int]], output: list[int], initializers, threads: int):
    import onnxruntime as ort
    from onnx import TensorProto, helper

    graph = helper.make_graph(nodes, "peak",
                              [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs.items()],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, output)], initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    return ort.InferenceSession(model.SerializeToString(), sess_options=options, providers=["CPUExecutionProvider"])


def onnxruntime_matmul(threads: int):
    from onnx import TensorProto, helper

    a, b = _matrices(2)
    weight = helper.make_tensor("b", TensorProto.FLOAT, list(b.shape), b.tobytes(), raw=True)
    session = _onnxruntime_session([helper.make_node("MatMul", ["a", "b"], ["y"])], {"a": list(a.shape)},
                                   list(a.shape), [weight], threads)
    return (lambda: session.run(None, {"a": a})), 2.0 * MATMUL ** 3


def onnxruntime_conv(threads: int):
    from onnx import TensorProto, helper

    batch, channels, size = CONV
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, channels, size, size), dtype=np.float32)
    w = rng.standard_normal((channels, channels, 3, 3), dtype=np.float32) * 0.02
    weight = helper.make_tensor("w", TensorProto.FLOAT, list(w.shape), w.tobytes(), raw=True)
    session = _onnxruntime_session([helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])],
                                   {"x": list(x.shape)}, list(x.shape), [weight], threads)
    return (lambda: session.run(None, {"x": x})), 2.0 * batch * channels * channels * 9 * size * size


def torch_mm(threads: int):
    import torch

    torch.set_num_threads(threads)
    a, b = (torch.from_numpy(m) for m in _matrices(2))
    return (lambda: torch.mm(a, b)), 2.0 * MATMUL ** 3


def numpy_matmul(threads: int):
    a, b = _matrices(2)
    return (lambda: a @ b), 2.0 * MATMUL ** 3  # numpy's BLAS picks its own thread count (every core)


KERNELS: dict[str, Kernel] = {
    f"onnxruntime MatMul {MATMUL}^3": onnxruntime_matmul,
    f"onnxruntime Conv3x3 {CONV[1]}ch {CONV[2]}px b{CONV[0]}": onnxruntime_conv,
    f"torch.mm {MATMUL}^3": torch_mm,
    f"numpy matmul {MATMUL}^3": numpy_matmul,
}


def describe_peak(found: dict[str, float]) -> dict[str, object]:
    """The environment's entries: the best kernel's GFLOP/s, which one it was, and the others."""
    if not found:
        return {"peak_fp32_gflops": None, "peak_fp32_kernel": "not measured"}
    best = max(found, key=found.get)
    others = ", ".join(f"{name} {value:g}" for name, value in found.items() if name != best)
    return {"peak_fp32_gflops": found[best], "peak_fp32_kernel": f"{best} (others: {others} GFLOP/s)"}
