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

from converter.core.errors import one_line
from converter.core.machine import physical_cores
from converter.core.vocabulary import ARTIFACTS, ONNX_ARTIFACTS
from converter.manifest import read_manifest
from converter.zoo import ModelEntry

from ..judge.compare import ERROR, FAIL, PASS, SEVERITY, SKIP
from ..plan.inputs import load_images, synthetic_images, write_input_file
from .mixed_precision import REPAIRABLE, search_mixed_precision
from .search import Attempt
from .zoo_edit import edited, snippet

log = logging.getLogger(__name__)
REPAIRED, NOT_REPAIRED = "REPAIRED", "NOT REPAIRED"
DEFAULT_SECONDS = 300.0  # per model: the searches' bound (a try started in time finishes; the proof comes on top)
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
    repro: str = ""  # a failing ONNX cell: the smallest subgraph that reproduces it, or why there is none
    latency_ms: dict[str, float] = field(default_factory=dict)
    latency_batch: int = 0  # the samples each latency was timed on
    seconds: float = 0.0
    fixed: tuple = ()  # the cells (artifact, runtime, device) the proved change fixed


def needs_precision_repair(cell) -> bool:
    """A reduced-precision ONNX artifact outside its budget, on ONNX Runtime's CPU: a mixed-precision search."""
    return cell.status == FAIL and cell.artifact in REPAIRABLE and cell.runtime == "onnxruntime" \
        and cell.device == "cpu"


def needs_route(cell) -> bool:
    """A float32 cell that failed, or whose artifact could not be built or run, and that has other routes."""
    return cell.status in (FAIL, ERROR) and not cell.reference and cell.precision == "fp32" \
        and cell.artifact in ARTIFACTS and bool(ARTIFACTS[cell.artifact].routes)


def repair_run(verified, options, seconds: float = DEFAULT_SECONDS,
               progress: Callable[[str], None] = lambda text: None, repros: Path | None = None,
               repairs: list | None = None) -> list:
    """A Repair for each failing cell of the run `verified` (a verify.api.VerifyRun made with `options`) that the
    repair can search: a route search per failing float32 artifact, then a mixed-precision search per reduced-precision
    ONNX cell outside its budget (not after a route change for the same model: its keep list would name the nodes of
    the graph before the change); all of one model's searches within `seconds`. A float32 ONNX cell that fails on ONNX
    Runtime also gets its smallest reproducing subgraph, written under `repros` (verify.repair.reduce). Each repair is
    appended to `repairs` as it finishes (an interrupted run keeps those)."""
    zoo = options.zoo or Path(read_manifest(options.artifacts).zoo.get("path", ""))
    images = load_images(options.images) if options.images else synthetic_images(options.num_images)
    repairs = [] if repairs is None else repairs
    for result in verified.results:
        entry = verified.entries.get(result.model)
        if entry is None or result.error:
            continue
        deadline = time.monotonic() + seconds
        by_artifact: dict[str, list] = {}
        routed = [cell for cell in result.cells if needs_route(cell)]
        failing = {cell.artifact for cell in routed}
        for cell in routed:  # an artifact made from a failing one (paddle_dygraph from paddle) is searched with it
            root = cell.artifact
            while ARTIFACTS[root].requires in failing:
                root = ARTIFACTS[root].requires
            by_artifact.setdefault(root, []).append(cell)
        searches = [(root, cells, _route_search) for root, cells in by_artifact.items()]
        # the same artifact failing on another runtime (OpenVINO on onnx_int8) is proved with the search's cell
        searches += [(cell.artifact, [cell, *(other for other in result.cells if other.artifact == cell.artifact
                                              and other is not cell and other.status == FAIL
                                              and other.precision == cell.precision)],
                      _repair_cell) for cell in result.cells if needs_precision_repair(cell)]
        progress_of = _Progress()  # the model's changes proved so far, and the cells they fixed
        for artifact, cells, searching in searches:
            started, cell = time.monotonic(), cells[0]
            runtimes = ", ".join(sorted({c.runtime for c in cells}))
            base = Repair(cell.model, artifact, runtimes, str(zoo), NOT_REPAIRED,
                          "; ".join(f"{c.runtime} on {c.artifact}: {c.detail}" for c in cells) if len(cells) > 1
                          else cell.detail, "")
            left = deadline - started
            if searching is _repair_cell and progress_of.graph_changed:
                repairs.append(replace(base, summary="not searched: a route change for this model's ONNX graph comes "
                                                     "first, and a keep list names that graph's nodes (write it with "
                                                     "--write-zoo, convert, then --repair again)"))
                continue
            if left <= 0:
                repairs.append(replace(base, summary=f"not searched: the model's {seconds:g} s (--repair-seconds) "
                                                     "were spent"))
                continue
            try:
                repair = searching(base, cells, entry, zoo, images, options, left, progress, result.cells,
                                   progress_of)
            except Exception as exc:  # one cell's repair failing must not lose the others'
                log.debug("repairing %s failed:\n%s", cell.key, traceback.format_exc())
                repair = replace(base, status=ERROR, seconds=time.monotonic() - started,
                                 summary=f"the repair failed: {one_line(exc)}")
            if repair.status == REPAIRED and repair.zoo_change:
                progress_of.add(repair.zoo_change, repair.fixed)
            onnx_cell = next((c for c in cells if c.status == FAIL and c.runtime == "onnxruntime"
                              and c.precision == "fp32" and c.artifact in ONNX_ARTIFACTS), None)
            if onnx_cell is not None and repros is not None:
                progress(f"{cell.model} {onnx_cell.artifact}: reducing to the smallest failing subgraph")
                try:
                    repair = replace(repair, repro=_onnx_repro(onnx_cell, entry, images, options, repros,
                                                                      result.noise_floor))
                except Exception as exc:  # the repro is extra: the search's result stands
                    log.debug("the repro of %s failed:\n%s", onnx_cell.key, traceback.format_exc())
                    repair = replace(repair, repro=f"no repro: {one_line(exc)}")
            repairs.append(repair)
    return repairs


def _onnx_repro(cell, entry: ModelEntry, images, options, folder: Path, floors: dict | None = None) -> str:
    """The smallest subgraph of the cell's ONNX model on which ONNX Runtime and the ONNX specification (the reference
    evaluator, on the run's first sample) disagree, written to folder/<model>/<artifact>; or why there is none."""
    import onnx

    from ..judge.compare import output_and_size
    from ..judge.noise import judged_tolerance
    from .reduce import ort_run, reference_values, smallest_repro, write_repro

    if not any(c.status == FAIL and not output_and_size(name)[1] for name, c in cell.comparisons.items()):
        return ("not reduced: the cell fails only at other sizes of the shape sweep, and the repro is made at the "
                "first size (the cell's detail names the operation that failed)")
    record = read_manifest(options.artifacts).models[cell.model].artifacts[cell.artifact]
    model = onnx.load(str(options.artifacts / record.path))
    feeds = {name: array[:1] for name, array in _model_feeds(cell.model, entry, images)[0].items()}
    try:
        golden = reference_values(model, feeds)
    except Exception as exc:
        return f"no repro: the ONNX reference evaluator cannot run this graph ({one_line(exc)})"
    tolerance = judged_tolerance(entry, cell.runtime, cell.artifact, cell.device, entry.output_names[0], floors or {})
    repro, line = smallest_repro(model, golden, ort_run(options.threads or physical_cores()), tolerance)
    if repro is None:
        where = f"; {cell.divergence.summary}" if cell.divergence else ""
        return (f"no runtime repro: {line} (the ONNX specification's, on the first sample): the graph itself differs "
                "from PyTorch, an exporter problem, unless the mismatch lives in a kernel fusion that exposing every "
                f"output prevents{where}")
    script = write_repro(folder / cell.model / cell.artifact, repro, f"{cell.model} {cell.artifact}")
    return f"{line}; `{script}` shows it (exit 1 while it reproduces)"


def _route_search(base: Repair, cells: list, entry: ModelEntry, zoo: Path, images, options, seconds: float,
                  progress: Callable[[str], None], before: list, earlier: _Progress) -> Repair:
    """The zoo as it is, converted again (an artifact on disk that is not what the converter makes now is not the
    route's fault), then each of the artifact's other routes (converter.core.vocabulary: ArtifactSpec.routes, in their
    order) not already set: the zoo with it, converted and verified by the gate; the first that passes wins."""
    started = time.monotonic()
    tries = [("the zoo as it is, converted again", {}, {})]
    for route in ARTIFACTS[base.artifact].routes:
        found = _route_change(route, entry)
        if found is not None:
            tries.append((route.label, *found))
    method = "route search: " + ", ".join(label for label, _, _ in tries)
    attempts: list[Attempt] = []
    for label, change, renamed in tries:
        if time.monotonic() - started > seconds:
            return replace(base, method=method, attempts=tuple(attempts), seconds=time.monotonic() - started,
                           summary=f"stopped at the time limit after {len(attempts)} of {len(tries)} tries: none "
                                   "passed")
        progress(f"{base.model} {base.artifact}: trying {label}")
        tried = time.monotonic()
        whole = earlier.on_top(change)
        status, detail = prove(zoo, cells, whole, options, before, renamed, frozenset(earlier.fixed))
        attempts.append(Attempt(0, status == PASS, detail, time.monotonic() - tried, label=label))
        if status != PASS:
            continue
        fixed = tuple(sorted((renamed.get(c.artifact, c.artifact), c.runtime, c.device) for c in cells))
        if not change:
            return replace(base, status=REPAIRED, method=method, attempts=tuple(attempts), proof=detail,
                           seconds=time.monotonic() - started,
                           summary="converting again with the same zoo passes: the artifact on disk is not what the "
                                   "converter makes now (edited after conversion, or built by other tools); run "
                                   f"`python -m converter {zoo} --force`: {detail}")
        shown = "; ".join(f"`{key}: {value}`" for key, value in zoo_fields(change))
        also = f" (on top of this model's earlier repairs: {zoo_fields(earlier.change)})" if earlier.change else ""
        return replace(base, status=REPAIRED, method=method, attempts=tuple(attempts),
                       summary=f"{label} ({shown}){also}: {detail}", zoo_change=whole, fixed=fixed,
                       snippet=snippet(base.model, whole), proof=detail, seconds=time.monotonic() - started)
    return replace(base, method=method, attempts=tuple(attempts), seconds=time.monotonic() - started,
                   summary=f"none of the {len(tries) - 1} other routes passes, nor converting again" if len(tries) > 1
                   else f"{base.artifact} has no other route than the zoo's, and converting again does not pass")


def _route_change(route, entry: ModelEntry) -> tuple[dict, dict[str, str]] | None:
    """The zoo change a route makes for this model, and the artifacts it renames (a format swapped: onnx's cells are
    then onnx_dynamo's); None where the route is the model's setting already."""
    if route.field != "formats":
        if entry.setting(route.field) == route.value:
            return None
        section, key = route.field.split(".")
        return {section: {key: route.value}}, {}
    old, new = route.value
    listed = next((name for name in ("formats", "candidates") if old in getattr(entry, name)), None)
    if listed is None or new in entry.built_formats:
        return None
    swapped = [new if name == old else name for name in getattr(entry, listed)]
    renamed = {}
    for spec in ARTIFACTS.values():  # onnx -> onnx_dynamo, onnx_simplified -> onnx_dynamo_simplified
        twin = next((other for other in ARTIFACTS.values() if other.format == new
                     and other.enabled_by == spec.enabled_by), None)
        if spec.format == old and twin is not None:
            renamed[spec.name] = twin.name
    return {listed: swapped}, renamed


def zoo_fields(change: dict) -> list[tuple[str, object]]:
    """A zoo change's fields, dotted: [('onnx.opset', 18)], [('formats', [...])]."""
    return [(f"{key}.{field}", value) for key, block in change.items() if isinstance(block, dict)
            for field, value in block.items()] + [(key, value) for key, value in change.items()
                                                  if not isinstance(value, dict)]


def _repair_cell(base: Repair, cells: list, entry: ModelEntry, zoo: Path, images, options, seconds: float,
                 progress: Callable[[str], None], before: list, earlier: _Progress) -> Repair:
    started, cell = time.monotonic(), cells[0]
    record = read_manifest(options.artifacts).models[cell.model]
    onnx = record.artifacts.get("onnx")
    if onnx is None or not onnx.ok or onnx.path is None:
        return replace(base, summary="the fp32 onnx artifact it is made from was not built: nothing to search")
    compared = next((c for c in before if (c.artifact, c.runtime, c.device) == ("onnx", "onnxruntime", "cpu")), None)
    if compared is None or compared.status != PASS:
        return replace(base, summary="not searched: the search compares with the fp32 onnx model on ONNX Runtime, "
                                     f"whose cell {'did not run' if compared is None else 'is ' + compared.status}")
    feeds, labels = _model_feeds(cell.model, entry, images)
    threads = options.threads or physical_cores()
    with tempfile.TemporaryDirectory(prefix="parity-repair-") as scratch:
        found = search_mixed_precision(cell.artifact, entry, options.artifacts / onnx.path, feeds, labels, seconds,
                                       threads, Path(scratch), lambda text: progress(f"{cell.model} {text}"))
    result = found.result
    method = (f"{found.precision} mixed precision: {found.candidates} nodes ranked by their cost alone in "
              f"{found.precision}, then the fewest of the ranking kept in float32 (bisection)")
    base = replace(base, method=method, attempts=result.attempts, costliest=result.ranking[:SHOWN_NODES],
                   candidates=found.candidates, latency_ms=found.latency_ms, latency_batch=found.latency_batch)
    if result.kept is None:
        return replace(base, summary=result.note or "no set of nodes passes", seconds=time.monotonic() - started)
    change = earlier.on_top({"onnx": {found.zoo_field: list(result.kept)}})
    progress(f"{cell.model} proving: the zoo with {len(result.kept)} node(s) in float32, converted and verified")
    status, proof = prove(zoo, cells, change, options, before, fixed=frozenset(earlier.fixed))
    kept = len(result.kept)
    fewest = "the fewest found" + ("" if result.fewest_proven else " (one fewer was not tried)")
    summary = (f"{kept} of {found.candidates} nodes kept in float32 ({fewest}): {proof}" if status == PASS else
               f"the search's {kept} node(s) in float32 passed on its inputs, but not the gate: {proof}")
    if result.note:
        summary += f"; {result.note}"
    if status != PASS:  # no change to offer: the gate did not pass it
        return replace(base, summary=summary, kept=kept, proof=proof, seconds=time.monotonic() - started)
    return replace(base, status=REPAIRED, summary=summary, kept=kept, zoo_change=change,
                   snippet=snippet(cell.model, change), proof=proof, seconds=time.monotonic() - started,
                   fixed=tuple(sorted((c.artifact, c.runtime, c.device) for c in cells)))


class _Progress:
    """One model's repairs so far: the zoo change they add up to (each later search is proved on top of it, and
    writes it whole), and the cells they fixed (which a later change must not break)."""

    def __init__(self) -> None:
        self.change: dict = {}
        self.fixed: set = set()

    @property
    def graph_changed(self) -> bool:
        """Whether the changes so far alter the fp32 ONNX graph that a keep list names the nodes of."""
        onnx = self.change.get("onnx", {})
        return "opset" in onnx or "dynamic_batch" in onnx or "formats" in self.change or "candidates" in self.change

    def on_top(self, change: dict) -> dict:
        return merged(self.change, change)

    def add(self, change: dict, fixed) -> None:
        self.change = merged(self.change, change)
        self.fixed |= set(fixed)


def merged(first: dict, second: dict) -> dict:
    """Two zoo changes as one: a section's fields merged (the second's win), any other field replaced."""
    out = {key: dict(value) if isinstance(value, dict) else value for key, value in first.items()}
    for key, value in second.items():
        out[key] = {**out.get(key, {}), **value} if isinstance(value, dict) and isinstance(out.get(key), dict) \
            else value
    return out


@dataclass(frozen=True)
class _Resolved:
    """What verify.api.model_inputs reads of a resolved zoo entry."""

    entry: ModelEntry


def _model_feeds(model: str, entry: ModelEntry, images) -> tuple[dict, list | None]:
    """The samples the run fed the model (its own images, or the run's, preprocessed as the verifier does), and their
    labels where the task scores them."""
    from ..api import model_inputs

    own_images, labels, _, _ = model_inputs({model: _Resolved(entry)}, [model], images)[model]
    with tempfile.TemporaryDirectory(prefix="parity-repair-") as scratch:
        inputs, _ = write_input_file(own_images, entry, Path(scratch) / "inputs.bin")
        return inputs.read(), labels


def prove(zoo: Path, cells: list, change: dict, options, before: list, renamed: dict[str, str] | None = None,
          fixed: frozenset = frozenset()) -> tuple[str, str]:
    """The gate's own verdict on `change`: the zoo with it, written beside the zoo (its relative paths resolve the same)
    and removed after, the model converted in full into a scratch folder and verified there on the run's runtimes and
    devices. PASS only where every one of `cells` (one model's) passes, and nothing is worse than in the run (`before`):
    no cell that passed, or that an earlier repair of this model fixed (`fixed`: their keys), fails, errs, is skipped
    or is no longer built; a setting several artifacts share (the opset, a fixed batch) must not trade one for another.
    `renamed`: the artifact that takes a cell's place after the change (a format swapped)."""
    from converter.pipeline import RunOptions, convert
    from converter.zoo import load_zoo

    from ..api import VerifyOptions, run

    model = cells[0].model
    renamed = renamed or {}

    def key(cell) -> tuple[str, str, str]:
        return renamed.get(cell.artifact, cell.artifact), cell.runtime, cell.device

    keys = {key(c) for c in cells}
    changed = zoo.with_name(f".{zoo.stem}.repair-{os.getpid()}{zoo.suffix}")
    try:
        changed.write_text(edited(zoo.read_text(), model, change, str(zoo)))
        with tempfile.TemporaryDirectory(prefix="parity-proof-") as scratch:
            artifacts = Path(scratch) / "artifacts"
            manifest = convert(load_zoo(changed, options.trusted_modules),
                               RunOptions(out=artifacts, models=[model], jobs=1))
            record = manifest.models[model]
            wanted = {artifact for artifact, _, _ in keys}
            failed = {artifact: record.artifacts[artifact].error for artifact in ARTIFACTS  # the first built first
                      if artifact in wanted and artifact in record.artifacts and not record.artifacts[artifact].ok}
            if failed:
                artifact, error = next(iter(failed.items()))
                return ERROR, f"the conversion of {artifact} failed: {error}"
            checked = run(VerifyOptions(artifacts=artifacts, zoo=changed, images=options.images,
                                        num_images=options.num_images, models=(model,), runtimes=options.runtimes,
                                        devices=options.devices, threads=options.threads, timing=False,
                                        partial=True, trusted_modules=options.trusted_modules, cache=False))
    finally:
        changed.unlink(missing_ok=True)
    after = {(c.artifact, c.runtime, c.device): c for c in checked.results[0].cells}
    found = [after[k] for k in sorted(keys) if k in after]
    good_before = {key(c) for c in before if c.status == PASS and not c.reference} | set(fixed)
    worse = [(k, after[k].status, after[k].detail) if k in after else (k, "gone", "no longer built")
             for k in sorted(good_before - keys) if k not in after or after[k].status != PASS]
    lines = []
    if found:
        status = max((c.status for c in found), key=SEVERITY.__getitem__)
        lines.append(f"the gate says {status}" + "".join(
            (f" ({c.artifact} on {c.runtime})" if len(found) > 1 else "") + f": {c.detail}"
            for c in found if c.status == status))
    else:
        gone = sorted({artifact for artifact, _, _ in keys})
        others = [c for c in after.values() if not c.reference and c.status != SKIP]
        status = max((c.status for c in others), key=SEVERITY.__getitem__) if others else ERROR
        lines.append(f"{', '.join(gone)} is no longer built; the model's other cells: "
                     + (status if others else "none ran"))
    if worse:
        status = max(status, FAIL, key=SEVERITY.__getitem__)
        lines.append("it makes worse what passed: " + "; ".join(f"{artifact} on {runtime}: {what}: {detail}"
                                                                for (artifact, runtime, _), what, detail in worse))
    return status, "; ".join(lines)
