"""What every exporter receives and returns."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ..core.errors import ConversionError
from ..core.outputs import Feeds, OutputMismatch, named_outputs
from ..models import BuiltModel
from ..zoo import BATCH, ModelEntry


@dataclass
class ExportContext:
    entry: ModelEntry
    built: BuiltModel
    example: tuple[torch.Tensor, ...]  # batch 1 of each input in forward's order, at the first sweep point: traced
    out_dir: Path  # an empty staging folder; everything the artifact needs goes here
    earlier: dict[str, Path] = field(default_factory=dict)  # artifact name -> folder, built earlier in this run
    threads: int = 0  # for the libraries an exporter runs (ONNX Runtime's check); 0: their own default
    artifact: str = ""  # the artifact being built (its format may be one the zoo fixes at the export size)


@dataclass
class ExportResult:
    main_file: str  # relative to out_dir: what a runtime loads
    details: dict[str, Any] = field(default_factory=dict)


MAX_BATCH = 4096  # the largest batch a torch.export-based artifact declares


def traced_batch(ctx: ExportContext) -> tuple[tuple[torch.Tensor, ...], tuple | None]:
    """The example and `dynamic_shapes` for torch.export and the dynamo ONNX exporter: a batch of 1 would be
    specialised to the constant 1, so a dynamic batch is traced with 2 and declared as a range. Every other named
    axis is Dim.AUTO: dynamic where the model lets it be, specialised where the model bakes its size in (the
    artifact then records it as fixed, and the verifier's shape sweep shows what that costs)."""
    from torch.export import Dim

    from ..models import example_args

    entry = ctx.entry
    batch = Dim("batch", min=1, max=MAX_BATCH) if entry.onnx.dynamic_batch else None
    fixed = entry.is_fixed_shape(ctx.artifact)
    shapes = tuple({index: batch if axis == BATCH else Dim.AUTO for index, axis in enumerate(spec.shape)
                    if isinstance(axis, str) and (batch is not None if axis == BATCH else not fixed)}
                   for spec in entry.model_inputs)
    if not any(shapes):
        return ctx.example, None
    return (example_args(entry, 2) if batch is not None else ctx.example), shapes


def dynamic_axes(ctx: ExportContext) -> dict[str, dict[int, str]]:
    """{input name: {axis index: axis name}} for the axes exported as dynamic: the batch (unless the zoo fixes
    it) and every named axis (unless the zoo's `fixed_shape` lists the artifact's format); the TorchScript-based
    ONNX exporter takes this as its `dynamic_axes`."""
    entry = ctx.entry
    fixed = entry.is_fixed_shape(ctx.artifact)
    return {spec.name: {index: axis for index, axis in enumerate(spec.shape)
                        if isinstance(axis, str) and (entry.onnx.dynamic_batch if axis == BATCH else not fixed)}
            for spec in entry.model_inputs}


def declared_axes(ctx: ExportContext) -> dict[str, list[str]]:
    """Per input, the named axes the export was asked to keep dynamic (for formats that record no input shapes)."""
    return {name: list(axes.values()) for name, axes in dynamic_axes(ctx).items()}


def sanity_batches(ctx: ExportContext) -> dict[int, tuple[torch.Tensor, ...]]:
    """Inputs to check an exported artifact with: batch 1, and batch 3 when the batch axis is dynamic."""
    from ..models import example_args

    sizes = (1, 3) if ctx.entry.onnx.dynamic_batch else (1,)
    return {n: example_args(ctx.entry, n) for n in sizes}


def sanity_check(ctx: ExportContext, run: Callable[[Feeds], Any], runtime: str) -> float:
    """Run a saved artifact on the sanity batches: it must load, keep the batch axis and give finite outputs,
    each named output of the reference's shape. `run` takes {input name: array} and returns what the runtime
    gives (one array, a sequence in the declared order, or a mapping by name). Returns the largest
    difference seen (parity is the verifier's job; this only proves the artifact is usable)."""
    names = ctx.entry.output_names
    max_diff = 0.0
    for size, batch in sanity_batches(ctx).items():
        try:
            got = named_outputs(run({name: t.numpy() for name, t in zip(ctx.entry.input_names, batch)}), names)
            with torch.no_grad():
                expected = named_outputs(ctx.built.module(*batch), names)
        except OutputMismatch as exc:
            raise ConversionError(f"{runtime}: {exc}") from None
        for name in names:
            if got[name].shape != expected[name].shape:
                raise ConversionError(f"{runtime} output '{name}' {got[name].shape} at batch {size}, "
                                      f"expected {expected[name].shape}")
            if not np.isfinite(got[name]).all():
                raise ConversionError(f"{runtime} output '{name}' is non-finite at batch {size}")
            if got[name].size:
                max_diff = max(max_diff, float(np.abs(got[name].astype(np.float64) - expected[name]).max()))
    return max_diff


@contextlib.contextmanager
def native_stderr_silenced(fds: tuple[int, ...] = (2,)):
    """Discard what C++ code writes to file descriptor 2 (or `fds`) meanwhile (onnxsim prints a warning per op it
    cannot fold; torch's TorchScript-based ONNX exporter prints the whole graph to 1 when it fails), which Python's
    redirect_stderr cannot catch. Exporters run in a worker of their own, so no other thread's output is lost. Every
    descriptor redirected is restored, whatever fails."""
    import os
    import sys

    saved: dict[int, int] = {}
    try:
        with contextlib.suppress(OSError, ValueError):
            sys.stdout.flush()
            sys.stderr.flush()
        with open(os.devnull, "wb") as sink:
            for fd in fds:
                saved[fd] = os.dup(fd)
                os.dup2(sink.fileno(), fd)
        yield
    finally:
        with contextlib.suppress(OSError, ValueError):
            sys.stdout.flush()
            sys.stderr.flush()
        for fd, copy in saved.items():
            os.dup2(copy, fd)
            os.close(copy)
