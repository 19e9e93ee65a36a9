"""ONNX Runtime on the CPU, as the repair's searches run their builds and subgraphs."""
from __future__ import annotations

from pathlib import Path


def cpu_session(model: Path | bytes, threads: int, optimised: bool = True):
    """An InferenceSession of `model` (a file, or a serialized model) on the CPU, on `threads` threads, with ONNX
    Runtime's graph optimisations (a bug may live in a fused kernel) unless `optimised` is off."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    if not optimised:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(model if isinstance(model, bytes) else str(model), options,
                                providers=["CPUExecutionProvider"])


def batch_of(session, default: int) -> int:
    """The batch the session's model was built for (its first input's first axis, where fixed), else `default`."""
    fixed = session.get_inputs()[0].shape[0]
    return fixed if isinstance(fixed, int) and fixed > 0 else default
