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
    kind: str  # how the artifact is opened: "onnx" (ONNX Runtime), "openvino", "paddle" (x2paddle's code), "torchscript"
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
    if job.kind == "openvino":
        return locate_in_openvino(job.artifact, feeds, calls, job.tolerance, job.threads)
    if job.kind == "paddle":
        return locate_in_paddle(job.artifact, feeds, calls, job.tolerance, job.threads)
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


@dataclass
class LayerValue:
    """One layer's output as the runtime computed it, and the PyTorch module it came from (None: unknown)."""

    layer: str
    op_type: str
    module: str | None
    value: np.ndarray


def locate_in_onnx(path: Path, feeds: dict[str, np.ndarray] | np.ndarray, calls: list[ModuleCall], tolerance: Tolerance,
                   threads: int = 1) -> Divergence:
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(path))
    return first_divergence(onnx_layers(model, _intermediate_values(model, feeds, threads, ort)), calls, tolerance,
                            "ONNX node", "no ONNX node could be matched to a PyTorch module (no scope names)")


def onnx_layers(model, values: dict[str, np.ndarray]) -> list[LayerValue]:
    """The ONNX graph's nodes in order, each with its first output's value where the runtime gave one."""
    return [LayerValue(node.name, node.op_type, node_module(node), values[node.output[0]])
            for node in model.graph.node if node.output and node.output[0] in values]


def first_divergence(layers: list[LayerValue], calls: list[ModuleCall], tolerance: Tolerance, noun: str,
                     unmatched: str) -> Divergence:
    """The first layer whose value differs beyond `tolerance` from the output of the module it came from (matched
    in call order, within MATCH_WINDOW calls: a layer with BatchNorm folded in matches the module after its own)."""
    # Only a leaf module's output is some layer's output; a container's own ops (a residual Add) have no
    # captured counterpart (its output is taken after the block's last ReLU).
    names = {call.name for call in calls if call.leaf}
    cursor, compared, onset = 0, 0, None
    for layer in layers:
        module = layer.module
        if module is not None and module not in names:
            module = re.sub(r"_\d+$", "", module)  # a module called more than once
        if module not in names:
            continue
        start = next((i for i in range(cursor, len(calls)) if calls[i].name == module), None)
        if start is None:
            continue
        value = layer.value
        candidates = [c for c in calls[start:start + MATCH_WINDOW] if c.output.shape == value.shape]
        if not candidates:
            continue
        cursor, compared = start, compared + 1
        best = min(candidates, key=lambda c: float(np.abs(c.output.astype(np.float64) - value).max()))
        bad, diff, allowed = exceeds(best.output, value, tolerance)
        if bad:
            also = f", compared with {best.name} ({best.kind}) where a folded layer follows" \
                if best.name != module else ""
            found = Divergence(True, f"first divergence at {noun} {layer.layer} ({layer.op_type}), module {module}"
                                     f"{also}: max |diff| {diff:.3g} > {allowed:.3g}",
                               layer.layer, layer.op_type, module, best.name if best.name != module else None,
                               diff, allowed, compared)
            return _with_onset(found, onset)
        if onset is None and exceeds(best.output, value, ONSET_TOLERANCE)[0]:
            onset = (f"{noun} {layer.layer}", module)
    if compared == 0:
        return Divergence(False, unmatched)
    return _no_divergence(compared)


def locate_in_openvino(path: Path, feeds: dict[str, np.ndarray] | np.ndarray, calls: list[ModuleCall],
                       tolerance: Tolerance, threads: int = 1) -> Divergence:
    """OpenVINO's own values of every layer (each op's output made a model output, inference pinned to float32): on
    an ONNX file its ops keep the ONNX tensor names, so each is matched as the ONNX node it came from; in OpenVINO
    IR converted from PyTorch, an op's name starts with its module ('__module.layer1.0.conv1/aten::...'). Exposing
    an output can keep OpenVINO from fusing the op with the next: a fault inside such a fusion is not seen."""
    import openvino as ov

    core = ov.Core()
    model = core.read_model(str(path))
    skipped = {"Parameter", "Constant", "Result", "ShapeOf", "Convert"}
    exposed = [op.output(0) for op in model.get_ordered_ops() if op.get_type_name() not in skipped
               and op.get_output_size() and op.output(0).get_element_type() == ov.Type.f32]
    probes = [f"__parity_probe_{index}" for index in range(len(exposed))]
    for output, probe in zip(exposed, probes):  # a name of our own to find each one among the compiled outputs
        output.get_tensor().add_names({probe})
    model.add_outputs(exposed)
    compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32",
                                                 "INFERENCE_NUM_THREADS": max(1, threads)})
    if not isinstance(feeds, dict):
        feeds = {compiled.inputs[0].get_any_name(): feeds}
    results = compiled(dict(feeds))
    values = {}  # by the op's friendly name and by every name of its output (an ONNX file's tensor names)
    by_name = {name: out for out in compiled.outputs for name in out.get_names()}
    for output, probe in zip(exposed, probes):
        # an output the model already had keeps its own names, not the probe's
        found = next((by_name[name] for name in (probe, *sorted(output.get_names())) if name in by_name), None)
        if found is None:
            continue
        value = np.asarray(results[found])
        values[output.get_node().get_friendly_name()] = value
        for name in output.get_names() - {probe}:
            values.setdefault(name, value)
    if path.suffix == ".onnx":
        import onnx

        graph = onnx.load(str(path))
        layers = onnx_layers(graph, values)
        return first_divergence(layers, calls, tolerance, "OpenVINO op (ONNX node)",
                                "no ONNX node could be matched to a PyTorch module (no scope names)")
    layers = []
    for output in exposed:
        op = output.get_node()
        if op.get_friendly_name() not in values:
            continue
        module = re.match(r"__module\.([^/]+)/", op.get_friendly_name())
        layers.append(LayerValue(op.get_friendly_name(), op.get_type_name(), module.group(1) if module else None,
                                 values[op.get_friendly_name()]))
    return first_divergence(layers, calls, tolerance, "OpenVINO op",
                            "no OpenVINO op could be matched to a PyTorch module (no '__module.' names)")


# x2paddle's layer classes and the PyTorch modules they come from
PADDLE_KINDS = {"Conv2D": "Conv2d", "BatchNorm": "BatchNorm2d", "BatchNorm2D": "BatchNorm2d", "ReLU": "ReLU",
                "ReLU6": "ReLU6", "Linear": "Linear", "MaxPool2D": "MaxPool2d", "AvgPool2D": "AvgPool2d",
                "AdaptiveAvgPool2D": "AdaptiveAvgPool2d", "Sigmoid": "Sigmoid", "Hardswish": "Hardswish",
                "Hardsigmoid": "Hardsigmoid", "GELU": "GELU", "LayerNorm": "LayerNorm", "Softmax": "Softmax",
                "Conv2DTranspose": "ConvTranspose2d", "Embedding": "Embedding"}


def locate_in_paddle(code_file: Path, feeds: dict[str, np.ndarray] | np.ndarray, calls: list[ModuleCall],
                     tolerance: Tolerance, threads: int = 1) -> Divergence:
    """x2paddle's generated program names its layers by kind and count (conv2d0, batchnorm0, ...), not after the
    PyTorch modules: each kind's layers are paired with the same kind's module calls in call order, where both
    count the same and the shapes agree; the first pair that differs is reported."""
    import paddle

    from converter.core.paddle_dygraph import load_dygraph

    layer = load_dygraph(code_file, threads=threads)
    seen: list[tuple[str, str, np.ndarray]] = []

    def hook(name: str, kind: str):
        def record(sub, inputs, output):
            if isinstance(output, paddle.Tensor) and output.dtype == paddle.float32:
                seen.append((name, kind, output.numpy().copy()))
        return record

    handles = [sub.register_forward_post_hook(hook(name, type(sub).__name__))
               for name, sub in layer.named_sublayers() if not list(sub.children())]
    try:
        with paddle.no_grad():
            layer(*[paddle.to_tensor(array) for array in (feeds.values() if isinstance(feeds, dict) else [feeds])])
    finally:
        for handle in handles:
            handle.remove()
    leaves = [call for call in calls if call.leaf]
    paired: dict[int, ModuleCall] = {}
    for kind, torch_kind in PADDLE_KINDS.items():
        ours = [index for index, (_, k, _) in enumerate(seen) if k == kind]
        theirs = [call for call in leaves if call.kind == torch_kind]
        if ours and len(ours) == len(theirs):
            paired.update(zip(ours, theirs))
    layers = [LayerValue(name, kind, paired[index].name, value) for index, (name, kind, value) in enumerate(seen)
              if index in paired and paired[index].output.shape == value.shape]
    unmatched = ("x2paddle's program has no layer whose output could be recorded (functional calls only)" if not seen
                 else "no Paddle layer could be paired with a PyTorch module (each kind's counts differ)")
    found = first_divergence(layers, calls, tolerance, "Paddle layer", unmatched)
    found.summary = f"in x2paddle's dygraph program from the same conversion: {found.summary}"
    return found


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
