"""What every exporter receives and returns."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..models import BuiltModel
from ..zoo import ModelEntry


@dataclass
class ExportContext:
    entry: ModelEntry
    built: BuiltModel
    example: torch.Tensor  # batch 1, used to trace
    out_dir: Path  # an empty staging folder; everything the artifact needs goes here
    earlier: dict[str, Path] = field(default_factory=dict)  # artifact name -> folder, built earlier in this run


@dataclass
class ExportResult:
    main_file: str  # relative to out_dir: what a runtime loads
    details: dict[str, Any] = field(default_factory=dict)


def sanity_batches(ctx: ExportContext) -> dict[int, torch.Tensor]:
    """Inputs to check an exported artifact with: batch 1, and batch 3 when the batch axis is dynamic."""
    from ..models import example_input

    sizes = (1, 3) if ctx.entry.onnx.dynamic_batch else (1,)
    return {n: example_input(ctx.entry, n) for n in sizes}
