"""The CI gate: the exit code follows from the results and the zoo's waivers and requirements. Pure: it reads
the results and returns what it decided; the report reads the waivers it applied from the verdict."""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from converter.core.cli import EXIT_FAILED, EXIT_OK
from converter.zoo import ModelEntry, Waiver

from ..results import Cell, ModelResult
from .compare import ERROR, FAIL, PASS, SKIP
from .kinds import output_kind
from .noise import FAR_ABOVE, far_above

EXIT_PASS, EXIT_BLOCKED = EXIT_OK, EXIT_FAILED
PASSED, BLOCKED = "PASS", "BLOCKED"


@dataclass(frozen=True)
class Verdict:
    passed: bool
    blocking: tuple[str, ...] = ()  # why the deployment is blocked, one line each
    waived: tuple[str, ...] = ()  # failures accepted by allow_failures, with the reason
    notes: tuple[str, ...] = ()  # e.g. waivers that matched nothing, informational checks that failed
    waivers: dict[str, str] = field(default_factory=dict)  # cell or check key -> the reason it was waived
    left_out: str | None = None  # what a filtered run did not verify (models, runtimes, devices)

    @property
    def exit_code(self) -> int:
        return EXIT_PASS if self.passed else EXIT_BLOCKED

    @property
    def label(self) -> str:
        label = PASSED if self.passed else BLOCKED
        return f"{label} (partial)" if self.left_out else label


def decide(results: list[ModelResult], entries: dict[str, ModelEntry], left_out: str | None = None,
           accept_partial: bool = False) -> Verdict:
    """`left_out` names what a filtered run did not verify: such a run is not a deployment verdict, and blocks,
    unless the caller accepts a partial verdict (`--partial`)."""
    blocking: list[str] = []
    waived: list[str] = []
    notes: list[str] = []
    applied: dict[str, str] = {}
    if not results:
        blocking.append("no model was verified")
    if left_out:
        if accept_partial:
            notes.append(f"partial verdict (--partial): left out {left_out}")
        else:
            blocking.append(f"partial run: left out {left_out}; this is not a deployment verdict "
                            "(verify everything, or pass --partial to accept a partial one)")
    for result in results:
        entry = entries.get(result.model)
        waivers = entry.allow_failures if entry else []
        used: set[int] = set()
        if result.error:
            blocking.append(f"{result.model}: {result.error}")
        for artifact, error in result.conversion_failures.items():
            index = entry.conversion_waiver(artifact) if entry else None
            if entry is not None and not entry.deploys_artifact(artifact) and index is None:
                notes.append(f"{result.model}: conversion to {artifact} failed: {error} (explored, not deployed: "
                             "it does not block)")
            elif index is None:
                blocking.append(f"{result.model}: conversion to {artifact} failed: {error}")
            else:
                used.add(index)
                waived.append(f"{result.model}: conversion to {artifact} failed ({waivers[index].reason})")
        for cell in result.cells:
            problem = cell_problem(cell, entry)
            if problem is None or result.error:
                continue  # a model-level error is reported once, not once per cell
            if not cell.gated:  # explored: its SKIPs are in the tables; a failure is worth a line
                if cell.status in (FAIL, ERROR) and not cell.conversion_failed:
                    notes.append(f"{cell.key}: {problem} (explored, not deployed: it does not block)")
                continue
            index = _match_cell(waivers, cell)
            if index is not None:
                used.add(index)
                applied[cell.key] = waivers[index].reason
                if not cell.conversion_failed:
                    waived.append(f"{cell.key}: {problem} ({waivers[index].reason})")
            elif not cell.conversion_failed:  # the conversion failure itself is already listed
                where = f" [{cell.divergence.summary}]" if cell.divergence and cell.divergence.layer else ""
                blocking.append(f"{cell.key}: {problem}{where}")
        notes += noise_notes(result, entry)
        for check in result.preprocessing:
            if check.status not in (FAIL, ERROR) or result.error:
                continue
            problem = f"{check.status}: {check.detail}"
            if not check.gated:
                notes.append(f"{check.key}: {problem} (information: the zoo declares no deployments for this "
                             "model; declare one to gate on it)")
                continue
            index = next((i for i, w in enumerate(waivers) if w.preprocessing == check.deployment), None)
            if index is None:
                blocking.append(f"{check.key}: {problem}")
            else:
                used.add(index)
                applied[check.key] = waivers[index].reason
                waived.append(f"{check.key}: {problem} ({waivers[index].reason})")
        for index, waiver in enumerate(waivers):
            if index not in used:
                notes.append(f"{result.model}: waiver {_describe(waiver)} matched no failure: remove it?")
    return Verdict(not blocking, tuple(blocking), tuple(waived), tuple(notes), applied, left_out)


def with_regressions(verdict: Verdict, blocking: list[str], notes: list[str]) -> Verdict:
    """The verdict with more blocking lines and notes (the performance gate against a baseline run)."""
    return replace(verdict, passed=verdict.passed and not blocking, blocking=(*verdict.blocking, *blocking),
                   notes=(*verdict.notes, *notes))


def noise_notes(result: ModelResult, entry: ModelEntry | None) -> list[str]:
    """The CPU float32 cells that pass their hand-written tolerance yet sit far above the reference's noise floor (a
    real change may hide under a loose tolerance; `tolerance: auto` holds them to the floor), and the outputs a
    `tolerance: auto` had no floor for (judged by the zoo's atol and rtol instead)."""
    notes = []
    for cell in result.cells:
        if cell.status != PASS or cell.device != "cpu":  # the floor is the CPU reference's (see judged_tolerance)
            continue
        for key in cell.comparisons:
            units = result.noise_units(cell, key)
            if far_above(units):
                auto = " (tolerance: auto would block it)" if entry is None or not entry.tolerance.auto else ""
                notes.append(f"{cell.key}: '{key}' passes its tolerance but differs by {units:.0f}x the reference's "
                             f"noise floor (over {FAR_ABOVE:g}x): a real change under a loose tolerance?{auto}")
    if entry is not None and entry.tolerance.auto and not result.error:
        unmeasured = [name for name, kind in entry.output_kinds.items()
                      if not output_kind(kind).matched and name not in result.noise_floor]
        if unmeasured:
            notes.append(f"{result.model}: tolerance: auto, but no noise floor was measured for "
                         f"{', '.join(unmeasured)}: judged by the zoo's own atol and rtol (parity.csv has them)")
    return notes


def is_required(cell: Cell, entry: ModelEntry | None) -> bool:
    """CPU cells always must run; other devices when the zoo's `required` selects the cell."""
    if entry is None:
        return cell.device == "cpu"
    return entry.is_required(cell.runtime, cell.artifact, cell.device)


def cell_problem(cell: Cell, entry: ModelEntry | None) -> str | None:
    if cell.status in (FAIL, ERROR):
        return f"{cell.status}: {cell.detail}"
    if cell.status == SKIP and is_required(cell, entry):
        return f"required but skipped: {cell.detail}"
    if cell.status not in (PASS, SKIP):
        return f"not run ({cell.status or 'no status'})"
    return None


def _match_cell(waivers: list[Waiver], cell: Cell) -> int | None:
    return next((index for index, waiver in enumerate(waivers)
                 if waiver.preprocessing is None and waiver.selector.matches(cell.runtime, cell.artifact, cell.device)),
                None)


def _describe(waiver: Waiver) -> str:
    parts = [f"{k}={v}" for k, v in (("artifact", waiver.artifact), ("runtime", waiver.runtime),
                                      ("device", waiver.device), ("preprocessing", waiver.preprocessing)) if v]
    return "{" + ", ".join(parts) + "}"
