"""Paddle inference model via x2paddle's PyTorch tracer, with its telemetry off and its exits caught."""
from __future__ import annotations

import contextlib
import io
import logging
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import torch

from ..core.errors import ConversionError
from .base import ExportContext, ExportResult, sanity_check

MODEL_FILES = ("model.json", "model.pdmodel")  # Paddle 3 (PIR) writes json, Paddle 2 pdmodel
PARAMS_FILE = "model.pdiparams"
CODE_FILE = "x2paddle_code.py"


def export(ctx: ExportContext) -> ExportResult:
    work = ctx.out_dir / "_x2paddle"
    log = _run_x2paddle(ctx.built.module, ctx.example, work)
    # x2paddle reports many failures by printing and returning: judge by what it wrote, not by its return.
    inference = work / "inference_model"
    model_file = next((inference / name for name in MODEL_FILES if (inference / name).is_file()), None)
    if model_file is None or not (inference / PARAMS_FILE).is_file():
        raise ConversionError(f"x2paddle wrote no inference model{_tail(log)}")
    shutil.move(str(model_file), ctx.out_dir / model_file.name)
    shutil.move(str(inference / PARAMS_FILE), ctx.out_dir / PARAMS_FILE)
    if (work / CODE_FILE).is_file():
        shutil.move(str(work / CODE_FILE), ctx.out_dir / CODE_FILE)  # the generated Paddle code, for debugging
    shutil.rmtree(work)
    max_diff = _check_with_paddle_inference(ctx, ctx.out_dir / model_file.name)
    return ExportResult(model_file.name, {"converter": "x2paddle pytorch2paddle (trace)",
                                          "predictor_max_abs_diff": max_diff})


def _run_x2paddle(module: torch.nn.Module, example: torch.Tensor, work: Path) -> str:
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
            x2p.pytorch2paddle(module, str(work), jit_type="trace", input_examples=[example],
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


def _check_with_paddle_inference(ctx: ExportContext, model_file: Path) -> float:
    import paddle.inference as paddle_infer

    config = paddle_infer.Config(str(model_file), str(model_file.parent / PARAMS_FILE))
    config.disable_gpu()
    config.disable_mkldnn()  # the portable kernels: oneDNN cannot run every op x2paddle writes (see the runner)
    config.disable_glog_info()
    predictor = paddle_infer.create_predictor(config)
    handle = predictor.get_input_handle(predictor.get_input_names()[0])

    def run(feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        (batch,) = feeds.values()
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
