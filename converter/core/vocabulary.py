"""The workbench's vocabulary: every device, artifact and runtime name, registered once, here.

Each registration names its implementation as 'module:attribute', imported only when it is used (the way
Python entry points register plugins). That keeps the names in one place that both sides can read: the zoo
validates `required`, `tolerance_overrides`, `allow_failures` and the command lines' lists against these
registries, while the converter never imports the verifier's runners. Adding a runtime is its module under
`verify/runners/` and one `RUNTIMES.register(...)` line below; adding a format is an exporter module and one
`ARTIFACTS.register(...)` line; adding a task is its module under `verify/tasks/` and one `TASKS.register(...)`
line.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .registry import Registry


@dataclass(frozen=True)
class DeviceSpec:
    name: str
    gpu: bool  # drivers reserve address space: GPU workers get no memory cap


@dataclass(frozen=True)
class Route:
    """Another way to build an artifact (`verify --repair` tries them): one zoo field set to another value, or, with
    `field` 'formats', one format swapped for another in the model's `formats` or `candidates` (value: (from, to))."""

    label: str  # what the route is, for people: 'opset 18', 'TorchScript script instead of trace'
    field: str  # the zoo field, dotted: 'onnx.opset'; or 'formats'
    value: Any


FIXED_BATCH = Route("fixed batch 1 instead of a dynamic batch", "onnx.dynamic_batch", False)


@dataclass(frozen=True)
class ArtifactSpec:
    name: str
    format: str  # the zoo `formats` entry that builds it
    exporter: str  # 'module:function' taking an ExportContext, returning an ExportResult
    requires: str | None = None  # the artifact it is exported from (built earlier in the same run)
    enabled_by: str | None = None  # a boolean zoo field ('section.key') that must be true for it to be built
    dynamic_batch_by: str | None = None  # a boolean zoo field: false builds the artifact for batch 1 only
    # files it takes from its `requires` artifact's folder, which that export keeps only when this one is planned:
    # a cached `requires` artifact without them is built again
    takes_files: tuple[str, ...] = ()
    # 'module:function' returning why this machine cannot build it (no GPU for a TensorRT engine), or None:
    # such an artifact is recorded as skipped with the reason, not failed
    cannot_build_here: str | None = None
    gpu: bool = False  # built on its GPU: the export worker gets no memory cap (drivers reserve address space)
    precision: str = "fp32"  # what its weights and arithmetic are: fp32, fp16 or int8
    # other ways to build it, in the order `verify --repair` tries them (a route already set is skipped)
    routes: tuple[Route, ...] = ()


@dataclass(frozen=True)
class RuntimeSpec:
    name: str
    artifacts: tuple[str, ...]  # the artifacts it loads
    devices: tuple[str, ...]  # the devices it can run them on
    runner: str  # 'module:Class' implementing verify.runners.base.Runner
    precision: str = "fp32"  # the arithmetic it is set to run in; fp32 keeps the artifact's own precision


@dataclass(frozen=True)
class OutputKindSpec:
    name: str
    kind: str  # 'module:attribute', a verify.judge.kinds.OutputKind: how an output of this kind is checked and compared
    summary: str  # what it is, for the zoo's documentation and its error messages
    together: tuple[str, ...] = ()  # kinds compared as one (a detector's parts): a model declares each of them once


@dataclass(frozen=True)
class TaskSpec:
    name: str
    task: str  # 'module:attribute', a verify.tasks.base.Task: what the task adds to parity (labels, report, predict)
    kinds: tuple[str, ...]  # the output kinds it reads: an entry without `task` gets the first task it has one of
    summary: str


PRECISIONS = ("fp32", "fp16", "bf16", "int8")


def cell_precision(runtime: str, artifact: str) -> str:
    """The precision a cell runs at: its runtime's setting (bf16 autocast) where that lowers it, else the
    artifact's own."""
    setting = RUNTIMES[runtime].precision
    return setting if setting != "fp32" else ARTIFACTS[artifact].precision


DEVICES: Registry[DeviceSpec] = Registry("device")
ARTIFACTS: Registry[ArtifactSpec] = Registry("artifact")  # in build order
RUNTIMES: Registry[RuntimeSpec] = Registry("runtime")
OUTPUT_KINDS: Registry[OutputKindSpec] = Registry("output kind")
TASKS: Registry[TaskSpec] = Registry("task")


def register_device(spec: DeviceSpec) -> DeviceSpec:
    return DEVICES.register(spec.name, spec)


def register_artifact(spec: ArtifactSpec) -> ArtifactSpec:
    if spec.requires is not None and spec.requires not in ARTIFACTS:
        raise ValueError(f"artifact '{spec.name}' requires '{spec.requires}', which is not registered before it")
    return ARTIFACTS.register(spec.name, spec)


def register_runtime(spec: RuntimeSpec) -> RuntimeSpec:
    for artifact in spec.artifacts:
        if artifact not in ARTIFACTS:
            raise ValueError(f"runtime '{spec.name}': {ARTIFACTS.unknown(artifact)}")
    for device in spec.devices:
        if device not in DEVICES:
            raise ValueError(f"runtime '{spec.name}': {DEVICES.unknown(device)}")
    return RUNTIMES.register(spec.name, spec)


def formats() -> tuple[str, ...]:
    """The zoo's `formats` vocabulary, in build order."""
    return tuple(dict.fromkeys(spec.format for spec in ARTIFACTS.values()))


def reduced_formats() -> tuple[str, ...]:
    """The formats whose artifacts hold reduced-precision weights (fp16, int8): a zoo entry explores them."""
    return tuple(dict.fromkeys(spec.format for spec in ARTIFACTS.values() if spec.precision != "fp32"))


def deployable_formats() -> tuple[str, ...]:
    """The full-precision formats: what a zoo entry without `formats` deploys."""
    return tuple(fmt for fmt in formats() if fmt not in reduced_formats())


# The reference every cell is compared with: eager PyTorch on the CPU, float32.
REFERENCE = ("torch", "eager", "cpu")  # runtime, artifact, device

OUTPUT_KINDS.register("logits", OutputKindSpec("logits", "verify.judge.kinds:LOGITS", "class scores before softmax"))
OUTPUT_KINDS.register("probabilities", OutputKindSpec("probabilities", "verify.judge.kinds:PROBABILITIES",
                                                      "class probabilities in 0-1"))
OUTPUT_KINDS.register("embedding", OutputKindSpec("embedding", "verify.judge.kinds:EMBEDDING",
                                                  "a vector per sample compared by cosine and nearest neighbours"))
OUTPUT_KINDS.register("regression", OutputKindSpec("regression", "verify.judge.kinds:REGRESSION",
                                                   "any tensor, compared element by element"))
DETECTOR_PARTS = ("boxes", "scores", "labels")  # matched as one: each detection's box, score and class
OUTPUT_KINDS.register("boxes", OutputKindSpec("boxes", "verify.judge.kinds:BOXES",
                                              "a detector's boxes (samples, detections, 4): x1, y1, x2, y2 in pixels",
                                              DETECTOR_PARTS))
OUTPUT_KINDS.register("scores", OutputKindSpec("scores", "verify.judge.kinds:SCORES",
                                               "a detector's scores in 0-1 (samples, detections); padding below 0",
                                               DETECTOR_PARTS))
OUTPUT_KINDS.register("labels", OutputKindSpec("labels", "verify.judge.kinds:LABELS",
                                               "a detector's class indices (samples, detections)", DETECTOR_PARTS))
OUTPUT_KINDS.register("mask_logits", OutputKindSpec("mask_logits", "verify.judge.kinds:MASK_LOGITS",
                                                    "per-pixel class scores (samples, classes, height, width)"))

TASKS.register("classification", TaskSpec("classification", "verify.tasks.classification:CLASSIFICATION",
                                          ("logits",), "class scores: top-k, accuracy on labelled images, "
                                                       "predictions, deployment preprocessing"))
TASKS.register("detection", TaskSpec("detection", "verify.tasks.detection:DETECTION", ("boxes",),
                                     "boxes, scores and labels: detections matched per image, mAP on annotated images, "
                                     "pictures of the boxes"))
TASKS.register("segmentation", TaskSpec("segmentation", "verify.tasks.segmentation:SEGMENTATION", ("mask_logits",),
                                        "per-pixel classes: pixel agreement and mIoU, mIoU on annotated masks, "
                                        "pictures of the masks"))
# the task of a model whose outputs no other task reads: parity of each output by its kind, nothing more
TASKS.register("generic", TaskSpec("generic", "verify.tasks.base:GENERIC", (), "any outputs, compared by their kinds"))

register_device(DeviceSpec("cpu", gpu=False))
register_device(DeviceSpec("cuda", gpu=True))
register_device(DeviceSpec("tensorrt", gpu=True))

# what the exporters' settings can change, tried in this order (the opsets around the default 17 first)
ONNX_ROUTES = (Route("opset 18", "onnx.opset", 18), Route("opset 16", "onnx.opset", 16),
               Route("opset 13", "onnx.opset", 13), FIXED_BATCH,
               Route("torch.onnx's dynamo exporter instead", "formats", ("onnx", "onnx_dynamo")))
# the dynamo exporter writes opset 18 at least (converter.exporters.onnx_export.DYNAMO_MIN_OPSET)
DYNAMO_ROUTES = (Route("opset 20", "onnx.opset", 20), Route("opset 23", "onnx.opset", 23), FIXED_BATCH,
                 Route("torch.onnx's TorchScript-based exporter instead", "formats", ("onnx_dynamo", "onnx")))
SIMPLIFIER_OFF = Route("without onnxsim (the simplified artifact is not built)", "onnx.simplify", False)
PADDLE_ROUTES = (Route("x2paddle's ONNX front end", "paddle.route", "onnx"),
                 Route("x2paddle's PyTorch tracer", "paddle.route", "pytorch"), FIXED_BATCH)

register_artifact(ArtifactSpec("eager", "eager", "converter.exporters.eager:export"))
register_artifact(ArtifactSpec("torchscript", "torchscript", "converter.exporters.torchscript:export", "eager",
                               routes=(Route("torch.jit.script instead of trace", "torchscript.method", "script"),
                                       Route("torch.jit.trace instead of script", "torchscript.method", "trace"))))
register_artifact(ArtifactSpec("onnx", "onnx", "converter.exporters.onnx_export:export_raw", "eager",
                               dynamic_batch_by="onnx.dynamic_batch", routes=ONNX_ROUTES))
register_artifact(ArtifactSpec("onnx_simplified", "onnx", "converter.exporters.onnx_export:export_simplified",
                               "onnx", enabled_by="onnx.simplify", dynamic_batch_by="onnx.dynamic_batch",
                               routes=(*ONNX_ROUTES, SIMPLIFIER_OFF)))
register_artifact(ArtifactSpec("onnx_dynamo", "onnx_dynamo", "converter.exporters.onnx_export:export_dynamo", "eager",
                               dynamic_batch_by="onnx.dynamic_batch", routes=DYNAMO_ROUTES))
register_artifact(ArtifactSpec("onnx_dynamo_simplified", "onnx_dynamo",
                               "converter.exporters.onnx_export:export_dynamo_simplified", "onnx_dynamo",
                               enabled_by="onnx.simplify", dynamic_batch_by="onnx.dynamic_batch",
                               routes=(*DYNAMO_ROUTES, SIMPLIFIER_OFF)))
register_artifact(ArtifactSpec("paddle", "paddle", "converter.exporters.paddle:export", "eager",
                               dynamic_batch_by="onnx.dynamic_batch", routes=PADDLE_ROUTES))
register_artifact(ArtifactSpec("paddle_dygraph", "paddle_dygraph", "converter.exporters.paddle:export_dygraph",
                               "paddle", dynamic_batch_by="onnx.dynamic_batch",
                               takes_files=("x2paddle_code.py", "model.pdparams"), routes=PADDLE_ROUTES))
register_artifact(ArtifactSpec("exported_program", "torch_export", "converter.exporters.exported_program:export",
                               "eager", dynamic_batch_by="onnx.dynamic_batch", routes=(FIXED_BATCH,)))
register_artifact(ArtifactSpec("openvino_ir", "openvino", "converter.exporters.openvino_ir:export", "eager",
                               dynamic_batch_by="onnx.dynamic_batch", routes=(FIXED_BATCH,)))
register_artifact(ArtifactSpec("tvm", "tvm", "converter.exporters.tvm_library:export", "onnx",
                               dynamic_batch_by="onnx.dynamic_batch",
                               cannot_build_here="converter.exporters.tvm_library:unavailable_here"))
register_artifact(ArtifactSpec("tensorrt_engine", "tensorrt", "converter.exporters.tensorrt_engine:export", "onnx",
                               dynamic_batch_by="onnx.dynamic_batch",
                               cannot_build_here="converter.exporters.tensorrt_engine:unavailable_here", gpu=True))

register_artifact(ArtifactSpec("onnx_fp16", "onnx_fp16", "converter.exporters.onnx_precision:export_fp16", "onnx",
                               dynamic_batch_by="onnx.dynamic_batch", precision="fp16"))
register_artifact(ArtifactSpec("onnx_int8", "onnx_int8", "converter.exporters.onnx_precision:export_int8", "onnx",
                               dynamic_batch_by="onnx.dynamic_batch", precision="int8"))

# TensorRT engines are strongly typed: the fp16 one is built from the fp16 ONNX, the int8 one from a QDQ model that
# its exporter quantises from the fp32 ONNX with TensorRT's symmetric int8 activations
register_artifact(ArtifactSpec("tensorrt_engine_fp16", "tensorrt_fp16", "converter.exporters.tensorrt_engine:export_fp16",
                               "onnx_fp16", dynamic_batch_by="onnx.dynamic_batch",
                               cannot_build_here="converter.exporters.tensorrt_engine:unavailable_here", gpu=True,
                               precision="fp16"))
register_artifact(ArtifactSpec("tensorrt_engine_int8", "tensorrt_int8", "converter.exporters.tensorrt_engine:export_int8",
                               "onnx", dynamic_batch_by="onnx.dynamic_batch",
                               cannot_build_here="converter.exporters.tensorrt_engine:unavailable_here", gpu=True,
                               precision="int8"))

ONNX_ARTIFACTS = ("onnx", "onnx_simplified", "onnx_dynamo", "onnx_dynamo_simplified")  # float32 ONNX models
REDUCED_ONNX_ARTIFACTS = ("onnx_fp16", "onnx_int8")

register_runtime(RuntimeSpec("torch", ("eager",), ("cpu", "cuda"), "verify.runners.torch_runners:TorchEagerRunner"))
register_runtime(RuntimeSpec("torch-bf16", ("eager",), ("cpu",), "verify.runners.torch_runners:TorchBf16Runner",
                             precision="bf16"))
register_runtime(RuntimeSpec("torchscript", ("torchscript",), ("cpu", "cuda"),
                             "verify.runners.torch_runners:TorchScriptRunner"))
register_runtime(RuntimeSpec("torch-export", ("exported_program",), ("cpu", "cuda"),
                             "verify.runners.torch_runners:TorchExportRunner"))
register_runtime(RuntimeSpec("onnxruntime", (*ONNX_ARTIFACTS, *REDUCED_ONNX_ARTIFACTS), ("cpu", "cuda", "tensorrt"),
                             "verify.runners.onnxruntime_runner:OnnxRuntimeRunner"))
register_runtime(RuntimeSpec("paddle-inference", ("paddle",), ("cpu", "cuda", "tensorrt"),
                             "verify.runners.paddle_runners:PaddleInferenceRunner"))
register_runtime(RuntimeSpec("paddle-inference-bf16", ("paddle",), ("cpu",),
                             "verify.runners.paddle_runners:PaddleInferenceBf16Runner", precision="bf16"))
register_runtime(RuntimeSpec("paddle-jit", ("paddle",), ("cpu", "cuda"), "verify.runners.paddle_runners:PaddleJitRunner"))
register_runtime(RuntimeSpec("paddle-dygraph", ("paddle_dygraph",), ("cpu", "cuda"),
                             "verify.runners.paddle_runners:PaddleDygraphRunner"))
register_runtime(RuntimeSpec("tensorrt", ("tensorrt_engine", "tensorrt_engine_fp16", "tensorrt_engine_int8"), ("cuda",),
                             "verify.runners.tensorrt_runner:TensorRtRunner"))
register_runtime(RuntimeSpec("tvm", ("tvm",), ("cpu",), "verify.runners.tvm_runner:TvmRunner"))
register_runtime(RuntimeSpec("openvino", (*ONNX_ARTIFACTS, *REDUCED_ONNX_ARTIFACTS, "openvino_ir"), ("cpu",),
                             "verify.runners.openvino_runner:OpenVinoRunner"))
# OpenVINO's own bf16 inference precision (what it silently picks on a CPU with bf16 instructions), asked for
register_runtime(RuntimeSpec("openvino-bf16", ("onnx_simplified", "openvino_ir"), ("cpu",),
                             "verify.runners.openvino_runner:OpenVinoBf16Runner", precision="bf16"))


@dataclass(frozen=True)
class CellSelector:
    """Which cells a tolerance override, a requirement or a waiver applies to: `runtime:artifact@device` with
    any part left out (`onnxruntime`, `onnx_fp16`, `onnxruntime@cuda`, `onnxruntime:onnx_fp16@cpu`). A bare
    name is a runtime when a runtime has that name, else an artifact."""

    runtime: str | None = None
    artifact: str | None = None
    device: str | None = None

    def matches(self, runtime: str, artifact: str, device: str) -> bool:
        return ((self.runtime is None or self.runtime == runtime)
                and (self.artifact is None or self.artifact == artifact)
                and (self.device is None or self.device == device))

    @property
    def specificity(self) -> int:
        """More parts win; among as many parts, a device is more specific than an artifact, which is more
        specific than a runtime. Distinct selectors of one cell never tie."""
        return 4 * (self.device is not None) + 2 * (self.artifact is not None) + (self.runtime is not None)

    def __str__(self) -> str:
        text = ":".join(part for part in (self.runtime, self.artifact) if part)
        return text + (f"@{self.device}" if self.device else "")


SELECTOR_FORMS = "'runtime', 'artifact', 'runtime:artifact', each optionally '@device'"


def parse_selector(text: str) -> CellSelector:
    """ValueError with the registered names when `text` names something that is not registered."""
    head, at, device = text.partition("@")
    runtime, colon, artifact = head.partition(":")
    if not head or (at and not device) or (colon and not (runtime and artifact)):
        raise ValueError(f"'{text}' is not {SELECTOR_FORMS}")
    if not colon:  # a bare name
        if head not in RUNTIMES and head not in ARTIFACTS:
            raise ValueError(f"'{text}' is neither a runtime ({', '.join(RUNTIMES)}) nor an artifact "
                             f"({', '.join(ARTIFACTS)})")
        runtime, artifact = (head, "") if head in RUNTIMES else ("", head)
    if runtime and runtime not in RUNTIMES:
        raise ValueError(f"'{text}': {RUNTIMES.unknown(runtime)}")
    if artifact and artifact not in ARTIFACTS:
        raise ValueError(f"'{text}': {ARTIFACTS.unknown(artifact)}")
    if device and device not in DEVICES:
        raise ValueError(f"'{text}': {DEVICES.unknown(device)}")
    if runtime and artifact and artifact not in RUNTIMES[runtime].artifacts:
        raise ValueError(f"'{text}': runtime '{runtime}' does not load '{artifact}' "
                         f"(it loads {', '.join(RUNTIMES[runtime].artifacts)})")
    return CellSelector(runtime or None, artifact or None, device or None)
