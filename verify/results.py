"""Results are plain data: produced by the session, judged by the gate, rendered by the report. Cells and
checks are frozen: the gate and the report read them and never change them."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .cells.localize import Divergence
from .cells.timing import Timing
from .judge.accuracy import Score
from .judge.compare import SIZE_SEPARATOR, Comparison, output_and_size
from .judge.noise import NoiseFloor
from .judge.preprocessing import PreprocessingComparison


@dataclass(frozen=True)
class Cell:
    model: str
    artifact: str
    runtime: str
    device: str
    status: str  # PASS, FAIL, ERROR or SKIP
    detail: str
    comparisons: dict[str, Comparison] = field(default_factory=dict)  # per output name, in its task's order
    timings: tuple[Timing, ...] = ()
    config: dict[str, Any] = field(default_factory=dict)  # the runtime's effective configuration
    conversion_failed: bool = False  # ERROR because its artifact was never built
    reference: bool = False
    divergence: Divergence | None = None  # for a FAILing cell: the first layer that differs
    cached: str | None = None  # when its outputs and timings were measured, if an earlier run's were reused
    precision: str = "fp32"  # what it ran at: fp32, or a reduced precision judged by its budget
    predictions: np.ndarray | None = None  # per sample, what its task predicts (a classifier: top-5 class indices)
    accuracy: Score | None = None  # its task's score against the labels, when the images are labelled
    batch_invariance: str = ""  # whether each sample's answer is the same alone, in an odd batch and in the full one
    batch_invariant: bool | None = None  # that check's verdict (None: not checked)
    # deployed (the zoo's `formats` at their own precision, or `required`): a drift blocks; explored (a candidate
    # format, a reduced-precision runtime setting): judged and shown in "What to ship", never blocking
    gated: bool = True
    emulated: str = ""  # why this CPU runs the cell's precision without native instructions (its speed misleads)

    @property
    def key(self) -> str:
        return f"{self.model}/{self.artifact}/{self.runtime}@{self.device}"

    @property
    def comparison(self) -> Comparison | None:
        """The leading output's comparison (the first: a classifier's logits), when the cell was compared."""
        return next(iter(self.comparisons.values()), None)


@dataclass(frozen=True)
class PreprocessingCheck:
    """One deployment preprocessing against the reference transform, through the reference model."""

    model: str
    deployment: str
    library: str
    status: str  # PASS, FAIL or ERROR
    detail: str
    comparison: PreprocessingComparison | None = None
    gated: bool = True  # declared in the zoo: it can block; the default checks of an undeclared zoo inform

    @property
    def key(self) -> str:
        return f"{self.model}/preprocessing:{self.deployment}"


@dataclass
class ModelResult:
    model: str
    cells: list[Cell] = field(default_factory=list)
    error: str | None = None  # the model could not be verified at all
    conversion_failures: dict[str, str] = field(default_factory=dict)  # artifact -> error (a hint when known)
    conversion_details: dict[str, str] = field(default_factory=dict)  # artifact -> the raw error behind a hint
    built_with: dict[str, str] = field(default_factory=dict)  # artifact -> the converter or route that built it
    samples: int = 0
    inputs: dict[str, np.ndarray] | None = None  # the samples every runtime got, by input, when few enough to save
    gallery: dict[int, np.ndarray] = field(default_factory=dict)  # the prediction grid's samples, by index
    input_names: list[str] = field(default_factory=list)  # the images it was made from
    trusted_pickle: bool = False
    preprocessing: list[PreprocessingCheck] = field(default_factory=list)
    outputs: list[str] = field(default_factory=lambda: ["logits"])  # the model's declared outputs, in its task's order
    flops_per_sample: int | None = None  # one forward pass, counted at conversion (None: not counted)
    classes: list[str] | None = None  # class names, by index (None: the model has none; indices are shown)
    labels: list[Any] | None = None  # per input image, its label (a class index; a task's own), when labelled
    accuracy_note: str | None = None  # why accuracy was not measured although the images are labelled
    reference_probabilities: np.ndarray | None = None  # a classifier's: per sample, the reference's softmax, top 5
    image_source: str = ""  # where this model's images came from
    artifact_bytes: dict[str, int] = field(default_factory=dict)  # artifact -> its files' size on disk
    drawn_in: str | None = None  # a shard's report folder: its charts and grid of this model are copied, not redrawn
    inputs_in: str | None = None  # a shard's report folder holding this model's saved inputs, copied as they are
    accept_accuracy_drop: float = 0.0  # the zoo's: points of accuracy the recommendation may trade for speed
    sizes: list[str] = field(default_factory=list)  # the shape sweep's sizes ('sequence=8'), the first timed; [] none
    output_kinds: dict[str, str] = field(default_factory=dict)  # each output's kind (logits, embedding, ...)
    task: str = "classification"  # what the outputs are for (converter.core.vocabulary.TASKS)
    # each elementwise output's noise floor: how far the fp32 reference moves from itself (verify.judge.noise)
    noise_floor: dict[str, NoiseFloor] = field(default_factory=dict)
    inputs_digest: str = ""  # sha256 of the samples every runtime got
    # the reference's first sample, its first values per output with a noise floor: a diff of two runs on the same
    # inputs tells a reference that moved (a torch upgrade) from one that only rounded otherwise
    reference_sample: dict[str, list[float]] = field(default_factory=dict)

    def output_label(self, key: str) -> str:
        """A comparison's key as the report shows it: 'logits @ sequence=77', the first size named too."""
        return key if not key or output_and_size(key)[1] or not self.sizes else f"{key}{SIZE_SEPARATOR}{self.sizes[0]}"

    def noise_units(self, cell: Cell, key: str) -> float | None:
        """How many of the reference's noise floors a float32 cell's output `key` is from the reference (None where
        it is not judged element by element, or no floor was measured)."""
        comparison = cell.comparisons.get(key)
        if cell.reference or cell.precision != "fp32" or comparison is None or comparison.matched_kind:
            return None
        return comparison.noise_units

    @property
    def rows_per_cell(self) -> bool:
        """Whether the report shows a row per output (several outputs, or several sizes)."""
        return len(self.outputs) > 1 or len(self.sizes) > 1

    @property
    def inputs_saved(self) -> bool:
        """Whether the report folder gets this model's inputs (they are saved only when few enough)."""
        return self.inputs is not None or self.inputs_in is not None

    def class_name(self, index: int) -> str:
        return self.classes[index] if self.classes is not None and 0 <= index < len(self.classes) else str(index)

    @property
    def reference(self) -> "Cell | None":
        return next((cell for cell in self.cells if cell.reference), None)
