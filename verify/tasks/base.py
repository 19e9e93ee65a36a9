"""The seam a task plugs into. Parity itself is per output, by its kind (verify.judge.kinds,
verify.judge.compare); a task is what the outputs are for, and says what that adds: which outputs lead, what
each cell predicts and scores against the images' labels, the evidence a reduced-precision cell is judged by,
how a deployment's preprocessing is judged, the report's sections, CSV tables and pictures, and what
`verify.predict` prints. The session, the gate,
the report writer and the CLIs call these hooks and know no task by name.

Adding a task: a module with a Task subclass (override what it adds; the rest stays generic) and one
`TASKS.register(...)` line in converter/core/vocabulary.py. This class is also the generic task itself."""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

    from converter.zoo import DeploymentTolerance, ModelEntry

    from ..judge.accuracy import Agreement
    from ..judge.preprocessing import PreprocessingComparison
    from ..plan.inputs import ImageSet
    from ..results import ModelResult

Outputs = Mapping[str, np.ndarray]


class Task:
    name = "generic"
    labelled = False  # whether the images' labels (class folders) score its cells: `cell_facts` gets them
    judges_deployments = False  # whether `judge_deployment` can judge a deployment's preprocessing
    predicts = False  # whether `predict` says what the model predicts (verify.predict refuses the model otherwise)
    score_name = "score"  # what the lead metric of its Score against the labels is called in the report

    def output_order(self, entry: ModelEntry) -> list[str]:
        """The outputs in the order the report and the comparisons show them (the leading one first)."""
        return list(entry.output_names)

    def primary_output(self, entry: ModelEntry) -> str | None:
        """The output a failing cell's worst samples are chosen by (None: each failing output's own)."""
        return None

    def read_labels(self, entry: ModelEntry, images: ImageSet, classes: list[str] | None) -> list | None:
        """Per image, its label for `cell_facts` (None: the images label nothing for this task), checked before any
        cell runs (InputError naming the file, the model and the field). The base: its class folder's index in
        `classes` (the ImageFolder layout)."""
        from ..plan.inputs import label_indices

        return label_indices(images, classes, entry.name, "classes_file" if entry.classes_file else "classes")

    def cell_facts(self, entry: ModelEntry, outputs: Outputs, labels: list | None) -> dict[str, Any]:
        """What a cell's outputs predict, as Cell fields: `predictions` (an array, a row per sample) and
        `accuracy` (a verify.judge.accuracy.Score against the labels, when there are labels)."""
        return {}

    def on_reference(self, result: ModelResult, entry: ModelEntry, reference: Outputs) -> None:
        """What the task keeps of the reference's outputs on the model's result, for its report."""

    def agreement(self, entry: ModelEntry, reference: Outputs, outputs: Outputs) -> Agreement | None:
        """How a reduced-precision cell agrees with the reference in the task's own terms (None: its outputs'
        cosines alone judge it)."""
        return None

    def gallery(self, result: ModelResult) -> list[int]:
        """The samples whose inputs the report's pictures show."""
        return []

    def judge_deployment(self, entry: ModelEntry, reference_inputs: np.ndarray, deployment_inputs: np.ndarray,
                         reference: np.ndarray, deployment: np.ndarray,
                         tolerance: DeploymentTolerance) -> PreprocessingComparison:
        """A deployment's preprocessing against the reference transform, by the `primary_output` each gives."""
        raise NotImplementedError(f"the {self.name} task does not judge deployment preprocessing")

    def sections(self, result: ModelResult, picture: str | None) -> list[str]:
        """Markdown lines after the model's parity and What to ship; `picture` is its `pictures` file, if any."""
        return []

    def tables(self, results: list[ModelResult]) -> dict[str, pd.DataFrame]:
        """CSV files of the report folder, by file name, over the results of this task's models (written, with
        their columns, even when no model has the task)."""
        return {}

    def pictures(self, results: list[ModelResult], entries: dict, folder: Path, run_id: str,
                 drawn: Path | None) -> dict[str, str]:
        """Pictures written into the report folder, by model: the path relative to the folder."""
        return {}

    def predict(self, entry: ModelEntry, outputs: Outputs, topk: int,
                class_name) -> list[list[tuple[str, float]]]:
        """Per sample, what `verify.predict` prints: (label, value) pairs, best first."""
        raise NotImplementedError(f"the {self.name} task has nothing to predict: python -m verify checks its parity")


GENERIC = Task()
