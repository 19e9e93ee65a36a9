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
from ..zoo import ModelEntry
from .base import ExportContext, ExportResult
from .onnx_export import FILE, _op_counts, check_with_onnxruntime

CALIBRATION_BATCH = 1  # images per calibration step; MinMax keeps the extremes over every step
CALIBRATION_METHOD = "MinMax"


def export_fp16(ctx: ExportContext) -> ExportResult:
    model = onnx.load(str(ctx.earlier["onnx"] / FILE))
    keep = list(ctx.entry.onnx.fp16_keep_fp32)
    half = to_fp16(model, keep)
    path = ctx.out_dir / FILE
    onnx.save(half, str(path))
    onnx.checker.check_model(str(path), full_check=True)
    max_diff = check_with_onnxruntime(str(path), ctx)  # loads, keeps the batch, finite; parity is judged later
    details = {"precision": "fp16", "converter": "onnxruntime.transformers.float16 (keep_io_types: float32 in and out)",
               "ops": _op_counts(half), "ort_max_abs_diff": max_diff}
    if keep:
        details["kept_fp32"] = f"{len(keep)} node(s) left in float32 (onnx.fp16_keep_fp32)"
    return ExportResult(FILE, details)


def fp16_candidates(model: onnx.ModelProto) -> list[str]:
    """The nodes the fp16 converter turns to float16 (every node but the op types it always leaves in float32), in
    graph order: what `onnx.fp16_keep_fp32` may name."""
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST

    name_nodes(model.graph)
    return [node.name for node in model.graph.node if node.op_type not in DEFAULT_OP_BLOCK_LIST]


def to_fp16(model: onnx.ModelProto, keep_fp32: list[str] | tuple[str, ...] = ()) -> onnx.ModelProto:
    """`model` with weights and compute in float16, inputs and outputs kept float32, the nodes named in `keep_fp32`
    left in float32. ConversionError naming any node the graph does not have."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    if keep_fp32:
        name_nodes(model.graph)
    _check_names(keep_fp32, {node.name for node in model.graph.node}, "onnx.fp16_keep_fp32", "the onnx artifact")
    half = convert_float_to_float16(model, keep_io_types=True, node_block_list=list(keep_fp32))
    if keep_fp32:
        skip_float16_round_trips(half.graph)
    sort_topologically(half.graph)  # the converter appends the input casts after the nodes that read them
    return half


def skip_float16_round_trips(graph: onnx.GraphProto) -> int:
    """Between two nodes left in float32 the fp16 converter still passes the tensor through float16 (a Cast to
    float16, then one back), so a value past 65504 still overflows. Each such Cast back reads the float32 tensor
    itself instead (a Cast float32 to float32, which ONNX Runtime removes); the Cast to float16, if nothing else reads
    it, goes. Returns how many round trips were skipped."""
    produced = {out: node for node in graph.node for out in node.output}
    readers: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            readers[name] = readers.get(name, 0) + 1

    def to(node) -> int | None:
        return next((a.i for a in node.attribute if a.name == "to"), None)

    skipped, unused = 0, []
    for node in graph.node:
        source = produced.get(node.input[0]) if node.op_type == "Cast" and node.input else None
        if (source is None or source.op_type != "Cast" or to(node) != onnx.TensorProto.FLOAT
                or to(source) != onnx.TensorProto.FLOAT16):
            continue
        node.input[0] = source.input[0]
        readers[source.output[0]] -= 1
        if readers[source.output[0]] == 0:
            unused.append(source)
        skipped += 1
    for node in unused:
        graph.node.remove(node)
    return skipped


def name_nodes(graph: onnx.GraphProto) -> None:
    """Give each unnamed node a name, `<op>_<index>`, the same on every run: the keep lists name nodes."""
    taken = {node.name for node in graph.node}
    for index, node in enumerate(graph.node):
        if not node.name:
            node.name = next(name for n in range(index, index + len(taken) + 1)
                             if (name := f"{node.op_type}_{n}") not in taken)
            taken.add(node.name)


def _check_names(names, present: set[str], field: str, where: str) -> None:
    missing = [name for name in names if name not in present]
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise ConversionError(f"{field}: {len(missing)} node(s) not in {where}: {shown} (the graph changed? run "
                              "`python -m verify --repair` again)")


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


def calibration_inputs(entry: ModelEntry) -> tuple[dict[str, np.ndarray], str]:
    """Every input's calibration samples: the zoo's `calibration.images` folder, preprocessed as the image input's
    are, where it has one; otherwise the synthetic samples the converter re-estimates BatchNorm with. Returns
    the feeds and where they came from."""
    from ..core.images import image_files, preprocess, read_rgb
    from ..core.samples import sample_feeds

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
    keep = list(ctx.entry.onnx.int8_keep_fp32)
    source = quantise_qdq(ctx, ctx.earlier["onnx"] / FILE, path, FOR_ONNXRUNTIME, keep)
    max_diff = check_with_onnxruntime(str(path), ctx)  # loads, keeps the batch, finite; parity is judged later
    details = {"precision": "int8", "converter": FOR_ONNXRUNTIME.method,
               "calibration": f"{CALIBRATION_METHOD} over {source}",
               "ops": _op_counts(onnx.load(str(path))), "ort_max_abs_diff": max_diff}
    if keep:
        details["kept_fp32"] = f"{len(keep)} node(s) left in float32 (onnx.int8_keep_fp32)"
    return ExportResult(FILE, details)


def quantise_qdq(ctx: ExportContext, fp32_path: Path, path: Path, scheme: QdqScheme,
                 keep_fp32: list[str] | tuple[str, ...] = ()) -> str:
    """The fp32 ONNX model at `fp32_path` statically quantised to `path` (QDQ format, per-channel int8 weights,
    activations as `scheme` says, MinMax calibration on the model's calibration images, the nodes in `keep_fp32`
    left in float32) and checked. Returns where the calibration images came from."""
    feeds, source = calibration_inputs(ctx.entry)
    with tempfile.TemporaryDirectory(dir=ctx.out_dir.parent) as scratch:
        QdqQuantiser(fp32_path, feeds, scheme, Path(scratch)).build(path, keep_fp32)
    return source


class QdqQuantiser:
    """One model's static quantisation, prepared and calibrated once, built as often as asked with other nodes left
    in float32 (the mixed-precision search builds dozens). `scratch`: a folder it may write to while it is used."""

    def __init__(self, fp32_path: Path, feeds: dict[str, np.ndarray], scheme: QdqScheme, scratch: Path) -> None:
        from onnxruntime.quantization.shape_inference import quant_pre_process

        self.feeds, self.scheme = feeds, scheme
        self.prepared, self.ranges = scratch / "prepared.onnx", scratch / "calibration.json"
        self.ranges.unlink(missing_ok=True)
        # ORT's recommended preparation: shape inference and graph optimisation (folds what can be folded)
        quant_pre_process(str(fp32_path), str(self.prepared), skip_symbolic_shape=True)
        prepared = onnx.load(str(self.prepared))
        name_nodes(prepared.graph)  # the optimiser's fused nodes may have none
        onnx.save(prepared, str(self.prepared))
        self.nodes = [node.name for node in prepared.graph.node]

    def build(self, path: Path, keep_fp32: list[str] | tuple[str, ...] = ()) -> None:
        """The quantised model at `path`, the nodes of the prepared model named in `keep_fp32` left in float32."""
        from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, \
            quantize_static

        _check_names(keep_fp32, set(self.nodes), "onnx.int8_keep_fp32", "the int8 model's prepared graph")
        feeds = self.feeds

        class Reader(CalibrationDataReader):
            def __init__(self) -> None:
                self.steps = iter(range(0, len(next(iter(feeds.values()))), CALIBRATION_BATCH))

            def get_next(self):
                start = next(self.steps, None)
                return None if start is None else {name: array[start:start + CALIBRATION_BATCH]
                                                   for name, array in feeds.items()}

        try:  # the first build calibrates and keeps the ranges; later ones reuse them
            quantize_static(str(self.prepared), str(path), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=getattr(QuantType, self.scheme.activation_type),
                            weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax,
                            nodes_to_exclude=list(keep_fp32) or None, calibration_cache_path=str(self.ranges),
                            extra_options={"ActivationSymmetric": self.scheme.symmetric_activations,
                                           "WeightSymmetric": True})
        except Exception as exc:
            raise ConversionError(f"onnxruntime static quantisation failed: {' '.join(str(exc).split())}") from None
        onnx.checker.check_model(str(path), full_check=True)

    def quantised_nodes(self, path: Path) -> list[str]:
        """The nodes of the prepared model that the quantised model at `path` feeds from a DequantizeLinear: what
        `keep_fp32` can usefully name, in graph order."""
        model = onnx.load(str(path))
        dequantised = {out for node in model.graph.node if node.op_type == "DequantizeLinear" for out in node.output}
        reading = {node.name for node in model.graph.node if any(name in dequantised for name in node.input)}
        return [name for name in self.nodes if name in reading]
