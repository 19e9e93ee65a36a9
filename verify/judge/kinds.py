"""What each output kind checks (its name registered in converter.core.vocabulary.OUTPUT_KINDS): pure data that
verify.judge.compare reads. Adding a kind is one OutputKind here and one registration line there."""
from __future__ import annotations

from dataclasses import dataclass

from converter.core.registry import load_object
from converter.core.vocabulary import OUTPUT_KINDS


@dataclass(frozen=True)
class OutputKind:
    name: str
    classes: bool = False  # (samples, classes): tie-aware top-1 agreement and top-5 overlap are checked
    neighbours: bool = False  # each sample's nearest neighbour among the batch (by cosine) must stay the same
    bounds: tuple[float, float] | None = None  # the range every reference value must lie in (probabilities)
    noun: str = "values"  # what one element is called in messages
    # one part of a detector's output (boxes, scores, labels: per sample, a row per detection), compared with the
    # other parts by matching each detection to the reference's (verify.judge.detections), not element by element
    detection: bool = False
    mask: bool = False  # per-pixel class scores (samples, classes, height, width): verify.judge.masks

    @property
    def matched(self) -> bool:
        """Compared by what it means (detections matched, pixels classified), its verdict at the cell's own
        limits: a precision budget keeps it rather than judging its cosine."""
        return self.detection or self.mask


LOGITS = OutputKind("logits", classes=True, noun="logits")
PROBABILITIES = OutputKind("probabilities", classes=True, bounds=(0.0, 1.0), noun="probabilities")
EMBEDDING = OutputKind("embedding", neighbours=True)
REGRESSION = OutputKind("regression")
BOXES = OutputKind("boxes", detection=True, noun="box coordinates")
SCORES = OutputKind("scores", detection=True, noun="scores")
LABELS = OutputKind("labels", detection=True, noun="labels")
MASK_LOGITS = OutputKind("mask_logits", mask=True, noun="mask logits")


def output_kind(name: str) -> OutputKind:
    """The registered kind called `name` (KeyError naming the registered ones otherwise)."""
    return load_object(OUTPUT_KINDS[name].kind)
