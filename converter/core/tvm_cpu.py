"""TVM on this machine's CPU: the LLVM target for the host (`-mcpu` of the CPU it runs on), and the build of a
Relax module from an ONNX model with TVM's default CPU pipeline, untuned (no MetaSchedule search)."""
from __future__ import annotations

import time
from pathlib import Path

LIBRARY = "model.so"
BUILD_FILE = "build.json"  # beside it: the target it was compiled for (it runs only where those instructions exist)


def host_target() -> dict:
    """The LLVM target for this CPU, as TVM's own probe of the host names it (e.g. znver4, sapphirerapids)."""
    from tvm.target import codegen

    return {"kind": "llvm", "mcpu": str(codegen.llvm_get_system_cpu())}


def build_from_onnx(onnx_model, out: Path) -> dict:
    """Compile `onnx_model` for the host CPU into out/model.so; returns what was built and how long it took."""
    import tvm
    from tvm import relax
    from tvm.relax.frontend.onnx import from_onnx

    target = host_target()
    started = time.perf_counter()
    module = from_onnx(onnx_model, keep_params_in_input=False)  # weights become constants of the library
    kept = symbolic_axes(module, [i.name for i in onnx_model.graph.input])
    module = relax.transform.DecomposeOpsForInference()(module)
    executable = tvm.compile(module, target=tvm.target.Target(target))
    executable.export_library(str(out / LIBRARY))
    return {"target": target, "tuned": False, "build_seconds": round(time.perf_counter() - started, 2),
            "tvm": tvm.__version__, "dynamic_axes": kept}


def symbolic_axes(module, names: list[str]) -> dict[str, list[str]]:
    """Per input of the Relax module's main function (in the ONNX graph's input order), the axes it keeps
    symbolic: the ONNX model's named dimensions that the frontend did not turn into numbers."""
    from tvm.tirx import IntImm

    return {name: [str(dim) for dim in param.ty.shape if not isinstance(dim, IntImm)]
            for name, param in zip(names, module["main"].params)}


def load_vm(library: Path):
    """The Relax virtual machine on a compiled library, on the CPU."""
    import tvm
    from tvm import relax

    return relax.VirtualMachine(tvm.runtime.load_module(str(library)), tvm.cpu())


def run_vm(vm, arrays: list) -> list:
    """Call the library's main() on numpy arrays; returns numpy arrays in the model's output order."""
    import numpy as np
    import tvm

    out = vm["main"](*[tvm.runtime.tensor(np.ascontiguousarray(a)) for a in arrays])
    items = list(out) if isinstance(out, (list, tuple)) or type(out).__name__ == "Array" else [out]
    return [item.numpy() for item in items]
