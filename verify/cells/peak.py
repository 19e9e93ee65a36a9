"""What the machine can do: the best of a few large kernels that the runtimes themselves use, per precision,
measured once per verify run. A cell's % of peak is its achieved GFLOP/s over its own precision's. The peak must come from the best kernel
on the machine, or a runtime whose kernel beats the one measured reads above 100%: on an AMD EPYC (Zen 4,
2 cores) ONNX Runtime's 3x3 convolution reached 215 GFLOP/s where the best 2048x2048 matmul (numpy's
OpenBLAS) reached 190 and ONNX Runtime's own MatMul 170, so convolution is among the kernels measured.

Each precision has its own peak, from kernels in that precision through the runtimes its cells use: an int8 cell
against the fp32 peak read 292% and 322% on a Xeon with VNNI (issue 25), since VNNI does four int8 multiply-adds
where fp32 does one. int8: ONNX Runtime's QLinearConv and QLinearMatMul (uint8 activations, int8 per-channel
weights: what it fuses the int8 artifact's QDQ pairs into) and OpenVINO on the same QDQ convolution; bf16:
torch.mm and conv2d in bfloat16 (the oneDNN kernels CPU autocast runs) and OpenVINO pinned to bf16; fp16: ONNX
Runtime and OpenVINO on an fp16 model. Where the CPU lacks the precision's instructions (bf16 without
avx512_bf16/amx_bf16, fp16 without avx512_fp16) the kernels are emulated as the cells are, the fair comparison,
and the environment says so. Only the precisions a run's CPU cells use are measured."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from converter.core.machine import BF16_FLAGS, FP16_FLAGS, VNNI_FLAGS, cpu_features

CALLS = 10
CALL_SECONDS = 1.0  # an emulated kernel (bf16 without bf16 instructions) stops after this much, MIN_CALLS made
MIN_CALLS = 3
TIMEOUT_S = 120.0  # a kernel that hangs costs this, not the default worker limit
MATMUL = 2048  # square matrices
CONV = (8, 256, 28)  # batch, channels in and out, height and width: a ResNet stage-3 3x3 convolution

Kernel = Callable[[int], tuple[Callable[[], object], float]]  # threads -> (one call, its floating-point operations)


@dataclass(frozen=True)
class PeakJob:
    kernel: str  # a name in KERNELS: each runs in a worker of its own, so no idle thread pool of another
    threads: int  # runtime spins beside it
    calls: int = CALLS
    seconds: float = CALL_SECONDS  # after MIN_CALLS, no more calls once the timed ones took this long


def run_peak_job(job: PeakJob) -> float:
    """GFLOP/s of one kernel: its fastest of `calls` after one warm-up (a peak is what the machine can do;
    a call slowed by something else on the machine says nothing about that)."""
    call, flops = KERNELS[job.kernel].build(job.threads)
    call()
    seconds = []
    for _ in range(job.calls):
        started = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - started)
        if len(seconds) >= min(MIN_CALLS, job.calls) and sum(seconds) > job.seconds:
            break
    return round(flops / min(seconds) / 1e9, 1)


class PeakMeasurement(dict):
    """GFLOP/s by kernel name, as measure_peak found them, and what else a report says of the measurement: the
    precisions asked for, the kernels that did not run (and why), the seconds it all took, and when it was
    measured if an earlier run on this machine did (`stored`)."""

    def __init__(self, found: dict[str, float] | None = None, precisions: tuple[str, ...] = (),
                 failed: dict[str, str] | None = None, seconds: float | None = None, stored: str | None = None):
        super().__init__(found or {})
        self.precisions, self.failed, self.seconds = tuple(precisions), dict(failed or {}), seconds
        self.stored = stored

    def facts(self) -> dict:
        """As plain data (for the cell cache); PeakMeasurement.from_facts is the inverse."""
        return {"found": dict(self), "precisions": list(self.precisions), "failed": self.failed,
                "seconds": self.seconds}

    @classmethod
    def from_facts(cls, facts: dict) -> PeakMeasurement:
        return cls(facts["found"], tuple(facts["precisions"]), facts["failed"], facts["seconds"], facts.get("stored"))


def kernels_for(precisions) -> tuple[str, ...]:
    """The kernels of these precisions, in KERNELS' order; None: all of them."""
    return tuple(name for name, kernel in KERNELS.items() if precisions is None or kernel.precision in precisions)


def measure_peak(threads: int, kernels: tuple[str, ...] | None = None,
                 precisions=None) -> PeakMeasurement:
    """GFLOP/s of every kernel that runs here (a runtime that is not installed has none to measure), each in a
    worker of its own; `precisions`: only those precisions' kernels (the ones the run's CPU cells use), None:
    every precision's."""
    from converter.core.isolation import Limits, run_isolated

    if kernels:
        asked = tuple(dict.fromkeys(KERNELS[name].precision for name in kernels))
    else:
        asked = tuple(p for p in PEAK_PRECISIONS if precisions is None or p in precisions)
    started = time.perf_counter()
    found, failed = {}, {}
    for name in kernels or kernels_for(asked):
        outcome = run_isolated(run_peak_job, PeakJob(name, threads), limits=Limits(timeout_s=TIMEOUT_S))
        if outcome.ok:
            found[name] = outcome.value
        else:
            failed[name] = " ".join(outcome.message.split())[:200]
    return PeakMeasurement(found, asked, failed, time.perf_counter() - started)


def _matrices(count: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.standard_normal((MATMUL, MATMUL), dtype=np.float32) for _ in range(count)]


def _onnx_model(nodes, inputs: dict[str, list[int]], output: list[int], initializers, types=None, output_type=None):
    """A one-operator ONNX model, in memory; inputs and output float32 unless `types` (name: TensorProto type)
    and `output_type` say otherwise."""
    from onnx import TensorProto, helper

    types = types or {}
    graph = helper.make_graph(
        nodes, "peak", [helper.make_tensor_value_info(n, types.get(n, TensorProto.FLOAT), s)
                        for n, s in inputs.items()],
        [helper.make_tensor_value_info("y", output_type or TensorProto.FLOAT, output)], initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def _onnxruntime_session(nodes, inputs: dict[str, list[int]], output: list[int], initializers, threads: int,
                         types=None, output_type=None):
    return _onnxruntime_session_of(_onnx_model(nodes, inputs, output, initializers, types, output_type), threads)


def _onnxruntime_session_of(model, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    return ort.InferenceSession(model.SerializeToString(), sess_options=options, providers=["CPUExecutionProvider"])


def _openvino_request(model, threads: int, precision: str):
    """An OpenVINO CPU infer request for the in-memory ONNX `model`, compiled as the verifier's OpenVINO cells
    are (LATENCY hint, the run's threads, the inference precision pinned and read back)."""
    from converter.core.openvino_cpu import compile_for_cpu, openvino

    ov = openvino()
    read = ov.Core().read_model(model.SerializeToString(), b"")
    return compile_for_cpu(read, threads, "LATENCY", precision).create_infer_request()


def onnxruntime_matmul(threads: int):
    from onnx import TensorProto, helper

    a, b = _matrices(2)
    weight = helper.make_tensor("b", TensorProto.FLOAT, list(b.shape), b.tobytes(), raw=True)
    session = _onnxruntime_session([helper.make_node("MatMul", ["a", "b"], ["y"])], {"a": list(a.shape)},
                                   list(a.shape), [weight], threads)
    return (lambda: session.run(None, {"a": a})), 2.0 * MATMUL ** 3


def onnxruntime_conv(threads: int):
    session, x = _onnxruntime_session_of(_conv_model(), threads), _conv_input()
    return (lambda: session.run(None, {"x": x})), _conv_flops()


def _conv_flops() -> float:
    batch, channels, size = CONV
    return 2.0 * batch * channels * channels * 9 * size * size


def _qdq_parameters(channels: int | None):
    """Quantisation parameters as the int8 artifact has them: uint8 activations with a zero point (xs, xz; ys, yz
    for the output), int8 weights symmetric (ws, wz), per output channel (None: per tensor)."""
    from onnx import numpy_helper

    shape = () if channels is None else (channels,)
    values = {"xs": np.array(0.02, np.float32), "xz": np.array(128, np.uint8),
              "ws": np.full(shape, 0.001, np.float32), "wz": np.zeros(shape, np.int8),
              "ys": np.array(0.05, np.float32), "yz": np.array(128, np.uint8)}
    return [numpy_helper.from_array(value, name) for name, value in values.items()]


def _int8_weights(shape) -> np.ndarray:
    return np.random.default_rng(0).integers(-127, 128, shape, dtype=np.int8)


def onnxruntime_qlinearconv(threads: int):
    """The 3x3 convolution in int8: the QLinearConv ONNX Runtime fuses an int8 artifact's QDQ convolution into
    (VNNI where the CPU has it)."""
    from onnx import TensorProto, helper, numpy_helper

    batch, channels, size = CONV
    x = np.random.default_rng(0).integers(0, 256, (batch, channels, size, size), dtype=np.uint8)
    weight = numpy_helper.from_array(_int8_weights((channels, channels, 3, 3)), "w")
    node = helper.make_node("QLinearConv", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz"], ["y"], pads=[1, 1, 1, 1])
    session = _onnxruntime_session([node], {"x": list(x.shape)}, list(x.shape), [weight, *_qdq_parameters(channels)],
                                   threads, {"x": TensorProto.UINT8}, TensorProto.UINT8)
    return (lambda: session.run(None, {"x": x})), _conv_flops()


def onnxruntime_qlinearmatmul(threads: int):
    from onnx import TensorProto, helper, numpy_helper

    a = np.random.default_rng(0).integers(0, 256, (MATMUL, MATMUL), dtype=np.uint8)
    weight = numpy_helper.from_array(_int8_weights((MATMUL, MATMUL)), "w")
    node = helper.make_node("QLinearMatMul", ["a", "xs", "xz", "w", "ws", "wz", "ys", "yz"], ["y"])
    session = _onnxruntime_session([node], {"a": list(a.shape)}, list(a.shape), [weight, *_qdq_parameters(None)],
                                   threads, {"a": TensorProto.UINT8}, TensorProto.UINT8)
    return (lambda: session.run(None, {"a": a})), 2.0 * MATMUL ** 3


def _qdq_conv_model():
    """The 3x3 convolution as the int8 artifact has it: float in and out, QuantizeLinear/DequantizeLinear pairs
    around a float Conv whose weight is int8 dequantised per channel."""
    from onnx import helper, numpy_helper

    batch, channels, size = CONV
    nodes = [helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"]),
             helper.make_node("DequantizeLinear", ["w", "ws", "wz"], ["wd"], axis=0),
             helper.make_node("Conv", ["xd", "wd"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("QuantizeLinear", ["c", "ys", "yz"], ["cq"]),
             helper.make_node("DequantizeLinear", ["cq", "ys", "yz"], ["y"])]
    weight = numpy_helper.from_array(_int8_weights((channels, channels, 3, 3)), "w")
    shape = [batch, channels, size, size]
    return _onnx_model(nodes, {"x": shape}, shape, [weight, *_qdq_parameters(channels)])


def _conv_input() -> np.ndarray:
    batch, channels, size = CONV
    return np.random.default_rng(0).standard_normal((batch, channels, size, size), dtype=np.float32)


def openvino_qdq_conv(threads: int):
    """OpenVINO on the QDQ convolution: its low-precision transformations run the Conv in int8 (as the
    openvino onnx_int8 cells do, their inference precision pinned to f32 for the parts left in float)."""
    request, x = _openvino_request(_qdq_conv_model(), threads, "f32"), _conv_input()
    return (lambda: request.infer({0: x})), _conv_flops()


def _conv_model(half: bool = False):
    """The 3x3 convolution as an ONNX model, float32 or (half) float16 throughout."""
    from onnx import TensorProto, helper, numpy_helper

    batch, channels, size = CONV
    w = np.random.default_rng(0).standard_normal((channels, channels, 3, 3), dtype=np.float32) * 0.02
    shape, kind = [batch, channels, size, size], TensorProto.FLOAT16 if half else TensorProto.FLOAT
    return _onnx_model([helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])], {"x": shape}, shape,
                       [numpy_helper.from_array(w.astype(np.float16) if half else w, "w")], {"x": kind}, kind)


def openvino_conv_bf16(threads: int):
    """OpenVINO with its inference precision pinned to bf16 (the openvino-bf16 cells); refused where the CPU
    plugin does not run bf16."""
    request, x = _openvino_request(_conv_model(), threads, "bf16"), _conv_input()
    return (lambda: request.infer({0: x})), _conv_flops()


def torch_mm_bf16(threads: int):
    import torch

    torch.set_num_threads(threads)
    a, b = (torch.from_numpy(m).to(torch.bfloat16) for m in _matrices(2))
    return (lambda: torch.mm(a, b)), 2.0 * MATMUL ** 3


def torch_conv_bf16(threads: int):
    """conv2d in bfloat16, channels-last (oneDNN's fastest layout for it), under inference mode."""
    import torch

    torch.set_num_threads(threads)
    batch, channels, size = CONV
    x = torch.from_numpy(_conv_input()).to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
    w = (torch.randn(channels, channels, 3, 3, generator=torch.Generator().manual_seed(0)) * 0.02).to(
        torch.bfloat16).contiguous(memory_format=torch.channels_last)

    def call():
        with torch.inference_mode():
            return torch.nn.functional.conv2d(x, w, padding=1)
    return call, _conv_flops()


def onnxruntime_conv_fp16(threads: int):
    """An fp16 convolution through ONNX Runtime: native fp16 kernels where it has them for this CPU, else its
    float32 kernel between casts, as the onnx_fp16 cells run."""
    session, x = _onnxruntime_session_of(_conv_model(half=True), threads), _conv_input().astype(np.float16)
    return (lambda: session.run(None, {"x": x})), _conv_flops()


def openvino_conv_fp16(threads: int):
    """The fp16 convolution model through OpenVINO as its onnx_fp16 cells run it (inference precision pinned
    to f32: fp16 weights, f32 arithmetic)."""
    request, x = _openvino_request(_conv_model(half=True), threads, "f32"), _conv_input().astype(np.float16)
    return (lambda: request.infer({0: x})), _conv_flops()


def torch_mm(threads: int):
    import torch

    torch.set_num_threads(threads)
    a, b = (torch.from_numpy(m) for m in _matrices(2))
    return (lambda: torch.mm(a, b)), 2.0 * MATMUL ** 3


def numpy_matmul(threads: int):
    a, b = _matrices(2)
    return (lambda: a @ b), 2.0 * MATMUL ** 3  # numpy's BLAS picks its own thread count (every core)


@dataclass(frozen=True)
class PeakKernel:
    precision: str  # the cells' precision (converter.core.vocabulary.PRECISIONS) whose peak it measures
    build: Kernel


PEAK_PRECISIONS = ("fp32", "int8", "bf16", "fp16")  # the order the environment lists them in
_CONV = f"Conv3x3 {CONV[1]}ch {CONV[2]}px b{CONV[0]}"
KERNELS: dict[str, PeakKernel] = {
    f"onnxruntime MatMul {MATMUL}^3": PeakKernel("fp32", onnxruntime_matmul),
    f"onnxruntime {_CONV}": PeakKernel("fp32", onnxruntime_conv),
    f"torch.mm {MATMUL}^3": PeakKernel("fp32", torch_mm),
    f"numpy matmul {MATMUL}^3": PeakKernel("fp32", numpy_matmul),
    f"onnxruntime QLinear{_CONV} u8s8": PeakKernel("int8", onnxruntime_qlinearconv),
    f"onnxruntime QLinearMatMul {MATMUL}^3 u8s8": PeakKernel("int8", onnxruntime_qlinearmatmul),
    f"openvino QDQ {_CONV} int8": PeakKernel("int8", openvino_qdq_conv),
    f"torch.mm {MATMUL}^3 bf16": PeakKernel("bf16", torch_mm_bf16),
    f"torch conv2d {_CONV} bf16 channels-last": PeakKernel("bf16", torch_conv_bf16),
    f"openvino {_CONV} bf16": PeakKernel("bf16", openvino_conv_bf16),
    f"onnxruntime {_CONV} fp16": PeakKernel("fp16", onnxruntime_conv_fp16),
    f"openvino {_CONV} fp16 model (f32 arithmetic)": PeakKernel("fp16", openvino_conv_fp16),
}


def arithmetic(precision: str, cpu=None) -> str:
    """How this CPU does the precision's arithmetic, for the reports: native (which instructions) or emulated."""
    if precision == "fp32":
        return "native"
    cpu = cpu if cpu is not None else cpu_features()
    if not cpu.known:
        return "unknown (the CPU's flags could not be read)"
    if precision == "int8":
        found = cpu.present(VNNI_FLAGS)
        return (f"int8 dot products ({', '.join(found)})" if found
                else "no int8 dot-product instructions (VNNI): int8 multiply-adds through wider instructions")
    if precision == "bf16":
        found = cpu.present(BF16_FLAGS)
        return f"native ({', '.join(found)})" if found else "emulated: this CPU has no bf16 instructions"
    found = cpu.present(FP16_FLAGS)
    return (f"native ({', '.join(found)})" if found
            else "emulated: this CPU has no fp16 arithmetic, the runtimes convert to fp32")


def describe_peak(found: dict[str, float], cpu=None) -> dict[str, object]:
    """The environment's entries, per precision measured: the best kernel's GFLOP/s, which one it was and the
    others, and (reduced precisions) whether this CPU has the precision's instructions. A precision asked for
    whose kernels all failed has no peak: "no <precision> peak on this CPU", and its cells no % of peak. Names
    that are not in KERNELS count as fp32."""
    def precision_of(name: str) -> str:
        return KERNELS[name].precision if name in KERNELS else "fp32"

    asked = getattr(found, "precisions", ()) or ()
    precisions = [p for p in PEAK_PRECISIONS if p == "fp32" or p in asked or any(precision_of(n) == p for n in found)]
    failed = getattr(found, "failed", {})
    entries: dict[str, object] = {}
    for precision in precisions:
        mine = {name: value for name, value in found.items() if precision_of(name) == precision}
        if mine:
            best = max(mine, key=mine.get)
            others = ", ".join(f"{name} {value:g}" for name, value in mine.items() if name != best)
            entries[f"peak_{precision}_gflops"] = mine[best]
            entries[f"peak_{precision}_kernel"] = best + (f" (others: {others} GFLOP/s)" if others else "")
        elif precision == "fp32" and precision not in asked:
            entries.update({"peak_fp32_gflops": None, "peak_fp32_kernel": "not measured"})
            continue
        else:
            why = "; ".join(f"{name}: {text}" for name, text in failed.items() if precision_of(name) == precision)
            entries[f"peak_{precision}_gflops"] = None
            entries[f"peak_{precision}_kernel"] = f"no {precision} peak on this CPU" + (f" ({why})" if why else "")
        if precision != "fp32":
            entries[f"peak_{precision}_arithmetic"] = arithmetic(precision, cpu)
    seconds = getattr(found, "seconds", None)
    if seconds is not None:
        entries["peak_measured"] = (f"{len(found) + len(failed)} kernels ({', '.join(asked) or 'no precision'}: "
                                    "the precisions measured), each in a worker of its own, in "
                                    f"{seconds:.1f} s" + (f", on {found.stored} (an earlier run's on this machine, "
                                                          "with the same code and tools)"
                                                          if getattr(found, "stored", None) else ""))
    return entries
