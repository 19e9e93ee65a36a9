"""OpenVINO models compiled for the CPU in fp32, for the exporter's check and the verifier's runner alike.

On a CPU with bf16 instructions OpenVINO runs an fp32 model in bf16 unless the inference precision is pinned
(measured here on ResNet18: max |diff| against ONNX Runtime 0.17 by default, 3.4e-05 pinned to f32). The
precision is pinned and read back from the compiled model: one that would not run in f32 is refused.
"""
from __future__ import annotations

import sys
from typing import Any

# OpenVINO's documented CPU settings: LATENCY for what a single request sees, THROUGHPUT (several streams) for a
# batch, which pays off only with as many requests in flight as it asks for. Measured on 2 cores, ResNet18, batch
# 8: LATENCY 131 ms, THROUGHPUT with one synchronous request 247 ms, with its 2 requests in flight 127 ms.
PERFORMANCE_HINT = "LATENCY"
PRECISION = "f32"


class NotFp32(ValueError):
    """The compiled model does not run in fp32."""


def compile_for_cpu(path: Any, threads: int = 0, hint: str = PERFORMANCE_HINT, precision: str = PRECISION) -> Any:
    """The model at `path` (.onnx or IR .xml; or an ov.Model already read) as an ov.CompiledModel for the CPU, its
    inference precision pinned (f32, or bf16 when asked), with the performance `hint` (LATENCY or THROUGHPUT); `threads` 0: OpenVINO's own
    choice (every core). NotFp32 when the compiled model does not run at the precision asked for."""
    ov = openvino()
    core = ov.Core()
    config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": precision, "PERFORMANCE_HINT": hint}
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    compiled = core.compile_model(path if isinstance(path, ov.Model) else core.read_model(path), "CPU", config)
    ran_at = compiled.get_property("INFERENCE_PRECISION_HINT")
    if ran_at != getattr(ov.Type, precision):
        raise NotFp32(f"OpenVINO compiled the model for {ran_at} although {precision} was asked for (a CPU "
                      "without bf16 instructions cannot run bf16)")
    return compiled


def openvino() -> Any:
    """The openvino module, imported with its telemetry off: every use in this project imports it this way."""
    without_telemetry()
    import openvino as ov

    return ov


def without_telemetry() -> None:
    """OpenVINO's model converter sends usage data to Google Analytics unless the user opted out (openvino's
    pip package installs openvino-telemetry); imported into a long-lived process, openvino itself was seen to
    resolve its address. With that package unimportable it uses its own no-op stub: call this before the first
    `import openvino` of a process."""
    sys.modules.setdefault("openvino_telemetry", None)  # `import openvino_telemetry` now raises ImportError
