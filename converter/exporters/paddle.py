"""Paddle inference model via x2paddle (its PyTorch tracer, or its ONNX front end), with its telemetry off and
its exits caught; and the dygraph model (generated code + weights) from the same conversion."""
from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import torch

from ..core.errors import ConversionError, one_line
from ..core.paddle_dygraph import CODE_FILE
from ..core.paddle_dygraph import PARAMS_FILE as DYGRAPH_PARAMS  # beside CODE_FILE: the dygraph model
from .base import ExportContext, ExportResult, native_stderr_silenced, sanity_check

MODEL_FILES = ("model.json", "model.pdmodel")  # Paddle 3 (PIR) writes json, Paddle 2 pdmodel
PARAMS_FILE = "model.pdiparams"


ONNX_ROUTE_OPSET = 15  # the newest opset x2paddle 1.6's ONNX front end maps


def export(ctx: ExportContext) -> ExportResult:
    """x2paddle's PyTorch tracer, or its ONNX front end on an ONNX export (`paddle.route`); `auto` tries the
    tracer and, where it fails or its model fails the check, the ONNX route. The details say which built it."""
    route = ctx.entry.paddle.route
    if route != "auto":
        return _build(ctx, route)
    try:
        return _build(ctx, "pytorch")
    except Exception as failure:  # x2paddle's errors and a failed check (Paddle raises its own types)
        direct = one_line(failure)
        for leftover in ctx.out_dir.iterdir():
            if leftover.is_dir():
                shutil.rmtree(leftover)
            else:
                leftover.unlink()
        try:
            result = _build(ctx, "onnx")
        except Exception as second:
            raise ConversionError(f"{direct}; the ONNX route failed too: {one_line(second)}") from None
        result.details["direct_route_error"] = direct[:300]
        return result


def _build(ctx: ExportContext, route: str) -> ExportResult:
    work = ctx.out_dir / "_x2paddle"
    if route == "pytorch":
        with torch.no_grad():  # traced as it will run (see the TorchScript exporter)
            log = _run_x2paddle(ctx.built.module, ctx.example, work)
        converter = "x2paddle pytorch2paddle (trace)"
    else:
        log = _run_x2paddle_onnx(ctx, work)
        converter = f"x2paddle onnx2paddle (on a TorchScript-exported ONNX, opset {ONNX_ROUTE_OPSET}, onnxsim)"
    # x2paddle reports many failures by printing and returning: judge by what it wrote, not by its return.
    inference = work / "inference_model"
    model_file = next((inference / name for name in MODEL_FILES if (inference / name).is_file()), None)
    if model_file is None or not (inference / PARAMS_FILE).is_file():
        raise ConversionError(f"x2paddle ({route} route) wrote no inference model{_tail(log)}")
    shutil.move(str(model_file), ctx.out_dir / model_file.name)
    shutil.move(str(inference / PARAMS_FILE), ctx.out_dir / PARAMS_FILE)
    kept = [CODE_FILE]  # the generated Paddle code: the dygraph model's source, and for debugging
    if "paddle_dygraph" in ctx.entry.built_formats:
        kept.append(DYGRAPH_PARAMS)  # its weights, only when the dygraph artifact will be built from them
    for name in kept:
        if (work / name).is_file():
            shutil.move(str(work / name), ctx.out_dir / name)
    shutil.rmtree(work)
    max_diff = _check_with_paddle_inference(ctx, ctx.out_dir / model_file.name)
    return ExportResult(model_file.name, {"route": route, "converter": converter,
                                          "predictor_max_abs_diff": max_diff})


def export_dygraph(ctx: ExportContext) -> ExportResult:
    """The dygraph model x2paddle generated with the inference model: its code and weights, checked by running the
    generated Layer in Paddle's training engine."""
    source = ctx.earlier["paddle"]
    for name in (CODE_FILE, DYGRAPH_PARAMS):
        if not (source / name).is_file():
            raise ConversionError(f"the paddle artifact has no {name} to build the dygraph model from")
        try:  # a hard link: the weights are not stored twice; both artifacts' hashes still cover them
            os.link(source / name, ctx.out_dir / name)
        except OSError:  # another file system
            shutil.copy2(source / name, ctx.out_dir / name)
    from ..core.paddle_dygraph import load_dygraph

    layer = load_dygraph(ctx.out_dir / CODE_FILE, threads=ctx.threads)

    def run(feeds: dict[str, np.ndarray]):
        import paddle

        with paddle.no_grad():
            return layer(*[paddle.to_tensor(array) for array in feeds.values()])

    max_diff = sanity_check(ctx, run, "Paddle dygraph")
    return ExportResult(CODE_FILE, {"layer": type(layer).__name__, "dygraph_max_abs_diff": max_diff})


def _run_x2paddle(module: torch.nn.Module, example: tuple[torch.Tensor, ...], work: Path) -> str:
    """Call pytorch2paddle and return what it printed; it must never reach the network or end the process."""
    import x2paddle.convert as x2p

    saved_path, saved_check = list(sys.path), x2p.ConverterCheck
    x2p.ConverterCheck = _NoFeedback  # belt and braces: disable_feedback=True already skips it
    # x2paddle narrates (and asks for a survey) through its INFO logger, whose handler writes to the real
    # stderr, past the redirect below; the unsupported ops we report it prints.
    logging.disable(logging.INFO)
    captured = io.StringIO()
    try:
        with contextlib.redirect_stdout(captured), contextlib.redirect_stderr(captured):
            x2p.pytorch2paddle(module, str(work), jit_type="trace", input_examples=list(example),
                               disable_feedback=True)
    except SystemExit:  # x2paddle calls exit(0) on some failures
        raise ConversionError(f"x2paddle gave up{_tail(captured.getvalue())}") from None
    except Exception as exc:
        unsupported = re.findall(r"=+ (\S+::\S+) =+", captured.getvalue())
        detail = f": unsupported ops {', '.join(sorted(set(unsupported)))}" if unsupported else ""
        raise ConversionError(f"x2paddle: {str(exc).strip() or type(exc).__name__}{detail}") from None
    finally:
        # x2paddle puts the save folder on sys.path to import the code it generated.
        sys.path[:] = saved_path
        sys.modules.pop("x2paddle_code", None)
        x2p.ConverterCheck = saved_check
        logging.disable(logging.NOTSET)
    return captured.getvalue()


def _run_x2paddle_onnx(ctx: ExportContext, work: Path) -> str:
    """x2paddle's ONNX front end, called part by part: its `onnx2paddle` returns without a word on onnx >= 1.10
    (its version check reads `onnx.version.version`, which onnx no longer has)."""
    import onnx
    import onnxsim

    from .onnx_export import export_torchscript_based

    path = ctx.out_dir / "_route.onnx"
    export_torchscript_based(ctx, path, ONNX_ROUTE_OPSET)
    with native_stderr_silenced():  # a warning per op it cannot fold: not the user's business
        model, _ = onnxsim.simplify(onnx.load(str(path)))  # folds the Identity-of-constant nodes x2paddle cannot read
    onnx.save(x2paddle_ready(model), str(path))
    _provide_onnx_mapping()
    captured = io.StringIO()
    logging.disable(logging.INFO)
    try:
        from x2paddle.decoder.onnx_decoder import ONNXDecoder
        from x2paddle.op_mapper.onnx2paddle.onnx_op_mapper import ONNXOpMapper
        from x2paddle.optimizer.optimizer import GraphOptimizer

        with contextlib.redirect_stdout(captured), contextlib.redirect_stderr(captured):
            mapper = ONNXOpMapper(ONNXDecoder(str(path), True, None))
            mapper.paddle_graph.build()
            GraphOptimizer(source_frame="onnx").optimize(mapper.paddle_graph)
            mapper.paddle_graph.gen_model(str(work))
    except SystemExit:
        raise ConversionError(f"x2paddle (ONNX) gave up{_tail(captured.getvalue())}") from None
    except Exception as exc:
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        unsupported = re.findall(r"^=+ (\w+) =+$", captured.getvalue(), re.MULTILINE)
        detail = f": unsupported ops {', '.join(sorted(set(unsupported)))}" if unsupported else ""
        raise ConversionError(f"x2paddle (ONNX): {first_line[:300]}{detail}") from None
    finally:
        logging.disable(logging.NOTSET)
        path.unlink(missing_ok=True)
    return captured.getvalue()


def x2paddle_ready(model):
    """The same model in the form x2paddle 1.6's ONNX mapper reads: MaxPool without the default `dilations`
    (it asserts there are none) and no initializer shared by two nodes (it renames a weight at its first use)."""
    for node in model.graph.node:
        if node.op_type == "MaxPool":
            kept = [a for a in node.attribute if not (a.name == "dilations" and all(v == 1 for v in a.ints))]
            del node.attribute[:]
            node.attribute.extend(kept)
    initializers = {tensor.name: tensor for tensor in model.graph.initializer}
    used = set()
    for index, node in enumerate(model.graph.node):
        for slot, name in enumerate(node.input):
            if name not in initializers:
                continue
            if name in used:
                copy = model.graph.initializer.add()
                copy.CopyFrom(initializers[name])
                copy.name = f"{name}__use{index}_{slot}"
                node.input[slot] = copy.name
            used.add(name)
    return model


def _provide_onnx_mapping() -> None:
    """x2paddle imports `onnx.mapping.TENSOR_TYPE_TO_NP_TYPE`, which onnx 1.16 removed: give it the same table
    from onnx.helper (a module of our own in sys.modules, never an edit of site-packages)."""
    import types

    import onnx
    from onnx import helper

    try:
        import onnx.mapping  # noqa: F401  (an older onnx still has it)
        return
    except ImportError:
        pass
    table = {}
    for code in onnx.TensorProto.DataType.values():
        try:
            table[code] = helper.tensor_dtype_to_np_dtype(code)
        except (KeyError, ValueError, TypeError):
            continue  # UNDEFINED and types numpy has no dtype for
    mapping = types.ModuleType("onnx.mapping")
    mapping.TENSOR_TYPE_TO_NP_TYPE = table
    sys.modules["onnx.mapping"] = mapping


def _check_with_paddle_inference(ctx: ExportContext, model_file: Path) -> float:
    import paddle.inference as paddle_infer

    config = paddle_infer.Config(str(model_file), str(model_file.parent / PARAMS_FILE))
    config.disable_gpu()
    config.disable_mkldnn()  # the portable kernels: oneDNN cannot run every op x2paddle writes (see the runner)
    config.disable_glog_info()
    predictor = paddle_infer.create_predictor(config)
    # x2paddle names the inputs its own way (x0, ...): they are taken in forward's order
    handles = [predictor.get_input_handle(name) for name in predictor.get_input_names()]

    def run(feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        for handle, batch in zip(handles, feeds.values()):
            handle.reshape(list(batch.shape))
            handle.copy_from_cpu(batch)
        predictor.run()
        return [predictor.get_output_handle(name).copy_to_cpu() for name in predictor.get_output_names()]

    return sanity_check(ctx, run, "Paddle Inference")


class _NoFeedback:
    def __init__(self, *args, **kwargs):
        pass

    def start(self):
        pass


def _tail(log: str, lines: int = 3) -> str:
    kept = [line.strip() for line in log.strip().splitlines() if line.strip() and "INFO" not in line][-lines:]
    return f": {' | '.join(kept)}" if kept else ""
