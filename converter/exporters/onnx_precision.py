"""Reduced-precision ONNX variants of the raw ONNX export: fp16 (weights and compute in float16, inputs and
outputs kept float32) and int8 (ONNX Runtime static quantisation, QDQ format, per-channel weights, calibrated
on images). Both keep the raw model's dynamic batch axis."""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from ..core.errors import ConversionError
from .base import ExportContext, ExportResult
from .onnx_export import FILE, _op_counts, check_with_onnxruntime

CALIBRATION_BATCH = 1  # images per calibration step; MinMax keeps the extremes over every step
CALIBRATION_METHOD = "MinMax"


def export_fp16(ctx: ExportContext) -> ExportResult:
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = onnx.load(str(ctx.earlier["onnx"] / FILE))
    half = convert_float_to_float16(model, keep_io_types=True)
    sort_topologically(half.graph)  # the converter appends the input casts after the nodes that read them
    path = ctx.out_dir / FILE
    onnx.save(half, str(path))
    onnx.checker.check_model(str(path), full_check=True)
    max_diff = check_with_onnxruntime(str(path), ctx)  # loads, keeps the batch, finite; parity is judged later
    return ExportResult(FILE, {"precision": "fp16", "converter": "onnxruntime.transformers.float16 "
                                                                 "(keep_io_types: float32 in and out)",
                               "ops": _op_counts(half), "ort_max_abs_diff": max_diff})


def sort_topologically(graph: onnx.GraphProto) -> None:
    """Reorder the graph's nodes so each comes after the nodes whose outputs it reads (ONNX requires it)."""
    available = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        ready = [node for node in pending if all(name in available for name in node.input)]
        if not ready:
            raise ConversionError("the fp16 graph has a cycle or reads a tensor nothing produces")
        for node in ready:
            available.update(node.output)
        ordered += ready
        pending = [node for node in pending if not any(node is r for r in ready)]
    del graph.node[:]
    graph.node.extend(ordered)


def calibration_inputs(ctx: ExportContext) -> tuple[dict[str, np.ndarray], str]:
    """Every input's calibration samples: the zoo's `calibration.images` folder, preprocessed as the image input's
    are, where it has one; otherwise the synthetic samples the converter re-estimates BatchNorm with. Returns
    the feeds and where they came from."""
    from ..core.images import image_files, preprocess, read_rgb
    from ..core.samples import sample_feeds

    entry = ctx.entry
    folder, image = entry.calibration.images, entry.image_input
    given, source = {}, None
    if folder is not None and image is not None:
        paths = image_files(Path(folder))[0][:entry.calibration.max_images]
        if not paths:
            raise ConversionError(f"calibration.images: no images in {folder}")
        images = [read_rgb(path) for path in paths]
        given, source = {image.name: preprocess(images, entry.preprocess)}, f"{len(images)} images from {folder}"
    count = len(next(iter(given.values()))) if given else \
        min(entry.calibration.max_images, entry.calibration.batches * entry.calibration.batch_size)
    what = "synthetic images" if entry.inputs is None else "generated samples"
    return sample_feeds(entry, count, entry.seed + 7919, given=given), source or f"{count} {what}"


@dataclass(frozen=True)
class QdqScheme:
    """How activations are quantised: ONNX Runtime's CPU default (uint8 with a zero point, asymmetric) or
    TensorRT's requirement (int8, zero point 0). Weights are int8, symmetric, per output channel in both."""

    name: str
    activation_type: str  # 'QUInt8' or 'QInt8' (onnxruntime.quantization.QuantType)
    symmetric_activations: bool

    @property
    def method(self) -> str:
        """How a model quantised with this scheme was made, as the manifest records it."""
        return f"onnxruntime.quantization.quantize_static: QDQ, per-channel int8 weights, {self.name}"


FOR_ONNXRUNTIME = QdqScheme("uint8 activations", "QUInt8", symmetric_activations=False)
FOR_TENSORRT = QdqScheme("int8 activations, symmetric (zero point 0, as TensorRT requires)", "QInt8",
                         symmetric_activations=True)


def export_int8(ctx: ExportContext) -> ExportResult:
    path = ctx.out_dir / FILE
    source = quantise_qdq(ctx, ctx.earlier["onnx"] / FILE, path, FOR_ONNXRUNTIME)
    max_diff = check_with_onnxruntime(str(path), ctx)  # loads, keeps the batch, finite; parity is judged later
    return ExportResult(FILE, {"precision": "int8",
                               "converter": FOR_ONNXRUNTIME.method,
                               "calibration": f"{CALIBRATION_METHOD} over {source}",
                               "ops": _op_counts(onnx.load(str(path))), "ort_max_abs_diff": max_diff})


def quantise_qdq(ctx: ExportContext, fp32_path: Path, path: Path, scheme: QdqScheme) -> str:
    """The fp32 ONNX model at `fp32_path` statically quantised to `path` (QDQ format, per-channel int8 weights,
    activations as `scheme` says, MinMax calibration on the model's calibration images) and checked. Returns
    where the calibration images came from."""
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, \
        quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    feeds, source = calibration_inputs(ctx)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.steps = iter(range(0, len(next(iter(feeds.values()))), CALIBRATION_BATCH))

        def get_next(self):
            start = next(self.steps, None)
            return None if start is None else {name: array[start:start + CALIBRATION_BATCH]
                                               for name, array in feeds.items()}

    with tempfile.TemporaryDirectory(dir=ctx.out_dir.parent) as scratch:
        prepared = Path(scratch) / "prepared.onnx"
        # ORT's recommended preparation: shape inference and graph optimisation (folds what can be folded)
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        try:
            quantize_static(str(prepared), str(path), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=getattr(QuantType, scheme.activation_type),
                            weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax,
                            extra_options={"ActivationSymmetric": scheme.symmetric_activations,
                                           "WeightSymmetric": True})
        except Exception as exc:
            raise ConversionError(f"onnxruntime static quantisation failed: {' '.join(str(exc).split())}") from None
    onnx.checker.check_model(str(path), full_check=True)
    return source
