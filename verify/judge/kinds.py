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


LOGITS = OutputKind("logits", classes=True, noun="logits")
PROBABILITIES = OutputKind("probabilities", classes=True, bounds=(0.0, 1.0), noun="probabilities")
EMBEDDING = OutputKind("embedding", neighbours=True)
REGRESSION = OutputKind("regression")


def output_kind(name: str) -> OutputKind:
    """The registered kind called `name` (KeyError naming the registered ones otherwise)."""
    return load_object(OUTPUT_KINDS[name].kind)
