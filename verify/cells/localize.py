"""Where did a failing conversion diverge? The reference's module outputs (forward hooks) against the
artifact's own intermediate values: every ONNX node output (exposed as extra graph outputs), or each
TorchScript submodule run on the reference's input to that module. The first layer that differs beyond
tolerance is reported. Runs in a worker, only for FAILing cells."""
from __future__ import annotations

import ast
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from converter.zoo import Tolerance

if TYPE_CHECKING:  # imported where it runs, in the worker: the verifier's own process may never need torch
    import torch

MAX_SAMPLES = 4  # intermediate outputs of a few samples are enough to find the layer
MATCH_WINDOW = 4  # an ONNX Conv with BatchNorm folded in matches the output of a module run after its own
# Above float32 noise: where a difference spread over many layers (fp16 weights, another BatchNorm
# epsilon) starts, though a loose tolerance only sees it layers later.
ONSET_TOLERANCE = Tolerance(atol=1e-7, rtol=1e-5)
PADDLE_UNAVAILABLE = ("not available for Paddle: x2paddle renames every layer (conv2d0, batchnorm0, ...), "
                      "so its outputs cannot be matched to PyTorch modules")


@dataclass
class Divergence:
    available: bool
    summary: str  # one line for the report
    layer: str | None = None  # the ONNX node, or the TorchScript submodule
    op_type: str | None = None
    module: str | None = None  # the PyTorch module the layer belongs to
    compared_with: str | None = None  # the module whose output it was compared with, when not `module`
    max_abs_diff: float = float("nan")
    allowed: float = float("nan")
    layers_compared: int = 0
    onset_layer: str | None = None  # an earlier layer already above float32 noise, when there is one
    onset_module: str | None = None


@dataclass
class ModuleCall:
    name: str
    kind: str
    inputs: tuple
    output: np.ndarray
    leaf: bool = True  # no submodules: its output is computed by its own op(s)


@dataclass(frozen=True)
class LocalizeJob:
    kind: str  # "onnx" or "torchscript"
    reference_folder: Path
    artifact: Path
    feeds: dict[str, np.ndarray]  # the model's inputs by name, in forward's order
    tolerance: Tolerance
    trust_pickle: bool = False
    threads: int = 1


def run_localize_job(job: LocalizeJob) -> Divergence:
    import torch

    from converter.core.reference import load_reference

    torch.set_num_threads(job.threads)
    feeds = {name: np.ascontiguousarray(array[:MAX_SAMPLES]) for name, array in job.feeds.items()}
    calls = capture_module_calls(load_reference(job.reference_folder, job.trust_pickle), feeds)
    if job.kind == "onnx":
        return locate_in_onnx(job.artifact, feeds, calls, job.tolerance, job.threads)
    return locate_in_torchscript(job.artifact, calls, job.tolerance)


def capture_module_calls(module: torch.nn.Module, feeds: dict[str, np.ndarray] | np.ndarray) -> list[ModuleCall]:
    """Every submodule call that returns one tensor, in the order the calls finish (children before parents)."""
    import torch

    calls: list[ModuleCall] = []

    def hook(name: str):
        def record(mod, inputs, output):
            if isinstance(output, torch.Tensor) and output.is_floating_point():
                calls.append(ModuleCall(name, type(mod).__name__, tuple(inputs), output.detach().numpy().copy(),
                                        leaf=next(mod.children(), None) is None))
        return record

    handles = [m.register_forward_hook(hook(name)) for name, m in module.named_modules() if name]
    try:
        with torch.no_grad():
            module(*[torch.from_numpy(array) for array in (feeds.values() if isinstance(feeds, dict) else [feeds])])
    finally:
        for handle in handles:
            handle.remove()
    return calls


def exceeds(reference: np.ndarray, candidate: np.ndarray, tolerance: Tolerance) -> tuple[bool, float, float]:
    """The cell's own rule on an intermediate tensor: |c - r| <= atol + rtol * (the sample's largest |r|)."""
    ref = reference.reshape(len(reference), -1).astype(np.float64)
    cand = candidate.reshape(len(candidate), -1).astype(np.float64)
    diff = np.abs(cand - ref).max(axis=1)
    allowed = tolerance.atol + tolerance.rtol * np.abs(ref).max(axis=1)
    worst = int(np.argmax(diff - allowed))
    bad = (not np.isfinite(cand).all()) or bool((diff > allowed).any())
    return bad, float(diff[worst]), float(allowed[worst])


def scope_module(node_name: str) -> str | None:
    """The module an ONNX node came from, from the exporter's scope name:
    '/layer1/layer1.0/conv1/Conv' -> 'layer1.0.conv1'; '/mid/relu_1/Relu' (a module's second call) -> 'mid.relu'."""
    parts = [p for p in node_name.split("/") if p][:-1]
    if not parts:
        return None
    qualified = ""
    for part in parts:
        qualified = part if qualified and part.startswith(qualified + ".") else (f"{qualified}.{part}" if qualified else part)
    return qualified


def node_module(node) -> str | None:
    """The module an ONNX node came from: the dynamo exporter records the scopes in the node's metadata
    (`pkg.torch.onnx.name_scopes`: ['', 'layer1', 'layer1.0', 'layer1.0.bn1', '<op>']); the TorchScript-based
    one puts them in the node's name."""
    for prop in node.metadata_props:
        if prop.key == "pkg.torch.onnx.name_scopes":
            try:
                scopes = [s for s in ast.literal_eval(prop.value)[:-1] if s]
            except (ValueError, SyntaxError):
                break
            return scopes[-1] if scopes else None
    return scope_module(node.name)


def locate_in_onnx(path: Path, feeds: dict[str, np.ndarray] | np.ndarray, calls: list[ModuleCall], tolerance: Tolerance,
                   threads: int = 1) -> Divergence:
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(path))
    values = _intermediate_values(model, feeds, threads, ort)
    # Only a leaf module's output is some node's output; a container's own ops (a residual Add) have no
    # captured counterpart (its output is taken after the block's last ReLU).
    names = {call.name for call in calls if call.leaf}
    cursor, compared, onset = 0, 0, None
    for node in model.graph.node:
        if not node.output or node.output[0] not in values:
            continue
        module = node_module(node)
        if module is not None and module not in names:
            module = re.sub(r"_\d+$", "", module)  # a module called more than once
        if module not in names:
            continue
        start = next((i for i in range(cursor, len(calls)) if calls[i].name == module), None)
        if start is None:
            continue
        value = values[node.output[0]]
        candidates = [c for c in calls[start:start + MATCH_WINDOW] if c.output.shape == value.shape]
        if not candidates:
            continue
        cursor, compared = start, compared + 1
        best = min(candidates, key=lambda c: float(np.abs(c.output.astype(np.float64) - value).max()))
        bad, diff, allowed = exceeds(best.output, value, tolerance)
        if bad:
            also = f", compared with {best.name} ({best.kind}) where a folded layer follows" \
                if best.name != module else ""
            found = Divergence(True, f"first divergence at ONNX node {node.name} ({node.op_type}), module {module}"
                                     f"{also}: max |diff| {diff:.3g} > {allowed:.3g}",
                               node.name, node.op_type, module, best.name if best.name != module else None,
                               diff, allowed, compared)
            return _with_onset(found, onset)
        if onset is None and exceeds(best.output, value, ONSET_TOLERANCE)[0]:
            onset = (f"ONNX node {node.name}", module)
    if compared == 0:
        return Divergence(False, "no ONNX node could be matched to a PyTorch module (no scope names)")
    return _no_divergence(compared)


def _intermediate_values(model, feeds: dict[str, np.ndarray] | np.ndarray, threads: int, ort) -> dict[str, np.ndarray]:
    """Every float node output, by running a copy of the graph with each one added as a graph output.
    ONNX Runtime's graph optimisations are off, so a value is what its node computed."""
    import onnx
    from onnx import TensorProto, helper

    inferred = onnx.shape_inference.infer_shapes(model)
    floats = {vi.name for vi in inferred.graph.value_info if vi.type.tensor_type.elem_type == TensorProto.FLOAT}
    present = {o.name for o in model.graph.output}
    wanted = [out for node in model.graph.node if node.op_type != "Constant" for out in node.output
              if out in floats and out not in present]
    exposed = onnx.ModelProto()
    exposed.CopyFrom(model)
    exposed.graph.output.extend(helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name in wanted)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(exposed.SerializeToString(), options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    if not isinstance(feeds, dict):  # one unnamed batch: the graph's only input
        feeds = {session.get_inputs()[0].name: feeds}
    outputs = session.run(names, feeds)
    return {name: np.asarray(value) for name, value in zip(names, outputs)}


def locate_in_torchscript(path: Path, calls: list[ModuleCall], tolerance: Tolerance) -> Divergence:
    """Each TorchScript submodule is run on exactly the input its eager twin received, so the first one that
    computes differently is found even when an earlier difference would have propagated."""
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # "torch.jit.load is deprecated"
        script = torch.jit.load(str(path), map_location="cpu").eval()
    submodules: dict[str, Any] = dict(script.named_modules())
    compared, onset = 0, None
    for call in calls:
        sub = submodules.get(call.name)
        if sub is None or not hasattr(sub, "forward"):
            continue
        try:
            with torch.no_grad():
                out = sub(*call.inputs)
        except Exception:  # a submodule the trace inlined, or one taking arguments it cannot replay
            continue
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != call.output.shape:
            continue
        compared += 1
        bad, diff, allowed = exceeds(call.output, out.numpy(), tolerance)
        if bad:
            found = Divergence(True, f"first divergence at TorchScript submodule {call.name} ({call.kind}), given "
                                     f"the reference's input to it: max |diff| {diff:.3g} > {allowed:.3g}",
                               call.name, call.kind, call.name, None, diff, allowed, compared)
            return _with_onset(found, onset)
        if onset is None and exceeds(call.output, out.numpy(), ONSET_TOLERANCE)[0]:
            onset = (f"TorchScript submodule {call.name}", call.name)
    if compared == 0:
        return Divergence(False, "no TorchScript submodule could be run on its reference inputs")
    return _no_divergence(compared)


def _with_onset(found: Divergence, onset: tuple[str, str] | None) -> Divergence:
    if onset is not None and onset[1] != found.module:
        found.onset_layer, found.onset_module = onset
        found.summary += (f"; already above float32 noise ({ONSET_TOLERANCE.rtol:g} x max|ref|) at {onset[0]}, "
                          f"module {onset[1]}: a difference spread over many layers starts there")
    return found


def _no_divergence(compared: int) -> Divergence:
    return Divergence(True, f"all {compared} layers compared match the reference on the same input: the difference "
                            "is not in the model's weights or ops but in how the runtime runs it or is fed or read "
                            "(input channel order or normalisation, output handling, runtime optimisations)",
                      layers_compared=compared)
