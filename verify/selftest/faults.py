"""The conversion and deployment bugs the self-test injects, one at a time, each with the runtime that the
gate must name. A fault either edits a copy of the converted artifacts (then re-signs the manifest, as a
buggy converter would have written it), has the real converter rebuild one artifact from a subtly changed
model and puts it in place of the clean one, edits the zoo, or passes a faulty runtime to the verifier."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import yaml

from converter.manifest import describe_files, read_manifest, write_manifest
from verify.runners import Runner
from verify.runners.base import Feeds
from verify.runners.onnxruntime_runner import OnnxRuntimeRunner
from verify.runners.openvino_runner import OpenVinoRunner
from verify.runners.paddle_runners import PaddleInferenceRunner, PaddleJitRunner
from verify.runners.torch_runners import TorchEagerRunner, TorchScriptRunner

MODEL = "selftest"
TEXT_MODEL = "selftest-text"  # token ids and a mask at several lengths, an embedding and logits out
DETECTOR_MODEL = "selftest-detector"  # boxes, scores, labels and mask logits out
SEQUENCE_SIZES = (12, 7, 20)  # the text model's sequence lengths: exported and timed at the first
IMAGENET_MEAN = np.asarray([0.485, 0.456, 0.406], np.float32)[None, :, None, None]
IMAGENET_STD = np.asarray([0.229, 0.224, 0.225], np.float32)[None, :, None, None]


@dataclass(frozen=True)
class Rebuilt:
    """An artifact that the real converter builds from a changed copy of the clean model: `mutate` edits the
    reference's weights, `arch_args` change what the factory builds (a BatchNorm epsilon)."""

    artifact: str
    mutate: Callable[[torch.nn.Module], None] | None = None
    arch_args: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Fault:
    name: str
    description: str
    expected: tuple[str, ...]  # the runtimes the gate must name (and no other), or "preprocessing:<deployment>"
    inject: Callable[[Path], None] | None = None  # edits the work folder's copy (artifacts/, zoo.yaml)
    rebuilt: Rebuilt | None = None  # or: an artifact rebuilt from a changed model, in place of the clean one
    runners: dict[str, type[Runner]] = field(default_factory=dict)  # runtimes passed to the verifier instead
    localise: str | None = None  # the PyTorch module the divergence report must name
    model: str = MODEL  # the self-test model it is injected into
    blocks: bool = True  # False: a harmless difference the gate must pass (detections in another order)


# ---- runtimes that mishandle their input or output (registered in place of the real ones) ----

class BgrInputPaddleInference(PaddleInferenceRunner):
    """Feeds the model BGR where it was trained on RGB."""

    def run(self, feeds: Feeds) -> Feeds:
        return super().run({name: np.ascontiguousarray(batch[:, ::-1]) for name, batch in feeds.items()})


class WrongNormalisationOnnxRuntime(OnnxRuntimeRunner):
    """Normalises with mean 0.5 / std 0.5 (a common default) instead of the model's ImageNet statistics."""

    def run(self, feeds: Feeds) -> Feeds:
        pixels = {name: batch * IMAGENET_STD + IMAGENET_MEAN for name, batch in feeds.items()}
        return super().run({name: np.ascontiguousarray((p - 0.5) / 0.5, dtype=np.float32) for name, p in pixels.items()})


class TrainModeReference(TorchEagerRunner):
    """The reference left in train mode: dropout active, BatchNorm using the batch's own statistics."""

    def load(self, request) -> None:
        super().load(request)
        self.module.train()


class SwappedClassesTorchScript(TorchScriptRunner):
    """Returns its logits with classes 0 and 1 swapped (a label-map mix-up in the serving code)."""

    def run(self, feeds: Feeds) -> Feeds:
        out = {name: value.copy() for name, value in super().run(feeds).items()}
        logits = out[self.request.outputs[0]]
        logits[:, [0, 1]] = logits[:, [1, 0]]
        return out


class MaskIgnoringTorchScript(TorchScriptRunner):
    """Serving code that never builds the attention mask: every token counts, padding included."""

    def run(self, feeds: Feeds) -> Feeds:
        return super().run({name: np.ones_like(batch) if name == "attention_mask" else batch
                            for name, batch in feeds.items()})


class ScaledEmbeddingOpenVino(OpenVinoRunner):
    """Returns the embedding times 1.01 (a normalisation step applied twice): every cosine and nearest neighbour is
    unchanged; only the values move."""

    def run(self, feeds: Feeds) -> Feeds:
        out = {name: np.array(value, copy=True) for name, value in super().run(feeds).items()}
        if "embedding" in out:  # the text model's; the others are left as they are
            out["embedding"] *= np.float32(1.01)
        return out


class NanPaddleJit(PaddleJitRunner):
    """Returns one NaN logit (an overflow, or uninitialised memory)."""

    def run(self, feeds: Feeds) -> Feeds:
        out = {name: np.array(value, dtype=np.float32) for name, value in super().run(feeds).items()}
        out[self.request.outputs[0]][0, 0] = np.nan
        return out


def _best_detection(out: Feeds) -> int:
    """The slot of the first image's highest-scoring detection."""
    return int(np.argmax(out["scores"][0]))


def _copied(out: Feeds) -> dict[str, np.ndarray]:
    return {name: np.array(value, copy=True) for name, value in out.items()}


# A fault's runner replaces its runtime for every self-test model: it changes only the outputs it is about, and
# leaves a model without them (the classifier, the text model) as it is.


class ShiftedBoxOnnxRuntime(OnnxRuntimeRunner):
    """Moves the first image's best box 2 pixels to the right (an off-by-one in a decoding or letterbox step)."""

    def run(self, feeds: Feeds) -> Feeds:
        out = _copied(super().run(feeds))
        if "scores" not in out:
            return out
        out["boxes"][0, _best_detection(out)] += np.asarray([2, 0, 2, 0], out["boxes"].dtype)
        return out


class DroppedDetectionOpenVino(OpenVinoRunner):
    """Loses the first image's best detection (its score zeroed, as a filter or an NMS that went wrong)."""

    def run(self, feeds: Feeds) -> Feeds:
        out = _copied(super().run(feeds))
        if "scores" not in out:
            return out
        out["scores"][0, _best_detection(out)] = 0.0
        return out


class SwappedLabelTorchScript(TorchScriptRunner):
    """Gives the first image's best detection the other class (a label-map mix-up)."""

    def run(self, feeds: Feeds) -> Feeds:
        out = _copied(super().run(feeds))
        if "scores" not in out:
            return out
        best = _best_detection(out)
        out["labels"][0, best] = 1 - out["labels"][0, best]
        return out


class RaisedThresholdOnnxRuntime(OnnxRuntimeRunner):
    """Keeps only the detections scoring 0.6 or more (a deployment's score threshold set above the model's)."""

    def run(self, feeds: Feeds) -> Feeds:
        out = _copied(super().run(feeds))
        if "scores" not in out:
            return out
        out["scores"][out["scores"] < 0.6] = 0.0
        return out


class ShuffledDetectionsOnnxRuntime(OnnxRuntimeRunner):
    """Returns each image's detections in another order (a sort that is not stable): the same detections."""

    def run(self, feeds: Feeds) -> Feeds:
        out = _copied(super().run(feeds))
        if "scores" not in out:
            return out
        order = np.random.default_rng(0).permutation(out["scores"].shape[1])
        return {name: value[:, order] if name in ("boxes", "scores", "labels") else value for name, value in out.items()}


class BorderFlippedMaskOpenVino(OpenVinoRunner):
    """Gives 5% of the mask's pixels, all on borders between classes, their neighbour's class (a resize that rounds
    the other way)."""

    def run(self, feeds: Feeds) -> Feeds:
        out = _copied(super().run(feeds))
        if "mask" not in out:
            return out
        mask = out["mask"]
        classes = mask.argmax(axis=1)
        border = np.zeros(classes.shape, bool)
        border[..., 1:] |= classes[..., 1:] != classes[..., :-1]
        border[..., 1:, :] |= classes[..., 1:, :] != classes[..., :-1, :]
        for image, y, x in np.argwhere(border)[:int(0.05 * classes.size)]:
            mask[image, :, y, x] = np.roll(mask[image, :, y, x], 1)
        return out


class SwappedMaskChannelsTorchScript(TorchScriptRunner):
    """Returns the mask with the red and green class channels swapped."""

    def run(self, feeds: Feeds) -> Feeds:
        out = _copied(super().run(feeds))
        if "mask" not in out:
            return out
        out["mask"] = np.ascontiguousarray(out["mask"][:, [0, 2, 1]])
        return out


# ---- edits of the converted artifacts ----

def resign(root: Path, artifact: str, model: str = MODEL) -> None:
    """Record an edited artifact's files in the manifest, as if the converter had written them."""
    manifest = read_manifest(root)
    record = manifest.models[model].artifacts[artifact]
    record.files = describe_files((root / record.path).parent, root)
    write_manifest(root, manifest)


def _edit_onnx(workdir: Path, artifact: str, edit: Callable) -> None:
    import onnx

    root = workdir / "artifacts"
    path = root / read_manifest(root).models[MODEL].artifacts[artifact].path
    model = onnx.load(str(path))
    edit(model)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    resign(root, artifact)


def scale_conv_weight(model, node_name: str, factor: float) -> None:
    """Multiply the weight initializer of the ONNX Conv node `node_name` by `factor`, in place."""
    from onnx import numpy_helper

    node = next(n for n in model.graph.node if n.name == node_name)
    weight = next(t for t in model.graph.initializer if t.name == node.input[1])
    scaled = numpy_helper.to_array(weight) * np.float32(factor)
    weight.CopyFrom(numpy_helper.from_array(scaled.astype(np.float32), weight.name))


def scale_mid_conv_weight(workdir: Path) -> None:
    """The weight tensor of the middle convolution, times 1.01."""
    _edit_onnx(workdir, "onnx", lambda model: scale_conv_weight(model, "/mid/conv/Conv", 1.01))


def scale_dynamo_mid_conv_weight(workdir: Path) -> None:
    """The dynamo-exported ONNX's middle convolution weights, times 1.01 (its nodes are named by op, not scope:
    the conv is found by the module scope the exporter records)."""
    from verify.cells.localize import node_module

    def edit(model):
        conv = next(n for n in model.graph.node if n.op_type == "Conv" and (node_module(n) or "").startswith("mid."))
        scale_conv_weight(model, conv.name, 1.01)

    _edit_onnx(workdir, "onnx_dynamo", edit)


def scale_ir_mid_conv_weight(workdir: Path, model: str = MODEL) -> None:
    """The OpenVINO IR's middle convolution weights (its only 16x16x3x3 float constant; BatchNorm already folded
    in), times 1.01, edited in model.bin after conversion."""
    import xml.etree.ElementTree as ElementTree

    root = workdir / "artifacts"
    xml = root / read_manifest(root).models[model].artifacts["openvino_ir"].path
    constants = [layer.find("data") for layer in ElementTree.parse(xml).getroot().iter("layer")
                 if layer.get("type") == "Const"]
    (data,) = [d for d in constants if d is not None and d.get("element_type") == "f32"
               and d.get("shape") == "16, 16, 3, 3"]
    offset, size = int(data.get("offset")), int(data.get("size"))
    weights = np.memmap(xml.with_suffix(".bin"), dtype=np.float32, mode="r+", offset=offset, shape=(size // 4,))
    weights *= np.float32(1.01)
    weights.flush()
    del weights
    resign(root, "openvino_ir", model)


def load_paddle_state(path: Path) -> dict:
    """paddle.load of a .pdparams file as tensors, from any thread. Paddle's dynamic mode is per thread and on
    only in the thread that imported paddle (and, from it, where that was the main thread): in a self-test
    thread after paddle was imported in another, paddle.load returned raw DenseTensors (`shape` a method)."""
    import paddle

    paddle.disable_static()
    return paddle.load(str(path))


def scale_dygraph_mid_conv_weight(workdir: Path, model: str = MODEL) -> None:
    """The Paddle dygraph model's middle convolution weights (its only 16x16x3x3 tensor), times 1.01, edited in
    model.pdparams after conversion."""
    import paddle

    root = workdir / "artifacts"
    params = (root / read_manifest(root).models[model].artifacts["paddle_dygraph"].path).with_name("model.pdparams")
    state = load_paddle_state(params)
    (name,) = [key for key, value in state.items() if tuple(value.shape) == (16, 16, 3, 3)]
    state[name] = np.asarray(state[name]) * np.float32(1.01)
    # a new file in its place: the converter hard-links these weights into the paddle artifact, which stays clean
    paddle.save(state, str(params.with_suffix(".edited")))
    params.with_suffix(".edited").replace(params)
    resign(root, "paddle_dygraph", model)


def resize_to_nearest(workdir: Path) -> None:
    """Every Resize node switched from bilinear to nearest-neighbour (a converter's op-mapping bug)."""
    _edit_onnx(workdir, "onnx_simplified", _nearest)


def tvm_built_with_nearest_resize(workdir: Path) -> None:
    """The TVM library compiled again from the ONNX model with its bilinear Resize changed to nearest (a frontend's
    op-mapping bug): the library alone is wrong, the ONNX files are not."""
    import onnx

    from converter.core.tvm_cpu import build_from_onnx

    root = workdir / "artifacts"
    record = read_manifest(root).models[MODEL]
    model = onnx.load(str(root / record.artifacts["onnx"].path))
    _nearest(model)
    build_from_onnx(model, (root / record.artifacts["tvm"].path).parent)
    resign(root, "tvm")


def _nearest(model) -> None:
    from onnx import helper

    resizes = [n for n in model.graph.node if n.op_type == "Resize"]
    if not resizes:
        raise RuntimeError("the self-test model has no Resize node")
    for node in resizes:
        kept = [a for a in node.attribute if a.name != "mode"]
        del node.attribute[:]
        node.attribute.extend(kept + [helper.make_attribute("mode", "nearest")])


def weights_to_float16(workdir: Path) -> None:
    """Every float weight stored as float16, cast back to float32 where it is used: the precision an fp16
    export keeps, run by ONNX Runtime's fp32 CPU kernels. Verified with the model's fp32 tolerances."""
    from onnx import TensorProto, helper, numpy_helper

    def edit(model):
        resize_inputs = {i for n in model.graph.node if n.op_type == "Resize" for i in n.input}
        casts, kept = [], []
        for tensor in model.graph.initializer:
            if tensor.data_type != TensorProto.FLOAT or tensor.name in resize_inputs:
                kept.append(tensor)
                continue
            half = numpy_helper.from_array(numpy_helper.to_array(tensor).astype(np.float16), f"{tensor.name}_fp16")
            kept.append(half)
            casts.append(helper.make_node("Cast", [half.name], [tensor.name], to=TensorProto.FLOAT,
                                          name=f"fp16_cast_{len(casts)}"))
        del model.graph.initializer[:]
        model.graph.initializer.extend(kept)
        nodes = casts + list(model.graph.node)
        del model.graph.node[:]
        model.graph.node.extend(nodes)

    _edit_onnx(workdir, "onnx", edit)


def fix_sequence_length(workdir: Path) -> None:
    """The text model's ONNX with its sequence axis fixed at the export length (exported without that dynamic
    axis): right at the first length, refused at every other."""
    import onnx

    root = workdir / "artifacts"
    path = root / read_manifest(root).models[TEXT_MODEL].artifacts["onnx"].path
    model = onnx.load(str(path))
    for graph_input in model.graph.input:
        graph_input.type.tensor_type.shape.dim[1].dim_value = SEQUENCE_SIZES[0]
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    resign(root, "onnx", TEXT_MODEL)


def add_bgr_deployment(workdir: Path) -> None:
    """A deployment whose OpenCV code never converts cv2.imread's BGR to RGB."""
    zoo_path = workdir / "zoo.yaml"
    zoo = yaml.safe_load(zoo_path.read_text())
    zoo["models"][0]["deployments"] = zoo["models"][0].get("deployments") or [
        {"name": "pil-numpy", "library": "pil-numpy"}, {"name": "opencv", "library": "opencv"}]
    zoo["models"][0]["deployments"].append({"name": "opencv-bgr", "library": "opencv", "channel_order": "BGR"})
    zoo_path.write_text(yaml.safe_dump(zoo, sort_keys=False))


# ---- artifacts re-exported from a changed model: the converter's own bug ----

def drop_head_conv_bias(module: torch.nn.Module) -> None:
    with torch.no_grad():
        module.head.conv.bias.zero_()


def scale_mid_conv_weight_in_torch(module: torch.nn.Module) -> None:
    with torch.no_grad():
        module.mid.conv.weight.mul_(1.01)


FAULTS: tuple[Fault, ...] = (
    Fault("onnx-weight-1pct", "ONNX: the middle conv's weights changed by 1%", ("onnxruntime", "openvino"),
          inject=scale_mid_conv_weight, localise="mid.conv"),
    Fault("onnx-dynamo-weight-1pct", "dynamo-exported ONNX: the middle conv's weights changed by 1% after export",
          # the dynamo exporter folds mid.conv into its BatchNorm and files the fused Conv under mid.bn
          ("onnxruntime", "openvino"), inject=scale_dynamo_mid_conv_weight, localise="mid.bn"),
    Fault("torchscript-weight-1pct", "TorchScript exported with the middle conv's weights changed by 1%",
          ("torchscript",), rebuilt=Rebuilt("torchscript", scale_mid_conv_weight_in_torch), localise="mid.conv"),
    Fault("exported-program-weight-1pct", "torch.export program exported with the middle conv's weights changed by 1%",
          ("torch-export",), rebuilt=Rebuilt("exported_program", scale_mid_conv_weight_in_torch)),
    Fault("openvino-ir-weight-1pct", "OpenVINO IR: the middle conv's weights changed by 1% in model.bin after "
          "conversion", ("openvino",), inject=scale_ir_mid_conv_weight, localise="mid.bn"),
    Fault("paddle-bias-dropped", "Paddle: the last conv's bias dropped (zero) in the params",
          ("paddle-inference", "paddle-jit"), rebuilt=Rebuilt("paddle", drop_head_conv_bias)),
    Fault("paddle-dygraph-weight-1pct", "Paddle dygraph: the middle conv's weights changed by 1% in model.pdparams "
          "after conversion", ("paddle-dygraph",), inject=scale_dygraph_mid_conv_weight, localise="mid.conv"),
    Fault("bgr-input", "Paddle Inference fed BGR instead of RGB", ("paddle-inference",),
          runners={"paddle-inference": BgrInputPaddleInference}),
    Fault("wrong-mean-std", "ONNX Runtime fed inputs normalised with mean/std 0.5 instead of ImageNet's",
          ("onnxruntime",), runners={"onnxruntime": WrongNormalisationOnnxRuntime}),
    Fault("reference-train-mode", "the reference left in train mode (dropout, batch statistics)", ("torch",),
          runners={"torch": TrainModeReference}),
    Fault("batchnorm-epsilon", "ONNX exported with BatchNorm epsilon 1e-3 (Keras) instead of 1e-5",
          ("onnxruntime", "openvino"),
          rebuilt=Rebuilt("onnx", arch_args={"bn_eps": 1e-3}), localise="stem.conv"),
    Fault("resize-nearest", "ONNX (simplified): the bilinear Resize changed to nearest", ("onnxruntime", "openvino"),
          inject=resize_to_nearest, localise="up"),
    Fault("onnx-float16", "ONNX weights cast to float16, checked with fp32 tolerances", ("onnxruntime", "openvino"),
          inject=weights_to_float16, localise="stem.conv"),
    Fault("tvm-nearest-resize", "TVM library compiled with the bilinear Resize changed to nearest", ("tvm",),
          inject=tvm_built_with_nearest_resize),
    Fault("swapped-classes", "TorchScript's output with classes 0 and 1 swapped", ("torchscript",),
          runners={"torchscript": SwappedClassesTorchScript}),
    Fault("nan-output", "paddle-jit returns one NaN logit", ("paddle-jit",), runners={"paddle-jit": NanPaddleJit}),
    Fault("bgr-deployment-preprocessing", "a deployment's OpenCV preprocessing feeds BGR",
          ("preprocessing:opencv-bgr",), inject=add_bgr_deployment),
    Fault("sequence-specialised", "text model's ONNX with the sequence length fixed at export",
          ("onnxruntime", "openvino"), inject=fix_sequence_length, model=TEXT_MODEL),
    Fault("mask-ignored", "TorchScript served without the attention mask (padding counts)", ("torchscript",),
          runners={"torchscript": MaskIgnoringTorchScript}, model=TEXT_MODEL),
    Fault("embedding-scaled", "OpenVINO's embedding output scaled by 1.01", ("openvino",),
          runners={"openvino": ScaledEmbeddingOpenVino}, model=TEXT_MODEL),
    Fault("box-shifted-2px", "ONNX Runtime's best box of one image moved 2 px", ("onnxruntime",),
          runners={"onnxruntime": ShiftedBoxOnnxRuntime}, model=DETECTOR_MODEL),
    Fault("detection-dropped", "OpenVINO loses one image's best detection", ("openvino",),
          runners={"openvino": DroppedDetectionOpenVino}, model=DETECTOR_MODEL),
    Fault("label-swapped", "TorchScript gives one detection the other class", ("torchscript",),
          runners={"torchscript": SwappedLabelTorchScript}, model=DETECTOR_MODEL),
    Fault("score-threshold-raised", "ONNX Runtime drops the detections scoring under 0.6 (the zoo's threshold is 0.3)",
          ("onnxruntime",), runners={"onnxruntime": RaisedThresholdOnnxRuntime}, model=DETECTOR_MODEL),
    Fault("mask-borders-flipped", "OpenVINO's mask: 5% of the pixels, on class borders, given the neighbour's class",
          ("openvino",), runners={"openvino": BorderFlippedMaskOpenVino}, model=DETECTOR_MODEL),
    Fault("mask-channels-swapped", "TorchScript's mask with two class channels swapped", ("torchscript",),
          runners={"torchscript": SwappedMaskChannelsTorchScript}, model=DETECTOR_MODEL),
    Fault("detections-reordered", "ONNX Runtime returns the same detections in another order (must pass)", (),
          runners={"onnxruntime": ShuffledDetectionsOnnxRuntime}, model=DETECTOR_MODEL, blocks=False),
)
