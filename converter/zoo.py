"""The zoo file: schema, defaults and validation. The rest of the code only sees validated models."""
from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, NoReturn

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt, ValidationError, model_validator

from .core.archs import check_factory_trust, importable_from, named_weights, resolve_factory
from .core.checkpoints import is_torchscript_archive
from .core.errors import ZooError
from .core.isolation import Limits
from .core.vocabulary import (ARTIFACTS, DEVICES, OUTPUT_KINDS, RUNTIMES, TASKS, CellSelector, deployable_formats,
                              formats, parse_selector, reduced_formats)

MAX_ZOO_BYTES = 1 << 20  # a zoo is a page of YAML; anything larger is a mistake or an attack
MAX_ZOO_NODES = 100_000  # after expanding YAML aliases: refuses "billion laughs" documents quickly
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"  # becomes a folder name: no separators, no leading dot
# `tolerance: auto`: atol/rtol this many times the reference's noise floor (docs/history.md: the self-test's faults
# sit at 1,245 floors and more, its clean models at 0.89 at most, the default zoo's clean cells at 2.0)
AUTO_NOISE_MULTIPLE = 20.0


class _ZooLoader(yaml.SafeLoader):
    """yaml.safe_load, reading `1e-4` as the number YAML 1.2 (and every user) means, not YAML 1.1's string."""


_ZooLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"))


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class InputSpec(_Section):
    """The single image input of a classifier, one sample's (channels, height, width); `inputs` says more."""

    shape: list[PositiveInt] = Field(default=[3, 224, 224], min_length=3, max_length=3)
    name: str = "input"


BATCH = "batch"  # the first axis of every input: how samples are stacked (dynamic unless onnx.dynamic_batch is off)
AXIS_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
Axis = PositiveInt | Annotated[str, Field(pattern=AXIS_PATTERN, max_length=64)]
DTYPES = ("float32", "float64", "float16", "int64", "int32", "bool")


class ModelInput(_Section):
    """One named input of the model's forward, in the order forward takes them. Its `kind` says how its samples
    are made (converter.core.samples: image, tokens, mask, tensor); its shape's axes are numbers or names, the
    first always `batch`; a named axis takes its sizes from the entry's `dynamic`."""

    name: str = Field(pattern=NAME_PATTERN, max_length=128)
    kind: str = "tensor"
    shape: list[Axis] = Field(min_length=1, max_length=8)
    dtype: Literal[DTYPES] | None = None  # None: the kind's (float32; int64 for tokens and masks)
    vocab: PositiveInt | None = None  # tokens: ids drawn from 0 to vocab - 1
    of: str | None = None  # mask: the tokens input whose padding it marks (ones, then zeros on a padded tail)
    # tensor: floats from a normal (mean, std) or uniform (low, high) distribution; integers uniform in [low, high)
    distribution: Literal["normal", "uniform"] = "normal"
    mean: float = 0.0
    std: PositiveFloat = 1.0
    low: float = 0.0
    high: float = 1.0
    file: str | None = None  # tensor: real samples, a .npy or a .npz holding an array named after the input

    @property
    def data_type(self) -> str:
        return self.dtype or ("int64" if self.kind in ("tokens", "mask") else "float32")

    def size_at(self, point: "dict[str, int]", batch: int) -> tuple[int, ...]:
        """The input's shape at one point of the shape sweep ({axis name: size}) for `batch` samples."""
        return tuple(batch if axis == BATCH else point[axis] if isinstance(axis, str) else axis
                     for axis in self.shape)


class Preprocess(_Section):
    resize: int = Field(default=256, gt=0)
    crop: int = Field(default=224, gt=0)
    mean: list[float] = Field(default=[0.485, 0.456, 0.406], min_length=1, max_length=3)
    std: list[PositiveFloat] = Field(default=[0.229, 0.224, 0.225], min_length=1, max_length=3)
    channel_order: Literal["RGB", "BGR"] = "RGB"
    interpolation: Literal["bilinear", "bicubic", "nearest"] = "bilinear"


class Tolerance(_Section):
    atol: float = Field(default=1e-4, ge=0)
    rtol: float = Field(default=1e-3, ge=0)
    # `tolerance: auto`: atol and rtol derived from the reference's own noise floor, times noise_multiple
    # (verify.judge.noise; calibrated on the self-test's faults, docs/verification.md)
    auto: bool = False
    noise_multiple: float = Field(default=AUTO_NOISE_MULTIPLE, gt=1)
    min_cosine: float = Field(default=0.99999, ge=-1, le=1)
    top1: float = Field(default=1.0, ge=0, le=1)
    # detections (boxes, scores, labels), matched to the reference's per image and class: only those scoring at
    # least score_threshold - score_band count, and those left unmatched inside the band around the threshold pass
    score_threshold: float = Field(default=0.3, ge=0, le=1)
    score_band: float = Field(default=0.05, ge=0, le=1)
    min_iou: float = Field(default=0.99, ge=0, le=1)  # of each matched box with the reference's
    score_atol: float = Field(default=1e-3, ge=0)  # of each matched detection's score
    # masks (mask_logits): the pixels whose class (argmax) is the reference's, all of them where the reference's
    # top-2 margin exceeds clear_margin; the mean IoU of the classes with the reference's mask
    pixel_agreement: float = Field(default=0.999, ge=0, le=1)
    clear_margin: float = Field(default=0.01, ge=0)
    min_miou: float = Field(default=0.99, ge=0, le=1)


# what a precision budget sets for detections and masks in place of the fp32 tolerance's values
STRUCTURAL_LIMITS = ("min_iou", "score_atol", "pixel_agreement", "clear_margin", "min_miou")


class OnnxOptions(_Section):
    opset: int = Field(default=17, ge=9, le=23)
    dynamic_batch: bool = True
    simplify: bool = True
    # nodes of the ONNX graph left in float32 in the onnx_int8 and onnx_fp16 artifacts (mixed precision; what
    # `python -m verify --repair` finds for a cell outside its budget). int8 names are the nodes of ONNX Runtime's
    # quantisation pre-processing, fp16 names those of the onnx artifact
    int8_keep_fp32: list[str] = []
    fp16_keep_fp32: list[str] = []


class TorchScriptOptions(_Section):
    method: Literal["trace", "script"] = "trace"


class PaddleOptions(_Section):
    """How x2paddle reaches Paddle: its PyTorch tracer, its ONNX front end on an ONNX export, or (auto) the
    tracer first and the ONNX route where the tracer or the converted model's check fails."""

    route: Literal["auto", "pytorch", "onnx"] = "auto"


class Calibration(_Section):
    """Forward passes used to re-estimate BatchNorm statistics for `weights: random`; images for int8."""

    batches: int = Field(default=4, gt=0, le=1000)
    batch_size: int = Field(default=8, gt=0, le=1024)
    # int8 quantisation's calibration: a folder of representative images (relative to the zoo file; flat or one
    # subfolder per class); without it, synthetic images. At most max_images are used.
    images: str | None = None
    max_images: int = Field(default=32, gt=0, le=10_000)


class DeploymentTolerance(_Section):
    """How far a deployment's preprocessing may move the model's input and its confident predictions.

    Resampling libraries differ by design (PIL antialiases when shrinking, OpenCV's INTER_LINEAR does not):
    that keeps every image's per-channel mean within about 0.01 (in units of the normalised input), while
    swapped channels or a wrong mean/std move it by 0.7 or more and another resize (field of view) by about
    0.1. On randomly initialised nets the same resampling difference flips the top-1 class of up to half the
    images, where the reference itself hardly prefers its top class: a top-1 flip counts only where the
    reference was confident, its softmax probability for its top-1 class ahead of the deployment's class by
    at least `confident_margin`."""

    max_channel_shift: float = Field(default=0.05, ge=0)
    top1: float = Field(default=0.5, ge=0, le=1)  # fraction of images whose confident top-1 must not flip
    confident_margin: float = Field(default=0.2, ge=0, le=1)


class Deployment(_Section):
    """A deployment's own preprocessing code, checked against the reference transform. Fields left unset
    are the model's `preprocess`; setting one records what that deployment really does differently."""

    name: str = Field(pattern=NAME_PATTERN, max_length=64)
    library: Literal["pil-numpy", "opencv"]
    channel_order: Literal["RGB", "BGR"] | None = None
    mean: list[float] | None = Field(default=None, min_length=1, max_length=3)
    std: list[PositiveFloat] | None = Field(default=None, min_length=1, max_length=3)
    interpolation: Literal["bilinear", "bicubic", "nearest"] | None = None
    resize: int | None = Field(default=None, gt=0)
    tolerance: DeploymentTolerance = DeploymentTolerance()


# Checked for every model, as information only, when its zoo entry declares no `deployments`.
DEFAULT_DEPLOYMENTS = (Deployment(name="pil-numpy", library="pil-numpy"), Deployment(name="opencv", library="opencv"))


class PrecisionBudget(_Section):
    """How far a reduced-precision cell (fp16, bf16, int8) may move from the fp32 reference. Elementwise
    tolerances do not apply (a float16 logit differs in the third digit by design): with labelled images the
    accuracy drop in percentage points; always the lowest cosine and the top-1 agreement."""

    min_cosine: float = Field(ge=-1, le=1)
    top1: float = Field(ge=0, le=1)  # fraction of images whose top-1 class matches the reference's
    max_accuracy_drop: float = Field(ge=0, le=100)  # percentage points of top-1 accuracy, with labelled images
    # detections and masks keep their matching checks, at looser limits (see Tolerance)
    min_iou: float = Field(default=0.9, ge=0, le=1)
    score_atol: float = Field(default=0.05, ge=0)
    pixel_agreement: float = Field(default=0.98, ge=0, le=1)
    clear_margin: float = Field(default=0.5, ge=0)
    min_miou: float = Field(default=0.9, ge=0, le=1)

    def limit(self, tolerance: Tolerance) -> Tolerance:
        """The cell's tolerance with this budget's limits for detections and masks."""
        return tolerance.model_copy(update={name: getattr(self, name) for name in STRUCTURAL_LIMITS})


# The defaults, measured on the default zoo and the slow-test nets (docs/measurements.md): fp16 and
# bf16 keep the cosine above 0.999 on every net measured; int8 static quantisation moves it most.
DEFAULT_BUDGETS = {"fp16": PrecisionBudget(min_cosine=0.999, top1=0.9, max_accuracy_drop=0.5, min_iou=0.95,
                                           score_atol=1e-2, pixel_agreement=0.995, clear_margin=0.1, min_miou=0.97),
                   "bf16": PrecisionBudget(min_cosine=0.98, top1=0.75, max_accuracy_drop=1.0),
                   "int8": PrecisionBudget(min_cosine=0.98, top1=0.7, max_accuracy_drop=2.0)}


class PrecisionTolerance(_Section):
    fp16: PrecisionBudget = DEFAULT_BUDGETS["fp16"]
    bf16: PrecisionBudget = DEFAULT_BUDGETS["bf16"]
    int8: PrecisionBudget = DEFAULT_BUDGETS["int8"]


class ToleranceOverride(_Section):
    atol: float | None = Field(default=None, ge=0)
    rtol: float | None = Field(default=None, ge=0)
    min_cosine: float | None = Field(default=None, ge=-1, le=1)
    top1: float | None = Field(default=None, ge=0, le=1)
    score_threshold: float | None = Field(default=None, ge=0, le=1)
    score_band: float | None = Field(default=None, ge=0, le=1)
    min_iou: float | None = Field(default=None, ge=0, le=1)
    score_atol: float | None = Field(default=None, ge=0)
    pixel_agreement: float | None = Field(default=None, ge=0, le=1)
    clear_margin: float | None = Field(default=None, ge=0)
    min_miou: float | None = Field(default=None, ge=0, le=1)


class ModelOutput(_Section):
    """One named output, in the order the model returns them (a dict's or a nested tuple's leaves flattened, see
    converter.core.outputs). Its kind (converter.core.vocabulary.OUTPUT_KINDS) decides how it is compared; its
    tolerance replaces the model's for this output, under the per-cell `tolerance_overrides`."""

    name: str = Field(pattern=NAME_PATTERN, max_length=128)
    kind: str | None = None  # None: logits for the first output without one (unless one is logits), else regression
    tolerance: ToleranceOverride = ToleranceOverride()


class Waiver(_Section):
    """An accepted failure, always with a reason: a conversion (`artifact` alone), the cells a `runtime`,
    `artifact` and/or `device` select, or a deployment's `preprocessing` check. Names are checked against
    the registries when the zoo is loaded."""

    runtime: str | None = None
    device: str | None = None
    artifact: str | None = None
    preprocessing: str | None = None  # a deployment's name: its preprocessing check may fail
    reason: str = Field(min_length=3)

    @property
    def selector(self) -> CellSelector:
        return CellSelector(self.runtime, self.artifact, self.device)


class WorkerLimits(_Section):
    """Per conversion format and per verifier cell; unset: the command line's (600 s, 8192 MiB)."""

    timeout_s: float | None = Field(default=None, gt=0)
    memory_mb: int | None = Field(default=None, ge=0)  # 0: no limit

    def over(self, default: Limits, gpu: bool = False) -> Limits:
        """These limits where set, the command line's otherwise. GPU drivers reserve address space, so a
        GPU worker gets no memory cap."""
        memory = default.memory_mb if self.memory_mb is None else self.memory_mb
        return Limits(timeout_s=self.timeout_s or default.timeout_s, memory_mb=0 if gpu else memory)


class ModelEntry(_Section):
    name: str = Field(pattern=NAME_PATTERN, max_length=128)
    arch: str | None = None
    arch_args: dict[str, Any] = Field(default_factory=dict)
    num_classes: int | None = Field(default=None, gt=0)
    weights: str | None = None
    seed: int = Field(default=0, ge=0)
    checkpoint: str | None = None
    state_dict_key: str | None = None
    trust_pickle: bool = False
    classes: list[str] | None = None
    classes_file: str | None = None  # one class name per line (relative to the zoo file)
    # a folder of images for this model (relative to the zoo file): flat, or one subfolder per class (labelled)
    images: str | None = None
    # the images' labels where a class folder cannot hold them (relative to the zoo file): a COCO JSON file of boxes
    # (detection) or a folder of PNG masks named after the images (segmentation); read by the model's task
    annotations: str | None = None
    input: InputSpec = InputSpec()
    # the model's named inputs (image, tokens, mask, tensor), in forward's order; None: the one image `input`
    inputs: list[ModelInput] | None = Field(default=None, min_length=1)
    # the sizes each named axis is verified at (a shape sweep); the first is the one exported with and timed
    dynamic: dict[Annotated[str, Field(pattern=AXIS_PATTERN)], list[PositiveInt]] = Field(default_factory=dict)
    # what the model's forward returns, in order (one tensor, a tuple, a dict); a plain name is an output without
    # its own kind or tolerance
    outputs: list[ModelOutput] = Field(default_factory=lambda: [ModelOutput(name="logits")], min_length=1)
    logits_output: str | None = None  # the output the classification checks read; default: the first
    # formats built at the export size (their named axes but batch fixed): the shape sweep's other sizes are SKIP
    # for their artifacts, not FAIL; for a format fixed-shape by design (an engine built for one size)
    fixed_shape: list[str] = Field(default_factory=list)
    # what the outputs are for (converter.core.vocabulary.TASKS): labels, report sections and predict; default:
    # the first registered task that reads one of the outputs' kinds, else generic
    task: str | None = None
    preprocess: Preprocess = Preprocess()
    tolerance: Tolerance = Tolerance()
    precision_tolerance: PrecisionTolerance = PrecisionTolerance()
    # deployed: built and gated (a drift blocks); default: every full-precision format
    formats: list[str] = Field(default_factory=lambda: list(deployable_formats()), min_length=1)
    # explored: built, judged by their precision budgets and shown in "What to ship", never blocking; default:
    # every reduced-precision format when the entry sets no `formats`, none when it does (set by _with_candidates)
    candidates: list[str] = Field(default_factory=list)
    # how many points of top-1 accuracy (without labels: of agreement with the reference) the recommendation may
    # trade for speed; 0: it recommends the fastest cell that loses nothing, and names the faster lossy ones
    accept_accuracy_drop: float = Field(default=0.0, ge=0, le=100)
    # the performance gate (`python -m verify --baseline last-pass`): a deployed cell whose median latency is slower
    # than the baseline run's by more than this fraction, with both runs' 95% intervals apart, blocks; None: only
    # reported
    max_slowdown: float | None = Field(default=None, gt=0)
    onnx: OnnxOptions = OnnxOptions()
    torchscript: TorchScriptOptions = TorchScriptOptions()
    paddle: PaddleOptions = PaddleOptions()
    calibration: Calibration = Calibration()
    limits: WorkerLimits = WorkerLimits()
    # verification: tolerances per cell selector ('runtime', 'artifact', 'runtime:artifact', each optionally
    # '@device'; the most specific wins), accepted failures, and cells that must run (a SKIP there blocks)
    tolerance_overrides: dict[str, ToleranceOverride] = Field(default_factory=dict)
    # deployment preprocessing implementations checked against the reference transform; None (not declared):
    # the default ones run as information and never block
    deployments: list[Deployment] | None = None
    allow_failures: list[Waiver] = Field(default_factory=list)
    required: list[str] = Field(default_factory=list)

    def tolerance_for(self, runtime: str, artifact: str, device: str, output: str | None = None,
                      derived: Mapping[str, float] | None = None) -> Tolerance:
        """The model's tolerance (its atol and rtol replaced by `derived` ones, from the noise floor, where it is
        `auto`), then the output's own, then each matching cell override from the least to the most specific."""
        matching = [(parse_selector(key), override) for key, override in self.tolerance_overrides.items()]
        merged = self.tolerance.model_dump()
        if self.tolerance.auto and derived:
            merged.update(derived)
        own = next((o.tolerance for o in self.outputs if o.name == output), None)
        if own is not None:
            merged.update(own.model_dump(exclude_none=True))
        for selector, override in sorted(matching, key=lambda pair: pair[0].specificity):
            if selector.matches(runtime, artifact, device):
                merged.update(override.model_dump(exclude_none=True))
        return Tolerance(**merged)

    def budget_for(self, precision: str) -> PrecisionBudget | None:
        """The budget a cell of this precision is judged by; None for fp32 (the elementwise tolerance)."""
        return getattr(self.precision_tolerance, precision, None) if precision != "fp32" else None

    def class_names(self) -> list[str] | None:
        """`classes`, else `classes_file`'s lines, else the named weights' categories; None: indices."""
        if self.classes is not None:
            return list(self.classes)
        if self.classes_file is not None:
            return read_classes_file(Path(self.classes_file))
        if self.weights not in (None, "random") and self.arch is not None:
            try:
                return named_weights(self.arch, self.weights).categories
            except ValueError:
                return None
        return None

    @model_validator(mode="before")
    @classmethod
    def _outputs_by_name(cls, data: Any) -> Any:
        """`outputs: [logits, embedding]` is short for `[{name: logits}, {name: embedding}]`."""
        if isinstance(data, dict) and isinstance(data.get("outputs"), list):
            data = {**data, "outputs": [{"name": o} if isinstance(o, str) else o for o in data["outputs"]]}
        return data

    @model_validator(mode="before")
    @classmethod
    def _auto_tolerance(cls, data: Any) -> Any:
        """`tolerance: auto` is short for `{auto: true}` (atol and rtol from the reference's noise floor)."""
        if isinstance(data, dict) and data.get("tolerance") == "auto":
            data = {**data, "tolerance": {"auto": True}}
        return data

    @model_validator(mode="before")
    @classmethod
    def _with_candidates(cls, data: Any) -> Any:
        """An entry without `formats` explores every reduced-precision format; one that names its formats
        explores only the candidates it names."""
        if isinstance(data, dict) and "candidates" not in data:
            data = {**data, "candidates": [] if "formats" in data else list(reduced_formats())}
        return data

    @property
    def built_formats(self) -> list[str]:
        """What the converter builds: the deployed formats, then the candidates not among them."""
        return list(dict.fromkeys([*self.formats, *self.candidates]))

    def names_in_required(self, runtime: str, artifact: str, device: str) -> bool:
        return any(parse_selector(key).matches(runtime, artifact, device) for key in self.required)

    def is_required(self, runtime: str, artifact: str, device: str) -> bool:
        """CPU cells always must run; other devices when `required` selects the cell."""
        return device == "cpu" or self.names_in_required(runtime, artifact, device)

    def is_deployed(self, runtime: str, artifact: str, device: str) -> bool:
        """Whether a drift of this cell blocks: its artifact's format is in `formats` and its runtime keeps the
        artifact's precision (torch-bf16 on the eager model does not), or `required` names the cell."""
        return ((ARTIFACTS[artifact].format in self.formats and RUNTIMES[runtime].precision == "fp32")
                or self.names_in_required(runtime, artifact, device))

    def deploys_artifact(self, artifact: str) -> bool:
        """Whether this artifact's failed conversion blocks: its format is deployed, or `required` names a cell
        on it."""
        if ARTIFACTS[artifact].format in self.formats:
            return True
        selectors = [parse_selector(key) for key in self.required]
        return any(s.artifact in (None, artifact) and (s.runtime is None or artifact in RUNTIMES[s.runtime].artifacts)
                   for s in selectors)

    def conversion_waiver(self, artifact: str) -> int | None:
        """The index of the waiver that accepts this artifact's failed conversion: one that names the artifact
        alone (a runtime's or a device's waiver excuses cells, not the conversion)."""
        return next((index for index, waiver in enumerate(self.allow_failures)
                     if waiver.preprocessing is None and waiver.runtime is None and waiver.device is None
                     and waiver.artifact == artifact), None)

    def setting(self, dotted: str) -> Any:
        """A field by its dotted name ('onnx.simplify'), as the registries name them."""
        value: Any = self
        for part in dotted.split("."):
            value = getattr(value, part)
        return value

    @property
    def output_names(self) -> list[str]:
        return [output.name for output in self.outputs]

    @property
    def output_kinds(self) -> dict[str, str]:
        """Each output's kind: its own; `logits_output` is logits; unset, logits for the first output without a
        kind when no output is declared logits (a classifier's zoo entry), else regression (compared
        elementwise)."""
        declared = self.logits_output or next((o.name for o in self.outputs if o.kind == "logits"), None)
        first = declared or next((o.name for o in self.outputs if o.kind is None), None)
        return {o.name: o.kind or ("logits" if o.name == first else "regression") for o in self.outputs}

    def is_fixed_shape(self, artifact: str) -> bool:
        """Whether the zoo builds `artifact` at the export size only: `fixed_shape` lists its format, or that of
        the artifact it is built from (a TVM library of a fixed ONNX model)."""
        spec = ARTIFACTS[artifact] if artifact in ARTIFACTS else None
        return spec is not None and (spec.format in self.fixed_shape
                                     or (spec.requires is not None and self.is_fixed_shape(spec.requires)))

    @property
    def task_name(self) -> str:
        """`task`, or the first registered task that reads one of the outputs' kinds (classification for logits),
        else generic."""
        kinds = set(self.output_kinds.values())
        return self.task or next((name for name, spec in TASKS.items() if kinds & set(spec.kinds)), "generic")

    @property
    def logits(self) -> str | None:
        """The output the classification checks read (top-5, accuracy, predictions): the first of kind logits."""
        return next((name for name, kind in self.output_kinds.items() if kind == "logits"), None)

    @property
    def model_inputs(self) -> list[ModelInput]:
        """`inputs`, or the one image `input` as such a list."""
        if self.inputs is not None:
            return list(self.inputs)
        return [ModelInput(name=self.input.name, kind="image", shape=[BATCH, *self.input.shape])]

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(i.name for i in self.model_inputs)

    @property
    def image_input(self) -> ModelInput | None:
        """The image input the images (and the deployment preprocessing checks) feed, if the model has one."""
        return next((i for i in self.model_inputs if i.kind == "image"), None)

    @property
    def shape_points(self) -> list[dict[str, int]]:
        """The shape sweep: point i takes each dynamic axis's i-th size (an axis with fewer sizes keeps its last).
        The first point is the one exported with, timed and checked in full; [{}] without dynamic axes."""
        count = max((len(sizes) for sizes in self.dynamic.values()), default=1)
        return [{axis: sizes[min(i, len(sizes) - 1)] for axis, sizes in self.dynamic.items()} for i in range(count)]

    @property
    def deployment_checks(self) -> tuple[tuple[Deployment, ...], bool]:
        """The deployments to check and whether they gate: declared ones do; the defaults are information. A
        model without an image input has no preprocessing to check."""
        if self.image_input is None or self.logits is None:
            return (), False
        if self.deployments is None:
            return DEFAULT_DEPLOYMENTS, False
        return tuple(self.deployments), True

    @property
    def source_kind(self) -> str:
        """random | named-weights | state_dict | pickled_module | torchscript."""
        if self.checkpoint is None:
            return "random" if self.weights == "random" else "named-weights"
        if is_torchscript_archive(Path(self.checkpoint)):
            return "torchscript"
        return "state_dict" if self.arch is not None else "pickled_module"

    @property
    def model_kwargs(self) -> dict[str, Any]:
        kwargs = dict(self.arch_args)
        if self.num_classes is not None:
            kwargs["num_classes"] = self.num_classes
        return kwargs


# Fields that do not change what the converter builds: editing them needs no new conversion. The
# checkpoint counts by content (its sha256), not by path; formats only say which artifacts to build.
NOT_BUILD_INPUTS = frozenset({"preprocess", "tolerance", "tolerance_overrides", "allow_failures", "required",
                              "classes", "classes_file", "images", "precision_tolerance", "limits", "formats", "candidates", "accept_accuracy_drop", "checkpoint", "deployments", "logits_output", "task",
                              "annotations", "max_slowdown"})

# Sections a `defaults:` block may set; each is merged key by key into every model's own section.
DEFAULTABLE = ("input", "inputs", "dynamic", "fixed_shape", "outputs", "preprocess", "tolerance", "precision_tolerance", "formats", "candidates",
               "accept_accuracy_drop", "max_slowdown", "onnx", "torchscript", "paddle", "calibration",
               "seed", "tolerance_overrides", "required", "limits", "deployments")


class Zoo(BaseModel):
    model_config = ConfigDict(frozen=True)

    path: Path
    models: tuple[ModelEntry, ...]
    trusted_modules: tuple[str, ...] = ()  # factories' modules outside the zoo's folder that the user vouches for

    def select(self, names: list[str] | None) -> tuple[ModelEntry, ...]:
        if not names:
            return self.models
        known = {m.name: m for m in self.models}
        unknown = [n for n in names if n not in known]
        if unknown:
            raise ZooError(str(self.path), f"--models names {unknown} not in the zoo (known: {sorted(known)})")
        return tuple(known[n] for n in names)


TOP_LEVEL = ("defaults", "models", "trusted_modules")


def load_zoo(path: str | Path, trusted_modules: tuple[str, ...] = (), find_factories: bool = True) -> Zoo:
    """Read, merge defaults, validate every field and every cross-field rule; ZooError on the first problem.
    `trusted_modules` (--trust-module) add to the zoo's own list of modules whose factories may run.
    `find_factories=False` checks each arch's trust but imports no module to find its factory (the verifier: it
    builds no model, and an arch changed since conversion makes the entry stale there)."""
    path = Path(path)
    file = str(path)
    raw = _read_yaml(path)
    if not isinstance(raw, dict):
        raise ZooError(file, f"expected a mapping with 'models:' at the top, found {_kind(raw)}")
    unknown = sorted(set(raw) - set(TOP_LEVEL))
    if unknown:
        raise ZooError(file, f"unknown key '{unknown[0]}' at the top level (allowed: {', '.join(TOP_LEVEL)})",
                       field=unknown[0])
    listed = raw.get("trusted_modules") or []
    if not isinstance(listed, list) or not all(isinstance(n, str) and re.match(MODULE_PATTERN, n) for n in listed):
        raise ZooError(file, "expected a list of module names (package.module)", field="trusted_modules")
    trust = FactoryTrust(path.parent, (*listed, *trusted_modules), find_factories)
    importable_from(path.parent)
    defaults = raw.get("defaults") or {}
    if not isinstance(defaults, dict):
        raise ZooError(file, f"expected a mapping, found {_kind(defaults)}", model="defaults")
    for key in defaults:
        if key not in DEFAULTABLE:
            raise ZooError(file, f"unknown key (allowed in defaults: {', '.join(DEFAULTABLE)})", model="defaults", field=str(key))
    models_raw = raw.get("models")
    if not isinstance(models_raw, list) or not models_raw:
        raise ZooError(file, "'models' must be a non-empty list", field="models")

    entries: list[ModelEntry] = []
    seen: set[str] = set()
    for index, item in enumerate(models_raw):
        label = item.get("name") if isinstance(item, dict) and isinstance(item.get("name"), str) else f"#{index + 1}"
        if not isinstance(item, dict):
            raise ZooError(file, f"expected a mapping, found {_kind(item)}", model=label)
        merged = _merge_defaults(defaults, item)
        for key in ("checkpoint", "classes_file", "images", "annotations"):
            if isinstance(merged.get(key), str):
                merged[key] = str((path.parent / merged[key]).resolve())
        if isinstance(merged.get("inputs"), list):
            merged["inputs"] = [{**spec, "file": str((path.parent / spec["file"]).resolve())}
                                if isinstance(spec, dict) and isinstance(spec.get("file"), str) else spec
                                for spec in merged["inputs"]]
        calibration = merged.get("calibration")
        if isinstance(calibration, dict) and isinstance(calibration.get("images"), str):
            merged["calibration"] = {**calibration, "images": str((path.parent / calibration["images"]).resolve())}
        try:
            entry = ModelEntry.model_validate(merged)
        except ValidationError as exc:
            raise _as_zoo_error(exc, file, label) from None
        if entry.name in seen:
            raise ZooError(file, "duplicate model name", model=entry.name, field="name")
        seen.add(entry.name)
        _check_entry(entry, file, trust)
        entries.append(entry)
    return Zoo(path=path, models=tuple(entries), trusted_modules=tuple(listed))


def entry_from_config(config: dict[str, Any], origin: str) -> ModelEntry:
    """Rebuild a validated entry from the manifest's copy of it (the converter wrote it from a ModelEntry)."""
    try:
        return ModelEntry.model_validate(config)
    except ValidationError as exc:
        raise _as_zoo_error(exc, origin, str(config.get("name"))) from None


def _as_zoo_error(exc: ValidationError, file: str, model: str) -> ZooError:
    """The first problem pydantic found, as one line naming the file, the model and the field."""
    error = exc.errors()[0]
    field = ".".join(str(part) for part in error["loc"]) or None
    message = "unknown key" if error["type"] == "extra_forbidden" else error["msg"]
    return ZooError(file, message, model=model, field=field)


def _read_yaml(path: Path) -> Any:
    file = str(path)
    try:
        size = path.stat().st_size
        if size > MAX_ZOO_BYTES:
            raise ZooError(file, f"file is {size} bytes; a zoo file may be at most {MAX_ZOO_BYTES}")
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ZooError(file, "file not found") from None
    except IsADirectoryError:
        raise ZooError(file, "is a directory, expected a YAML file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ZooError(file, f"cannot read: {exc}") from None
    try:
        data = yaml.load(text, Loader=_ZooLoader)  # a SafeLoader: no tags beyond plain data
    except yaml.YAMLError as exc:
        first = " ".join(str(exc).split())
        raise ZooError(file, f"not valid YAML: {first}") from None
    if data is None:
        raise ZooError(file, "file is empty")
    nodes = _expanded_size(data, {}, set())
    if nodes > MAX_ZOO_NODES:
        raise ZooError(file, f"expands to more than {MAX_ZOO_NODES} values through YAML aliases; refused")
    return data


def _expanded_size(value: Any, memo: dict[int, int], active: set[int]) -> int:
    """How many values the document has with every alias expanded, computed once per shared node."""
    if not isinstance(value, (dict, list)):
        return 1
    key = id(value)
    if key in memo:
        return memo[key]
    if key in active:  # a recursive alias: infinitely large
        return MAX_ZOO_NODES + 1
    active.add(key)
    children = [*value.keys(), *value.values()] if isinstance(value, dict) else value
    total = 1
    for child in children:
        total += _expanded_size(child, memo, active)
        if total > MAX_ZOO_NODES:
            break
    active.discard(key)
    memo[key] = total
    return total


def _merge_defaults(defaults: dict[str, Any], item: dict[str, Any]) -> dict[str, Any]:
    defaults, item = _auto_tolerance_mapping(defaults), _auto_tolerance_mapping(item)
    merged = dict(item)
    for key, value in defaults.items():
        if key not in merged:
            merged[key] = value
        elif isinstance(value, dict) and isinstance(merged[key], dict):
            merged[key] = {**value, **merged[key]}
    return merged


def _auto_tolerance_mapping(section: dict[str, Any]) -> dict[str, Any]:
    """`tolerance: auto` as the mapping it is short for, so that it merges key by key with the defaults' tolerance."""
    return {**section, "tolerance": {"auto": True}} if section.get("tolerance") == "auto" else section


Fail = Callable[[str, str], NoReturn]
MODULE_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$"


@dataclass(frozen=True)
class FactoryTrust:
    zoo_folder: Path
    modules: tuple[str, ...]
    find_factories: bool = True


def _check_entry(entry: ModelEntry, file: str, trust: FactoryTrust) -> None:
    """Rules that involve several fields, the registries, the file system or the user's code, by job."""

    def fail(field: str, message: str) -> NoReturn:
        raise ZooError(file, message, model=entry.name, field=field)

    _check_input(entry, fail)
    _check_outputs(entry, fail)
    _check_vocabulary(entry, fail)
    _check_deployments(entry, fail)
    _check_waivers(entry, fail)
    _check_source(entry, fail)
    _check_arch(entry, fail, trust)
    if entry.weights not in (None, "random"):
        _check_named_weights(entry, fail)


def _check_input(entry: ModelEntry, fail: Fail) -> None:
    _check_named_inputs(entry, fail)
    image = entry.image_input
    if image is not None:
        field = "input.shape" if entry.inputs is None else f"inputs.{entry.model_inputs.index(image)}.shape"
        channels = image.shape[1] if len(image.shape) == 4 else None
        if not isinstance(channels, int) or channels not in (1, 3):
            fail(field, f"{channels} channels: image models take 1 (grayscale) or 3 (RGB/BGR)")
        if len(entry.preprocess.mean) != channels or len(entry.preprocess.std) != channels:
            fail("preprocess.mean", f"mean and std need one value per input channel ({channels})")
        for key in ("mean", "std"):
            _check_unit_scale(fail, f"preprocess.{key}", key, getattr(entry.preprocess, key))
        height, width = image.size_at(entry.shape_points[0], 1)[2:]
        if entry.preprocess.crop != height or entry.preprocess.crop != width:
            shown = entry.input.shape if entry.inputs is None else f"{height}x{width} (the first size of each axis)"
            fail("preprocess.crop", f"crop {entry.preprocess.crop} does not match {field} {shown}")
        if entry.preprocess.resize < entry.preprocess.crop:
            fail("preprocess.resize", f"resize {entry.preprocess.resize} is smaller than crop {entry.preprocess.crop}")
    if entry.classes is not None and entry.num_classes is not None and len(entry.classes) != entry.num_classes:
        fail("classes", f"{len(entry.classes)} class names for num_classes {entry.num_classes}")
    if entry.classes is not None and entry.classes_file is not None:
        fail("classes_file", "give either classes or classes_file, not both")
    if entry.classes_file is not None:
        try:
            names = read_classes_file(Path(entry.classes_file))
        except ValueError as exc:
            fail("classes_file", str(exc))
        if entry.num_classes is not None and len(names) != entry.num_classes:
            fail("classes_file", f"{len(names)} class names in {entry.classes_file} for num_classes {entry.num_classes}")
    for field, folder in (("images", entry.images), ("calibration.images", entry.calibration.images)):
        if folder is not None and not Path(folder).is_dir():
            fail(field, f"not a folder: {folder}")
    if entry.images is not None and image is None:
        fail("images", "the model has no image input to feed them to (inputs: a kind: image input)")
    if entry.annotations is not None:
        if entry.images is None:
            fail("annotations", "label the model's own images: set images too")
        if not Path(entry.annotations).exists():
            fail("annotations", f"no such file or folder: {entry.annotations}")


def _check_named_inputs(entry: ModelEntry, fail: Fail) -> None:
    """Each input's kind, shape and sample source; every named axis has sizes in `dynamic`, and every size list
    belongs to an axis some input has."""
    from .core.samples import INPUT_KINDS, read_samples

    inputs = entry.model_inputs
    names = [i.name for i in inputs]
    if len(set(names)) != len(names):
        fail("inputs", "lists an input name twice")
    if sum(i.kind == "image" for i in inputs) > 1:
        fail("inputs", "at most one image input (the images of a run feed it)")
    used: set[str] = set()
    for index, spec in enumerate(inputs):
        at = f"inputs.{index}"
        if spec.kind not in INPUT_KINDS:
            fail(f"{at}.kind", INPUT_KINDS.unknown(spec.kind))
        if spec.shape[0] != BATCH:
            fail(f"{at}.shape", f"the first axis must be '{BATCH}' (samples are stacked along it), found "
                                f"{spec.shape[0]}")
        for axis in spec.shape[1:]:
            if axis == BATCH:
                fail(f"{at}.shape", f"'{BATCH}' can only be the first axis")
            if isinstance(axis, str):
                used.add(axis)
                if axis not in entry.dynamic:
                    fail(f"{at}.shape", f"axis '{axis}' has no sizes: add them as dynamic: {{{axis}: [...]}}")
        integer = np.dtype(spec.data_type).kind in "iub"
        if spec.kind == "tokens":
            if spec.vocab is None:
                fail(f"{at}.vocab", "a tokens input needs the vocabulary size its ids are drawn below")
            if not integer:
                fail(f"{at}.dtype", f"token ids are integers, not {spec.data_type}")
        elif spec.vocab is not None:
            fail(f"{at}.vocab", "only a tokens input has a vocabulary")
        if spec.kind == "mask":
            tokens = next((i for i in inputs if i.name == spec.of), None)
            if tokens is None or tokens.kind != "tokens":
                fail(f"{at}.of", f"a mask names the tokens input it masks (of: <name>), found {spec.of!r}")
            if tokens.shape != spec.shape:
                fail(f"{at}.shape", f"{spec.shape} differs from its tokens input's {tokens.shape}")
        elif spec.of is not None:
            fail(f"{at}.of", "only a mask input masks another")
        if spec.kind == "image" and spec.data_type != "float32":
            fail(f"{at}.dtype", "an image input is float32 (normalised pixels)")
        if spec.kind == "tensor" and integer and spec.data_type != "bool" and spec.file is None \
                and int(spec.high) - int(spec.low) < 2:
            fail(f"{at}.high", f"integers are drawn from [low, high): give at least two values (low {spec.low:g}, "
                               f"high {spec.high:g})")
        if spec.file is not None:
            if spec.kind != "tensor":
                fail(f"{at}.file", "only a tensor input reads its samples from a file")
            if any(isinstance(axis, str) for axis in spec.shape[1:]):
                fail(f"{at}.file", "a file's samples have one shape: give the input's axes as numbers")
            try:
                found = read_samples(Path(spec.file), spec.name)
            except ValueError as exc:
                fail(f"{at}.file", str(exc))
            if list(found.shape[1:]) != spec.shape[1:]:
                fail(f"{at}.file", f"samples of shape {list(found.shape[1:])}, the input's shape is {spec.shape}")
    for axis, sizes in entry.dynamic.items():
        if axis == BATCH:
            fail(f"dynamic.{axis}", "the batch axis is always varied (onnx.dynamic_batch turns that off); give "
                                    "sizes only for the other named axes")
        if axis not in used:
            fail(f"dynamic.{axis}", f"no input has an axis named '{axis}' (inputs: {', '.join(names)})")


def read_classes_file(path: Path) -> list[str]:
    """One class name per line; blank lines at the end are ignored. ValueError when unreadable or empty."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read {path}: {exc}") from None
    while lines and not lines[-1].strip():
        lines.pop()
    names = [line.strip() for line in lines]
    if not names or not all(names):
        raise ValueError(f"{path}: expected one non-empty class name per line")
    return names


def _check_unit_scale(fail: Fail, field: str, key: str, values: list[float]) -> None:
    """Pixels are scaled to 0-1 before normalising (as torchvision's ToTensor does): a mean or std above 1 is
    the 0-255 convention of OpenCV-based code, which would leave every input nearly constant."""
    if max(abs(v) for v in values) > 1:
        scaled = ", ".join(f"{v / 255:.4g}" for v in values)
        fail(field, f"{key} {values} is in the 0-255 convention; this tool scales pixels to 0-1 before "
                    f"normalising: write [{scaled}] (each value / 255)")


def _check_outputs(entry: ModelEntry, fail: Fail) -> None:
    names = entry.output_names
    for index, output in enumerate(entry.outputs):
        if output.name in entry.input_names:
            fail(f"outputs.{index}", f"'{output.name}' is also an input's name")
        if output.kind is not None and output.kind not in OUTPUT_KINDS:
            fail(f"outputs.{index}.kind", OUTPUT_KINDS.unknown(output.kind))
    if len(set(names)) != len(names):
        fail("outputs", "lists an output name twice")
    kinds = list(entry.output_kinds.values())
    for kind in dict.fromkeys(kinds):
        together = OUTPUT_KINDS[kind].together
        if together and any(kinds.count(part) != 1 for part in together):
            fail("outputs", f"a {kind} output is compared together with {', '.join(together)}: declare each of "
                            f"them once (declared: {', '.join(f'{n}: {k}' for n, k in entry.output_kinds.items())})")
    if entry.logits_output is not None and entry.logits_output not in names:
        fail("logits_output", f"'{entry.logits_output}' is not one of the outputs {names}")
    declared = next((o for o in entry.outputs if o.name == entry.logits_output), None)
    if declared is not None and declared.kind not in (None, "logits"):
        fail("logits_output", f"'{declared.name}' is declared kind {declared.kind}, not logits")
    if entry.task is not None:
        if entry.task not in TASKS:
            fail("task", TASKS.unknown(entry.task))
        reads = TASKS[entry.task].kinds
        if reads and not set(reads) & set(entry.output_kinds.values()):
            fail("task", f"{entry.task} reads an output of kind {' or '.join(reads)}, and the model declares none "
                         f"(its outputs: {', '.join(f'{n}: {k}' for n, k in entry.output_kinds.items())})")


def _check_vocabulary(entry: ModelEntry, fail: Fail) -> None:
    """Every format, runtime, artifact and device the entry names is registered (converter.core.vocabulary)."""
    known_formats = formats()
    for field in ("formats", "candidates", "fixed_shape"):
        listed = getattr(entry, field)
        for index, fmt in enumerate(listed):
            if fmt not in known_formats:
                fail(f"{field}.{index}", f"unknown format '{fmt}' (registered: {', '.join(known_formats)})")
        if len(set(listed)) != len(listed):
            fail(field, "lists a format twice")
    if "eager" in entry.candidates:
        fail("candidates", "eager is the reference every cell is compared with: it is always built, not explored")
    if entry.fixed_shape and not entry.dynamic:
        fail("fixed_shape", "the model has no dynamic axis but batch to fix (see dynamic)")
    if "eager" in entry.fixed_shape:
        fail("fixed_shape", "eager is the reference: it runs every size of the shape sweep")
    for field, keys in (("tolerance_overrides", list(entry.tolerance_overrides)), ("required", entry.required)):
        for key in keys:
            try:
                parse_selector(key)
            except ValueError as exc:
                fail(f"{field}.{key}" if field == "tolerance_overrides" else field, str(exc))
    for index, waiver in enumerate(entry.allow_failures):
        for field, registry in (("runtime", RUNTIMES), ("artifact", ARTIFACTS), ("device", DEVICES)):
            name = getattr(waiver, field)
            if name is not None and name not in registry:
                fail(f"allow_failures.{index}.{field}", registry.unknown(name))


def _check_deployments(entry: ModelEntry, fail: Fail) -> None:
    deployments, _ = entry.deployment_checks
    names = [d.name for d in deployments]
    if len(set(names)) != len(names):
        fail("deployments", "two deployments share a name")
    image = entry.image_input
    if entry.deployments and (image is None or entry.logits is None):
        fail("deployments", "a deployment's preprocessing is judged by its image input's class scores: the model "
                            "needs an image input and a logits output")
    if image is None:  # nothing to check: deployment_checks is empty
        return
    channels = image.shape[1]
    for index, deployment in enumerate(entry.deployments or []):
        for key in ("mean", "std"):
            value = getattr(deployment, key)
            if value is not None and len(value) != channels:
                fail(f"deployments.{index}.{key}", f"needs one value per input channel ({channels})")
        for key in ("mean", "std"):
            if getattr(deployment, key) is not None:
                _check_unit_scale(fail, f"deployments.{index}.{key}", key, getattr(deployment, key))
        if deployment.resize is not None and deployment.resize < entry.preprocess.crop:
            fail(f"deployments.{index}.resize", f"resize {deployment.resize} is smaller than crop {entry.preprocess.crop}")


def _check_waivers(entry: ModelEntry, fail: Fail) -> None:
    names = [d.name for d in entry.deployment_checks[0]]
    for index, waiver in enumerate(entry.allow_failures):
        if waiver.preprocessing is not None:
            if waiver.runtime or waiver.artifact or waiver.device:
                fail(f"allow_failures.{index}", "a preprocessing waiver names only the deployment")
            if waiver.preprocessing not in names:
                fail(f"allow_failures.{index}.preprocessing", f"no deployment named '{waiver.preprocessing}'")
        elif waiver.runtime is None and waiver.artifact is None:
            fail(f"allow_failures.{index}", "name the runtime, the artifact or the preprocessing whose failure is accepted")
        elif waiver.runtime is not None and waiver.artifact is not None \
                and waiver.artifact not in RUNTIMES[waiver.runtime].artifacts:
            fail(f"allow_failures.{index}.artifact", f"runtime '{waiver.runtime}' does not load '{waiver.artifact}'")


def _check_source(entry: ModelEntry, fail: Fail) -> None:
    """Where the weights come from: exactly one source, and the checkpoint file as the zoo describes it."""
    if entry.checkpoint is None:
        if entry.weights is None:
            fail("weights", "give weights (random, or a name such as IMAGENET1K_V1) or a checkpoint")
        if entry.arch is None:
            fail("arch", "required")
        if entry.state_dict_key is not None:
            fail("state_dict_key", "only applies with a checkpoint")
        return
    if entry.weights is not None:
        fail("weights", "give either weights or checkpoint, not both")
    checkpoint = Path(entry.checkpoint)
    if not checkpoint.is_file():
        fail("checkpoint", f"file not found: {checkpoint}")
    if is_torchscript_archive(checkpoint):
        if entry.arch is not None:
            fail("arch", "the checkpoint is a TorchScript file, which carries its own architecture: remove arch")
        if not entry.trust_pickle:
            fail("trust_pickle", "a TorchScript file runs code when loaded: set trust_pickle: true to allow it")
    elif entry.arch is None and not entry.trust_pickle:
        fail("arch", "required to load a state_dict checkpoint (a whole pickled model needs trust_pickle: true)")


def _check_arch(entry: ModelEntry, fail: Fail, trust: FactoryTrust) -> None:
    """The factory's module must be trusted (checked without importing it); then only that module is
    imported, to find the factory."""
    if entry.arch is not None:
        try:
            check_factory_trust(entry.arch, trust.zoo_folder, trust.modules)
            if trust.find_factories:
                resolve_factory(entry.arch)
        except ValueError as exc:
            fail("arch", str(exc))


def _check_named_weights(entry: ModelEntry, fail: Fail) -> None:
    """Named weights exist for the arch, are on this machine (nothing is downloaded), and get the inputs they were
    trained on."""
    try:
        weights = named_weights(entry.arch or "", entry.weights)
    except ValueError as exc:
        fail("weights", str(exc))
    if not weights.available:
        fail("weights", weights.missing)
    for key, trained in (("mean", weights.mean), ("std", weights.std)):
        given = getattr(entry.preprocess, key)
        if trained is not None and (len(given) != len(trained) or any(abs(a - b) > 1e-3 for a, b in zip(given, trained))):
            fail(f"preprocess.{key}", f"the weights {entry.weights} were trained on inputs normalised with mean "
                                      f"{_rounded(weights.mean)} and std {_rounded(weights.std)} (pixels in 0-1): set "
                                      "preprocess mean and std to these")


def _rounded(values: tuple[float, ...]) -> list[float]:
    return [round(value, 4) for value in values]


def _kind(value: Any) -> str:
    return {list: "a list", str: "a string", int: "a number", float: "a number", bool: "a boolean"}.get(
        type(value), type(value).__name__
    )
