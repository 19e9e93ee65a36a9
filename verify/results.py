"""Results are plain data: produced by the session, judged by the gate, rendered by the report."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .compare import Comparison
from .localize import Divergence
from .preprocessing import PreprocessingComparison
from .timing import Timing


@dataclass
class Cell:
    model: str
    artifact: str
    runtime: str
    device: str
    status: str  # PASS, FAIL, ERROR or SKIP
    detail: str
    comparison: Comparison | None = None
    timings: list[Timing] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)  # the runtime's effective configuration
    conversion_failed: bool = False  # ERROR because its artifact was never built
    reference: bool = False
    waiver: str | None = None  # set by the gate when an allow_failures entry accepts this cell
    divergence: Divergence | None = None  # for a FAILing cell: the first layer that differs

    @property
    def key(self) -> str:
        return f"{self.model}/{self.artifact}/{self.runtime}@{self.device}"


@dataclass
class PreprocessingCheck:
    """One deployment preprocessing against the reference transform, through the reference model."""

    model: str
    deployment: str
    library: str
    status: str  # PASS, FAIL or ERROR
    detail: str
    comparison: PreprocessingComparison | None = None
    waiver: str | None = None

    @property
    def key(self) -> str:
        return f"{self.model}/preprocessing:{self.deployment}"


@dataclass
class ModelResult:
    model: str
    cells: list[Cell] = field(default_factory=list)
    error: str | None = None  # the model could not be verified at all
    conversion_failures: dict[str, str] = field(default_factory=dict)  # artifact -> error
    samples: int = 0
    inputs_file: str | None = None
    trusted_pickle: bool = False
    preprocessing: list[PreprocessingCheck] = field(default_factory=list)
