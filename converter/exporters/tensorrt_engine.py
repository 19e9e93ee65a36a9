"""TensorRT: an fp32 engine (and, as the `tensorrt_fp16` format, an fp16 one) built by the TensorRT builder from the
ONNX model, on the GPU it will run on (an engine is tied to its GPU model and TensorRT version, both recorded).
Built only where TensorRT's Python package and a CUDA GPU are present; elsewhere the artifact is skipped with the
reason (see `unavailable_here`)."""
from __future__ import annotations

from dataclasses import asdict, dataclass

from ..core.errors import ConversionError
from .base import ExportContext, ExportResult, sanity_check
from .onnx_export import FILE as ONNX_FILE

FILE = "model.engine"
WORKSPACE_BYTES = 1 << 30
MAX_BATCH = 64  # the optimisation profile's largest batch (TensorRT plans kernels for the range it is given)
OPT_BATCH = 8  # the throughput batch the verifier times


@dataclass(frozen=True)
class EngineOptions:
    """What the builder is told: the input's shape range and the precision flags, decided without TensorRT."""

    input_name: str
    min_shape: tuple[int, ...]
    opt_shape: tuple[int, ...]
    max_shape: tuple[int, ...]
    workspace_bytes: int = WORKSPACE_BYTES
    fp16: bool = False
    int8: bool = False
    tf32: bool = False  # TensorRT enables TF32 by default on Ampere and later: an fp32 engine turns it off


def engine_options(input_name: str, sample_shape: tuple[int, ...], dynamic_batch: bool,
                   precision: str = "fp32") -> EngineOptions:
    """fp32 (no fp16, int8 or TF32), or fp16 (TensorRT may pick fp16 kernels, still no TF32); batch 1 to
    MAX_BATCH tuned for OPT_BATCH, or batch 1 only."""
    if precision not in ("fp32", "fp16"):
        raise ValueError(f"TensorRT engines are built in fp32 or fp16 here, not {precision}")
    fp16 = precision == "fp16"
    if not dynamic_batch:
        fixed = (1, *sample_shape)
        return EngineOptions(input_name, fixed, fixed, fixed, fp16=fp16)
    return EngineOptions(input_name, (1, *sample_shape), (OPT_BATCH, *sample_shape), (MAX_BATCH, *sample_shape),
                         fp16=fp16)


def unavailable_here() -> str | None:
    """Why no engine can be built on this machine, or None."""
    import importlib.util

    if importlib.util.find_spec("tensorrt") is None:
        return ("TensorRT is not installed (pip install '.[gpu]' on a CUDA machine): the engine is built on the GPU "
                "it runs on")
    import torch

    if not torch.cuda.is_available():
        return "no CUDA GPU: a TensorRT engine is built on the GPU it runs on"
    return None


def export(ctx: ExportContext) -> ExportResult:
    return _export(ctx, "fp32")


def export_fp16(ctx: ExportContext) -> ExportResult:
    return _export(ctx, "fp16")


def _export(ctx: ExportContext, precision: str) -> ExportResult:
    import tensorrt as trt
    import torch

    entry = ctx.entry
    options = engine_options(entry.input.name, tuple(entry.input.shape), entry.onnx.dynamic_batch, precision)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch: TensorRT 10's only mode
    parser = trt.OnnxParser(network, logger)
    if not parser.parse((ctx.earlier["onnx"] / ONNX_FILE).read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ConversionError(f"TensorRT's ONNX parser: {errors[:300]}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace_bytes)
    if not options.tf32:
        config.clear_flag(trt.BuilderFlag.TF32)
    if options.fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    profile.set_shape(options.input_name, options.min_shape, options.opt_shape, options.max_shape)
    config.add_optimization_profile(profile)
    engine = builder.build_serialized_network(network, config)
    if engine is None:
        raise ConversionError("TensorRT's builder returned no engine (its log says why)")
    (ctx.out_dir / FILE).write_bytes(bytes(engine))
    from ..core.tensorrt_session import EngineSession

    session = EngineSession(ctx.out_dir / FILE, list(entry.outputs))
    max_diff = sanity_check(ctx, session.run, "TensorRT")  # loads, keeps the batch, finite: parity is judged later
    return ExportResult(FILE, {**asdict(options), "tensorrt": trt.__version__,
                               "gpu": torch.cuda.get_device_name(0), "tensorrt_max_abs_diff": max_diff})
