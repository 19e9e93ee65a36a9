"""The CI gate: the exit code follows from the results and the zoo's waivers and requirements."""
from __future__ import annotations

from dataclasses import dataclass, field

from converter.zoo import ModelEntry, Waiver

from .compare import ERROR, FAIL, PASS, SKIP
from .results import Cell, ModelResult

EXIT_PASS, EXIT_BLOCKED, EXIT_USAGE = 0, 1, 2


@dataclass
class Verdict:
    passed: bool
    blocking: list[str] = field(default_factory=list)  # why the deployment is blocked, one line each
    waived: list[str] = field(default_factory=list)  # failures accepted by allow_failures, with the reason
    notes: list[str] = field(default_factory=list)  # e.g. waivers that matched nothing

    @property
    def exit_code(self) -> int:
        return EXIT_PASS if self.passed else EXIT_BLOCKED

    @property
    def label(self) -> str:
        return "PASS" if self.passed else "BLOCKED"


def decide(results: list[ModelResult], entries: dict[str, ModelEntry]) -> Verdict:
    verdict = Verdict(passed=True)
    if not results:
        verdict.blocking.append("no model was verified")
    for result in results:
        entry = entries.get(result.model)
        waivers = entry.allow_failures if entry else []
        used: set[int] = set()
        if result.error:
            verdict.blocking.append(f"{result.model}: {result.error}")
        for artifact, error in result.conversion_failures.items():
            index = _match(waivers, artifact=artifact)
            if index is None:
                verdict.blocking.append(f"{result.model}: conversion to {artifact} failed: {error}")
            else:
                used.add(index)
                verdict.waived.append(f"{result.model}: conversion to {artifact} failed ({waivers[index].reason})")
        for cell in result.cells:
            problem = _cell_problem(cell, entry)
            if problem is None or result.error:
                continue  # a model-level error is reported once, not once per cell
            index = _match(waivers, artifact=cell.artifact, runtime=cell.runtime, device=cell.device)
            if index is not None:
                used.add(index)
                cell.waiver = waivers[index].reason
                if not cell.conversion_failed:
                    verdict.waived.append(f"{cell.key}: {problem} ({cell.waiver})")
            elif not cell.conversion_failed:  # the conversion failure itself is already listed
                where = f" [{cell.divergence.summary}]" if cell.divergence and cell.divergence.layer else ""
                verdict.blocking.append(f"{cell.key}: {problem}{where}")
        for check in result.preprocessing:
            if check.status not in (FAIL, ERROR) or result.error:
                continue
            problem = f"{check.status}: {check.detail}"
            index = next((i for i, w in enumerate(waivers) if w.preprocessing == check.deployment), None)
            if index is None:
                verdict.blocking.append(f"{check.key}: {problem}")
            else:
                used.add(index)
                check.waiver = waivers[index].reason
                verdict.waived.append(f"{check.key}: {problem} ({check.waiver})")
        for index, waiver in enumerate(waivers):
            if index not in used:
                verdict.notes.append(f"{result.model}: waiver {_describe(waiver)} matched no failure: remove it?")
    verdict.passed = not verdict.blocking
    return verdict


def is_required(cell: Cell, entry: ModelEntry | None) -> bool:
    """CPU cells always must run; other devices when the zoo's `required` names the runtime (or runtime@device)."""
    if cell.device == "cpu":
        return True
    required = entry.required if entry else []
    return cell.runtime in required or f"{cell.runtime}@{cell.device}" in required


def _cell_problem(cell: Cell, entry: ModelEntry | None) -> str | None:
    if cell.status in (FAIL, ERROR):
        return f"{cell.status}: {cell.detail}"
    if cell.status == SKIP and is_required(cell, entry):
        return f"required but skipped: {cell.detail}"
    if cell.status not in (PASS, SKIP):
        return f"not run ({cell.status or 'no status'})"
    return None


def _match(waivers: list[Waiver], artifact: str, runtime: str | None = None, device: str | None = None) -> int | None:
    for index, waiver in enumerate(waivers):
        if waiver.preprocessing is not None:
            continue  # excuses only its deployment's preprocessing check
        if runtime is None and waiver.runtime is not None:
            continue  # a runtime waiver does not excuse a failed conversion
        if ((waiver.artifact is None or waiver.artifact == artifact)
                and (waiver.runtime is None or waiver.runtime == runtime)
                and (waiver.device is None or waiver.device == device)):
            return index
    return None


def _describe(waiver: Waiver) -> str:
    parts = [f"{k}={v}" for k, v in (("artifact", waiver.artifact), ("runtime", waiver.runtime),
                                      ("device", waiver.device), ("preprocessing", waiver.preprocessing)) if v]
    return "{" + ", ".join(parts) + "}"
