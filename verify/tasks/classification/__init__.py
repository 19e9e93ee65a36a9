"""Classification: class scores (a logits output) and what they add to parity. Each cell's top-5 and, with
labelled images, its top-1/top-5 accuracy; the agreement a reduced-precision cell is judged by; the deployment
preprocessing verdict; the accuracy and predictions tables, predictions.csv, accuracy.csv and the prediction grid;
`verify.predict`'s top-k with softmax probabilities."""
from __future__ import annotations

from typing import Any

import numpy as np

from ..base import Outputs, Task
from .grid import GRID_IMAGES, write_prediction_grids
from .scores import accuracy, agreement, judge_deployment, softmax, top_k
from .tables import accuracy_frame, predictions_frame, predictions_section, showcase


class ClassificationTask(Task):
    name = "classification"
    labelled = True
    judges_deployments = True
    predicts = True
    score_name = "top-1 accuracy"

    def output_order(self, entry) -> list[str]:
        kinds = entry.output_kinds
        return sorted(entry.output_names, key=lambda name: kinds[name] != "logits")

    def primary_output(self, entry) -> str | None:
        return entry.logits

    def cell_facts(self, entry, outputs: Outputs, labels: list[int] | None) -> dict[str, Any]:
        predictions = top_k(outputs[entry.logits])
        return {"predictions": predictions,
                "accuracy": accuracy(predictions, labels) if labels is not None else None}

    def on_reference(self, result, entry, reference: Outputs) -> None:
        logits = reference[entry.logits]
        result.reference_probabilities = np.take_along_axis(softmax(logits), top_k(logits), axis=1)

    def agreement(self, entry, reference: Outputs, outputs: Outputs):
        return agreement(reference[entry.logits], outputs[entry.logits])

    def gallery(self, result) -> list[int]:
        return showcase(result, GRID_IMAGES) if result.reference_probabilities is not None else []

    def judge_deployment(self, entry, reference_inputs, deployment_inputs, reference, deployment, tolerance):
        return judge_deployment(reference_inputs, deployment_inputs, reference, deployment, tolerance)

    def sections(self, result, picture: str | None) -> list[str]:
        return predictions_section(result, picture)

    def tables(self, results) -> dict:
        return {"predictions.csv": predictions_frame(results), "accuracy.csv": accuracy_frame(results)}

    def pictures(self, results, entries, folder, run_id, drawn) -> dict[str, str]:
        return write_prediction_grids(results, entries, folder, run_id, drawn)

    def predict(self, entry, outputs: Outputs, topk: int, class_name) -> list[list[tuple[str, float]]]:
        logits = outputs[entry.logits]
        return [[(class_name(int(i)), float(row[i])) for i in best]
                for row, best in zip(softmax(logits), top_k(logits, topk))]


CLASSIFICATION = ClassificationTask()
__all__ = ["CLASSIFICATION", "GRID_IMAGES", "ClassificationTask"]
