"""The smallest ONNX subgraph that still reproduces a mismatch, written with its inputs and a short script, to attach
to the exporter's or the runtime's bug tracker (Polygraphy's `debug reduce` shows the method). The golden values of
every tensor come from elsewhere (the ONNX reference evaluator, or a graph known to be right); the runtime under
suspicion runs each candidate subgraph on the golden values of its inputs."""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from converter.core.files import atomic_write
from converter.zoo import Tolerance

from .onnxruntime_cpu import cpu_session

Run = Callable[[bytes, Mapping[str, np.ndarray]], dict[str, np.ndarray]]  # (model bytes, feeds) -> outputs by name


@dataclass(frozen=True)
class Repro:
    nodes: tuple[str, ...]  # the subgraph's nodes, in graph order
    ops: tuple[str, ...]  # their op types
    model: bytes  # the subgraph as an ONNX model
    inputs: dict[str, np.ndarray]  # its inputs: the golden values
    expected: np.ndarray  # its output's golden value
    got: np.ndarray  # what the runtime computed from the same inputs
    output: str
    max_abs_diff: float
    allowed: float
    tries: int  # subgraphs run to find it


def ort_run(threads: int = 1, optimised: bool = True) -> Run:
    """ONNX Runtime on the CPU, with its graph optimisations (a bug may live in a fused kernel) unless `optimised`
    is off."""
    def run(model: bytes, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        session = cpu_session(model, threads, optimised)
        names = [output.name for output in session.get_outputs()]
        return dict(zip(names, session.run(names, dict(feeds))))
    return run


def reference_values(model, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every tensor of `model` as the ONNX specification computes it (onnx.reference, numpy): golden values that no
    runtime's kernels produced."""
    from onnx.reference import ReferenceEvaluator

    evaluator = ReferenceEvaluator(model)
    values = dict(evaluator.run(None, dict(feeds), intermediate=True))
    return {name: np.asarray(value) for name, value in values.items()}


def exposed(model) -> bytes:
    """A copy of `model` with every node output that carries a value also a graph output."""
    import onnx
    from onnx import helper

    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    present = {output.name for output in copy.graph.output}
    copy.graph.output.extend(helper.make_empty_tensor_value_info(name) for node in copy.graph.node
                             if node.op_type != "Constant" for name in node.output if name and name not in present)
    return copy.SerializeToString()


def subgraph(model, nodes: list, output: str, golden: Mapping[str, np.ndarray]) -> tuple[bytes, list[str]]:
    """`nodes` of `model` (in graph order) as a model of their own: every tensor they read that none of them makes
    and no initializer holds is an input (typed and shaped by its golden value); `output` is the output. Returns the
    model and its input names."""
    import onnx
    from onnx import helper

    made = {name for node in nodes for name in node.output}
    initializers = {tensor.name: tensor for tensor in model.graph.initializer}
    read = [name for node in nodes for name in node.input if name]
    inputs = list(dict.fromkeys(name for name in read if name not in made and name not in initializers))
    graph = helper.make_graph(
        nodes, "repro",
        [helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(golden[name].dtype),
                                       golden[name].shape) for name in inputs],
        [helper.make_tensor_value_info(output, helper.np_dtype_to_tensor_dtype(golden[output].dtype),
                                       golden[output].shape)],
        [initializers[name] for name in dict.fromkeys(read) if name in initializers])
    repro = helper.make_model(graph, opset_imports=model.opset_import, ir_version=model.ir_version)
    onnx.checker.check_model(repro)
    return repro.SerializeToString(), inputs


def smallest_repro(model, golden: Mapping[str, np.ndarray], run: Run, tolerance: Tolerance,
                   max_nodes: int = 64) -> tuple[Repro | None, str]:
    """The smallest run of consecutive nodes (in graph order, ending at the first node whose output the runtime gets
    wrong) that, fed the golden values of its inputs, still gives an output outside `tolerance` of the golden one.
    Windows of 1, 2, 4, ... nodes are tried, then the one found is trimmed from the front. Returns the repro (None
    where none reproduces within `max_nodes`) and a line saying what was found."""
    nodes = list(model.graph.node)
    initializers = {tensor.name for tensor in model.graph.initializer}
    feeds = {inp.name: golden[inp.name] for inp in model.graph.input if inp.name in golden}
    values = run(exposed(model), feeds)
    checked = [i for i, node in enumerate(nodes) if node.output and node.output[0] in values
               and node.output[0] in golden and golden[node.output[0]].dtype.kind == "f"]
    first = next((i for i in checked if _outside(golden[nodes[i].output[0]], values[nodes[i].output[0]],
                                                  tolerance)[0]), None)
    if first is None:
        return None, f"the runtime agrees with the golden values on all {len(checked)} node outputs it exposes"
    output, tries = nodes[first].output[0], 0

    def reproduces(start: int) -> Repro | None:
        nonlocal tries
        window = _needed(nodes, start, first, golden, initializers)
        if window is None:
            return None
        tries += 1
        sub, inputs = subgraph(model, window, output, golden)
        got = run(sub, {name: golden[name] for name in inputs})[output]
        bad, diff, allowed = _outside(golden[output], got, tolerance)
        if not bad:
            return None
        return Repro(tuple(n.name for n in window), tuple(n.op_type for n in window), sub,
                     {name: golden[name] for name in inputs}, golden[output], got, output, diff, allowed, tries)

    size, found = 1, None
    while size <= min(max_nodes, first + 1) and found is None:
        found = reproduces(first - size + 1)
        size *= 2
    if found is None:
        return None, (f"node {nodes[first].name} ({nodes[first].op_type}) is the first whose output differs, but no "
                      f"subgraph of up to {max_nodes} nodes ending there reproduces it from golden inputs")
    low, high = first - len(found.nodes) + 1, first  # trim from the front: the latest start that still fails
    while low < high:
        middle = (low + high + 1) // 2
        shorter = reproduces(middle)
        if shorter is not None:
            found, low = shorter, middle
        else:
            high = middle - 1
    found = replace(found, tries=tries)
    return found, (f"{len(found.nodes)} node(s) ({', '.join(found.ops)}) reproduce the mismatch on their own: "
                   f"{found.output} max |diff| {found.max_abs_diff:.3g} > {found.allowed:.3g}")


def _needed(nodes: list, start: int, end: int, golden: Mapping[str, np.ndarray], initializers: set[str]) -> list | None:
    """Nodes start..end that the last one depends on (within the window); None where an input they need from outside
    the window has no golden value to feed it."""
    wanted, kept = set(nodes[end].input), [nodes[end]]
    for node in reversed(nodes[start:end]):
        if any(name in wanted for name in node.output):
            kept.append(node)
            wanted.update(node.input)
    kept.reverse()
    made = {name for node in kept for name in node.output}
    outside = {name for node in kept for name in node.input if name and name not in made}
    return kept if all(name in golden or name in initializers for name in outside) else None


def _outside(expected: np.ndarray, got: np.ndarray, tolerance: Tolerance) -> tuple[bool, float, float]:
    """Whether `got` misses `expected` by more than atol + rtol x its largest magnitude (or is not finite)."""
    expected, got = np.asarray(expected, np.float64), np.asarray(got, np.float64)
    if expected.shape != got.shape:
        return True, float("inf"), 0.0
    allowed = tolerance.atol + tolerance.rtol * float(np.abs(expected).max(initial=0.0))
    diff = float(np.abs(got - expected).max(initial=0.0)) if np.isfinite(got).all() else float("inf")
    return diff > allowed, diff, allowed


SCRIPT = '''\
"""{title}: ONNX Runtime {ort} gives {output} a max |diff| of {diff:.3g} from the expected value (allowed {allowed:.3g}).
Run: python repro.py (needs onnxruntime and numpy)."""
import numpy as np, onnxruntime as ort
session = ort.InferenceSession("model.onnx", providers=["CPUExecutionProvider"])
feeds = {{name: np.load(f"inputs/{{index}}.npy") for index, name in enumerate({inputs!r})}}
got = session.run([{output!r}], feeds)[0]
expected = np.load("expected.npy")
diff = float(np.abs(got.astype(np.float64) - expected).max())
print(f"max |diff| {{diff:.3g}}, allowed {allowed!r}: " + ("FAIL" if not diff <= {allowed!r} else "PASS"))
raise SystemExit(0 if diff <= {allowed!r} else 1)
'''


def write_repro(folder: Path, repro: Repro, title: str) -> Path:
    """model.onnx, inputs/<i>.npy, expected.npy, got.npy and repro.py (exit 1 while the mismatch is there) in
    `folder`; returns the script's path."""
    import onnxruntime

    folder.mkdir(parents=True, exist_ok=True)
    atomic_write(folder / "model.onnx", repro.model)
    for index, array in enumerate(repro.inputs.values()):
        _save(folder / "inputs" / f"{index}.npy", array)
    _save(folder / "expected.npy", repro.expected.astype(np.float64))
    _save(folder / "got.npy", repro.got)
    script = SCRIPT.format(title=title, ort=onnxruntime.__version__, output=repro.output, diff=repro.max_abs_diff,
                           allowed=repro.allowed, inputs=list(repro.inputs))
    return atomic_write(folder / "repro.py", script)


def _save(path: Path, array: np.ndarray) -> None:
    import io

    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    np.save(buffer, array)
    atomic_write(path, buffer.getvalue())
