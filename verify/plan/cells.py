"""The cells of a model: every (artifact, runtime, device) its manifest has on the run's devices, and how each
artifact takes a batch."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from converter.core.vocabulary import ARTIFACTS, REFERENCE, RUNTIMES, cell_precision
from converter.manifest import ModelRecord
from converter.zoo import ModelEntry

from ..results import Cell
from ..runners import Runner


class Chosen(Protocol):
    """What a run chose (verify.cells.session.SessionOptions has both)."""

    devices: tuple[str, ...]  # the devices to run on
    runtimes: tuple[str, ...] | None  # None: every runtime passed in


def plan_cells(model: str, record: ModelRecord, runners: Mapping[str, type[Runner]],
               options: Chosen, entry: ModelEntry | None = None) -> list[Cell]:
    """Every (artifact, runtime, device) this model has on the run's devices, as unstarted cells; the reference
    always runs, and so does a cell the zoo requires (on a device this machine lacks: a SKIP that blocks). A cell
    is gated when the zoo deploys it; the others are explored."""
    cells = []
    for name in runners:
        if options.runtimes is not None and name not in options.runtimes and name != REFERENCE[0]:
            continue
        spec = RUNTIMES[name]
        for artifact in spec.artifacts:
            if artifact not in record.artifacts:
                continue
            for device in spec.devices:
                reference = (name, artifact, device) == REFERENCE
                if device in options.devices or reference or (
                        entry is not None and entry.is_required(name, artifact, device)):
                    cells.append(Cell(model, artifact, name, device, status="", detail="", reference=reference,
                                      precision=cell_precision(name, artifact),
                                      gated=reference or entry is None or entry.is_deployed(name, artifact, device)))
    return cells


def fixed_batch(entry: ModelEntry, artifact: str) -> int | None:
    """1 for an artifact built for batch 1 only (its registered batch setting is off, as with `onnx:
    {dynamic_batch: false}`: the traced example's batch), else None: any batch."""
    flag = ARTIFACTS[artifact].dynamic_batch_by
    return 1 if flag is not None and not entry.setting(flag) else None
