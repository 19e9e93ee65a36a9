"""`python -m verify --repair`: after the gate's run, each repairable failing cell is searched for its fix, and the
fix is proved the only way the gate accepts: the zoo with the change, converted and verified again."""
from __future__ import annotations

import logging
import os
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from converter.manifest import read_manifest
from converter.zoo import ModelEntry

from ..judge.compare import FAIL, PASS
from ..plan.inputs import load_images, synthetic_images, write_input_file
from .mixed_precision import REPAIRABLE, search_mixed_precision
from .search import Attempt
from .zoo_edit import edited, snippet

log = logging.getLogger(__name__)
REPAIRED, NOT_REPAIRED = "REPAIRED", "NOT REPAIRED"
DEFAULT_SECONDS = 300.0  # per cell: the search's bound (the gate's proof comes after it)
SHOWN_NODES = 5  # the costliest nodes named in the report


@dataclass(frozen=True)
class Repair:
    """What the repair of one failing cell tried and found, and the gate's word on it."""

    model: str
    artifact: str
    runtime: str
    zoo: str  # the zoo file the change is for
    status: str  # REPAIRED (the gate passed the rebuilt cell), NOT REPAIRED, or ERROR
    before: str  # the failing cell's verdict
    summary: str  # one line: what worked, or why nothing did
    method: str = ""  # what was searched
    attempts: tuple[Attempt, ...] = ()
    costliest: tuple[tuple[str, float], ...] = ()  # the ranking's first nodes and their cost
    kept: int = 0  # nodes left in float32
    candidates: int = 0  # nodes that could be
    zoo_change: dict = field(default_factory=dict)  # section -> field -> value
    snippet: str = ""  # the change as YAML, for the model's entry
    proof: str = ""  # the gate's verdict on the cell rebuilt from the changed zoo
    latency_ms: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0


def repairable(cell, entry: ModelEntry | None) -> bool:
    """A cell the repair can search: a reduced-precision ONNX artifact outside its budget, on ONNX Runtime's CPU."""
    return (cell.status == FAIL and cell.artifact in REPAIRABLE and cell.runtime == "onnxruntime"
            and cell.device == "cpu" and entry is not None)


def repair_run(verified, options, seconds: float = DEFAULT_SECONDS,
               progress: Callable[[str], None] = lambda text: None) -> list:
    """A Repair for each repairable failing cell of the run `verified` (a verify.api.VerifyRun made with `options`),
    each search bounded by `seconds`."""
    zoo = options.zoo or Path(read_manifest(options.artifacts).zoo.get("path", ""))
    images = load_images(options.images) if options.images else synthetic_images(options.num_images)
    repairs = []
    for result in verified.results:
        entry = verified.entries.get(result.model)
        for cell in result.cells:
            if not repairable(cell, entry):
                continue
            started = time.monotonic()
            try:
                repairs.append(_repair_cell(cell, entry, zoo, images, options, seconds, progress))
            except Exception as exc:  # one cell's repair failing must not lose the others'
                log.debug("repairing %s failed:\n%s", cell.key, traceback.format_exc())
                repairs.append(Repair(cell.model, cell.artifact, cell.runtime, str(zoo), "ERROR", cell.detail,
                                      f"the repair failed: {type(exc).__name__}: {' '.join(str(exc).split())}",
                                      seconds=time.monotonic() - started))
    return repairs


def _repair_cell(cell, entry: ModelEntry, zoo: Path, images, options, seconds: float,
                 progress: Callable[[str], None]) -> Repair:
    from ..api import model_inputs

    started = time.monotonic()
    record = read_manifest(options.artifacts).models[cell.model]
    onnx = record.artifacts.get("onnx")
    base = Repair(cell.model, cell.artifact, cell.runtime, str(zoo), NOT_REPAIRED, cell.detail, "")
    if onnx is None or not onnx.ok or onnx.path is None:
        return replace(base, summary="the fp32 onnx artifact it is made from was not built: nothing to search")
    own_images, labels, _, _ = model_inputs({cell.model: _Resolved(entry)}, [cell.model], images)[cell.model]
    threads = options.threads or max(1, (os.cpu_count() or 2) // 2)
    with tempfile.TemporaryDirectory(prefix="parity-repair-") as scratch:
        inputs, _ = write_input_file(own_images, entry, Path(scratch) / "inputs.bin")
        feeds = inputs.read()
        found = search_mixed_precision(cell.artifact, entry, options.artifacts / onnx.path, feeds, labels, seconds,
                                       threads, Path(scratch), lambda text: progress(f"{cell.model} {text}"))
    result = found.result
    method = (f"{found.precision} mixed precision: {found.candidates} nodes ranked by their cost alone in "
              f"{found.precision}, then the fewest of the ranking kept in float32 (bisection)")
    base = replace(base, method=method, attempts=result.attempts, costliest=result.ranking[:SHOWN_NODES],
                   candidates=found.candidates, latency_ms=found.latency_ms)
    if result.kept is None:
        return replace(base, summary=result.note or "no set of nodes passes", seconds=time.monotonic() - started)
    change = {"onnx": {found.zoo_field: list(result.kept)}}
    progress(f"{cell.model} proving: the zoo with {len(result.kept)} node(s) in float32, converted and verified")
    status, proof = prove(zoo, cell, change, options)
    kept = len(result.kept)
    fewest = "the fewest found" + ("" if result.fewest_proven else " (one fewer was not tried)")
    summary = (f"{kept} of {found.candidates} nodes kept in float32 ({fewest}): {proof}" if status == PASS else
               f"the search's {kept} node(s) in float32 passed on its inputs, but not the gate: {proof}")
    if result.note:
        summary += f"; {result.note}"
    return replace(base, status=REPAIRED if status == PASS else NOT_REPAIRED, summary=summary, kept=kept,
                   zoo_change=change, snippet=snippet(cell.model, change), proof=proof,
                   seconds=time.monotonic() - started)


@dataclass(frozen=True)
class _Resolved:
    """What verify.api.model_inputs reads of a resolved zoo entry."""

    entry: ModelEntry


def prove(zoo: Path, cell, change: dict, options) -> tuple[str, str]:
    """The cell's status and detail from the gate itself: the zoo with `change`, written beside the zoo (its relative
    paths resolve the same) and removed after, the model converted into a scratch folder and verified there."""
    from converter.pipeline import RunOptions, convert
    from converter.zoo import load_zoo

    from ..api import VerifyOptions, run

    changed = zoo.with_name(f".{zoo.stem}.repair-{os.getpid()}{zoo.suffix}")
    try:
        changed.write_text(edited(zoo.read_text(), cell.model, change, str(zoo)))
        with tempfile.TemporaryDirectory(prefix="parity-proof-") as scratch:
            artifacts = Path(scratch) / "artifacts"
            convert(load_zoo(changed, options.trusted_modules), RunOptions(out=artifacts, models=[cell.model],
                                                                          formats=[cell.artifact], jobs=1))
            checked = run(VerifyOptions(artifacts=artifacts, zoo=changed, images=options.images,
                                        num_images=options.num_images, models=(cell.model,),
                                        runtimes=(cell.runtime,), devices=(cell.device,), threads=options.threads,
                                        timing=False, partial=True, trusted_modules=options.trusted_modules,
                                        cache=False))
    finally:
        changed.unlink(missing_ok=True)
    found = next((c for r in checked.results for c in r.cells if (c.artifact, c.runtime, c.device) ==
                  (cell.artifact, cell.runtime, cell.device)), None)
    if found is None:
        return FAIL, "the gate's run has no such cell"
    return found.status, f"the gate says {found.status}: {found.detail}"
