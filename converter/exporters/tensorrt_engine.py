"""TensorRT engines, built by the TensorRT builder on the GPU they will run on (an engine is tied to its GPU model
and TensorRT version, both recorded), from an ONNX model whose graph carries the precision: the fp32 export
(`tensorrt`), the fp16 one (`tensorrt_fp16`, built from `onnx_fp16`) and a QDQ int8 one quantised here for
TensorRT (`tensorrt_int8`: int8 activations with zero point 0, which TensorRT requires).

Every network is strongly typed: each layer runs in the type its ONNX declares. TensorRT 11 removed the weak
typing flags (BuilderFlag.FP16, INT8 and the calibrators) and ignores the STRONGLY_TYPED flag, which TensorRT 10
needs: setting it builds the same engine on both. Built only where TensorRT's Python package and a CUDA GPU are
present; elsewhere the artifact is skipped with the reason (see `unavailable_here`)."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from ..core.errors import ConversionError
from .base import ExportContext, ExportResult, sanity_check
from .onnx_export import FILE as ONNX_FILE

FILE = "model.engine"
QDQ_FILE = "model_qdq.onnx"  # the int8 engine's source, kept beside it
WORKSPACE_BYTES = 1 << 30
MAX_BATCH = 64  # the optimisation profile's largest batch (TensorRT plans kernels for the range it is given)
OPT_BATCH = 8  # the throughput batch the verifier times
SOURCES = {"fp32": "onnx", "fp16": "onnx_fp16", "int8": "onnx"}  # the artifact each precision's ONNX comes from


@dataclass(frozen=True)
class InputProfile:
    """One input's shape range in the optimisation profile."""

    name: str
    min_shape: tuple[int, ...]
    opt_shape: tuple[int, ...]
    max_shape: tuple[int, ...]


@dataclass(frozen=True)
class EngineOptions:
    """What the builder is told: each input's shape range, the precision the ONNX graph declares and where that
    graph comes from, decided without TensorRT."""

    inputs: tuple[InputProfile, ...]
    precision: str = "fp32"
    source: str = "onnx"  # the artifact the engine is parsed from (int8: quantised from it first)
    workspace_bytes: int = WORKSPACE_BYTES
    strongly_typed: bool = True  # no precision flags: the graph's types decide
    tf32: bool = False  # TensorRT would run fp32 convolutions and matmuls in TF32 on Ampere and later


def engine_options(inputs: list[tuple[str, list]], dynamic: dict[str, list[int]], dynamic_batch: bool,
                   precision: str = "fp32") -> EngineOptions:
    """Per input (its name and shape, axes numbers or names, the first the batch): batch 1 to MAX_BATCH tuned for
    OPT_BATCH, or batch 1 only; a named axis from its smallest to its largest declared size, tuned for its first
    (the size timed). fp32 (TF32 off), fp16 or int8 as the source graph declares it."""
    if precision not in SOURCES:
        raise ValueError(f"TensorRT engines are built in {', '.join(SOURCES)} here, not {precision}")
    batches = (1, OPT_BATCH, MAX_BATCH) if dynamic_batch else (1, 1, 1)

    def at(shape: list, which: int) -> tuple[int, ...]:
        sizes = [batches[which]]
        for axis in shape[1:]:
            declared = dynamic.get(axis, [axis]) if isinstance(axis, str) else [axis]
            sizes.append((min(declared), declared[0], max(declared))[which])
        return tuple(sizes)
    profiles = tuple(InputProfile(name, at(shape, 0), at(shape, 1), at(shape, 2)) for name, shape in inputs)
    return EngineOptions(profiles, precision=precision, source=SOURCES[precision])


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


def export_int8(ctx: ExportContext) -> ExportResult:
    return _export(ctx, "int8")


def source_graph(ctx: ExportContext, options: EngineOptions) -> tuple[Path, dict]:
    """The ONNX file the engine is parsed from and what to record about it: the source artifact's file, or for
    int8 a QDQ model quantised from it for TensorRT (kept beside the engine)."""
    source = ctx.earlier[options.source] / ONNX_FILE
    if options.precision != "int8":
        return source, {}
    from .onnx_precision import CALIBRATION_METHOD, FOR_TENSORRT, quantise_qdq

    path = ctx.out_dir / QDQ_FILE
    images = quantise_qdq(ctx, source, path, FOR_TENSORRT)
    return path, {"quantised": FOR_TENSORRT.method, "calibration": f"{CALIBRATION_METHOD} over {images}",
                  "qdq_model": QDQ_FILE}


def _export(ctx: ExportContext, precision: str) -> ExportResult:
    entry = ctx.entry
    options = engine_options([(spec.name, spec.shape) for spec in entry.model_inputs], entry.dynamic,
                             entry.onnx.dynamic_batch, precision)
    source, source_details = source_graph(ctx, options)
    import tensorrt as trt
    import torch

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    # explicit batch (TensorRT 10's only mode), strongly typed
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(source.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ConversionError(f"TensorRT's ONNX parser: {errors[:300]}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace_bytes)
    if not options.tf32:
        config.clear_flag(trt.BuilderFlag.TF32)
    profile = builder.create_optimization_profile()
    declared = {network.get_input(i).name: tuple(network.get_input(i).shape) for i in range(network.num_inputs)}
    for shapes in options.inputs:  # a range only where the ONNX graph kept the axis dynamic (-1)
        fixed = declared.get(shapes.name, ())
        pinned = [tuple(size if index >= len(fixed) or fixed[index] == -1 else fixed[index]
                        for index, size in enumerate(shape))
                  for shape in (shapes.min_shape, shapes.opt_shape, shapes.max_shape)]
        profile.set_shape(shapes.name, *pinned)
    config.add_optimization_profile(profile)
    engine = builder.build_serialized_network(network, config)
    if engine is None:
        raise ConversionError("TensorRT's builder returned no engine (its log says why)")
    (ctx.out_dir / FILE).write_bytes(bytes(engine))
    from ..core.tensorrt_session import EngineSession

    session = EngineSession(ctx.out_dir / FILE, entry.output_names)
    max_diff = sanity_check(ctx, session.run, "TensorRT")  # loads, keeps the batch, finite: parity is judged later
    return ExportResult(FILE, {**asdict(options), **source_details, "tensorrt": trt.__version__,
                               "gpu": torch.cuda.get_device_name(0), "tensorrt_max_abs_diff": max_diff})
