"""What every exporter receives and returns."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ..errors import ConversionError
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


def sanity_check(ctx: ExportContext, run: Callable[[np.ndarray], np.ndarray], runtime: str) -> float:
    """Run a saved artifact on the sanity batches: it must load, keep the batch axis and give finite logits
    of the reference's shape. Returns the largest difference seen (parity is the verifier's job; this only
    proves the artifact is usable)."""
    max_diff = 0.0
    for size, batch in sanity_batches(ctx).items():
        got = np.asarray(run(batch.numpy()))
        with torch.no_grad():
            expected = ctx.built.module(batch).numpy()
        if got.shape != expected.shape:
            raise ConversionError(f"{runtime} output {got.shape} at batch {size}, expected {expected.shape}")
        if not np.isfinite(got).all():
            raise ConversionError(f"{runtime} output is non-finite at batch {size}")
        max_diff = max(max_diff, float(np.abs(got - expected).max()))
    return max_diff
