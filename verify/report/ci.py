"""The verdict in the formats CI systems read: JUnit XML (one test suite per model, one test case per cell, per
conversion failure and per deployment preprocessing check) and a job summary in markdown. Pure: results and
verdict in, text out."""
from __future__ import annotations

import xml.etree.ElementTree as ElementTree

from converter.zoo import ModelEntry

from ..judge.compare import ERROR, FAIL, PASS, SKIP
from ..judge.gate import Verdict, cell_problem
from ..results import Cell, ModelResult


def junit_xml(results: list[ModelResult], verdict: Verdict, entries: dict[str, ModelEntry], run_id: str = "") -> str:
    """A failure where the gate blocks (a FAIL, a required cell skipped, a failed conversion or a gated
    preprocessing check), an error for an ERROR, skipped for a SKIP that does not block, for a waived failure
    (its message says waived and why) and for an explored cell's failure (it never blocks)."""
    root = ElementTree.Element("testsuites", name="parity-workbench")
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for result in results:
        suite = ElementTree.SubElement(root, "testsuite", name=result.model)
        if run_id:
            properties = ElementTree.SubElement(suite, "properties")
            ElementTree.SubElement(properties, "property", name="run_id", value=run_id)
        cases = [_model_case(result)] if result.error else []
        cases += [_conversion_case(result, artifact, error, verdict, entries.get(result.model)) for artifact, error
                  in result.conversion_failures.items()]
        cases += [_cell_case(cell, entries.get(result.model), verdict) for cell in result.cells]
        cases += [_check_case(check, verdict) for check in result.preprocessing]
        counts = {"tests": len(cases), "failures": 0, "errors": 0, "skipped": 0}
        for case in cases:
            outcome = next(iter(case), None)
            if outcome is not None and outcome.tag in ("failure", "error", "skipped"):
                counts["failures" if outcome.tag == "failure" else "errors" if outcome.tag == "error"
                       else "skipped"] += 1
            suite.append(case)
        seconds = sum(_seconds(cell) for cell in result.cells)
        suite.attrib.update({key: str(value) for key, value in counts.items()}, time=f"{seconds:.3f}")
        for key in totals:
            totals[key] += counts[key]
    root.attrib.update({key: str(value) for key, value in totals.items()})
    ElementTree.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ElementTree.tostring(root, encoding="unicode") + "\n"


def case_name(cell: Cell) -> str:
    return f"{cell.artifact}/{cell.runtime}/{cell.device}/{cell.precision}"


def _case(classname: str, name: str, seconds: float = 0.0) -> ElementTree.Element:
    return ElementTree.Element("testcase", classname=classname, name=name, time=f"{seconds:.3f}")


def _outcome(case: ElementTree.Element, tag: str, message: str, text: str = "",
             kind: str = "") -> ElementTree.Element:
    attributes = {"message": message} | ({"type": kind} if kind else {})
    element = ElementTree.SubElement(case, tag, attributes)
    if text:
        element.text = text
    return case


def _model_case(result: ModelResult) -> ElementTree.Element:
    return _outcome(_case(result.model, "model"), "error", result.error or "", kind=ERROR)


def _conversion_case(result: ModelResult, artifact: str, error: str, verdict: Verdict,
                     entry: ModelEntry | None) -> ElementTree.Element:
    case = _case(result.model, f"convert/{artifact}")
    detail = result.conversion_details.get(artifact, "")
    waived = next((line for line in verdict.waived if line.startswith(f"{result.model}: conversion to {artifact} ")),
                  None)
    if waived is not None:
        return _outcome(case, "skipped", f"waived: {waived}")
    if entry is not None and not entry.deploys_artifact(artifact):
        return _outcome(case, "skipped", f"explored, not deployed (it does not block): conversion to {artifact} "
                                         f"failed: {error}")
    return _outcome(case, "failure", f"conversion to {artifact} failed: {error}", detail, kind="conversion")


def _cell_case(cell: Cell, entry: ModelEntry | None, verdict: Verdict) -> ElementTree.Element:
    case = _case(cell.model, case_name(cell), _seconds(cell))
    problem = cell_problem(cell, entry)
    if problem is not None and cell.key in verdict.waivers:
        return _outcome(case, "skipped", f"waived ({verdict.waivers[cell.key]}): {problem}")
    if cell.conversion_failed:  # the conversion's own test case carries the failure
        return _outcome(case, "skipped", cell.detail)
    if problem is not None and not cell.gated:
        return _outcome(case, "skipped", f"explored, not deployed (it does not block): {problem}")
    if cell.status == ERROR:
        return _outcome(case, "error", cell.detail, kind=ERROR)
    if problem is not None:
        where = cell.divergence.summary if cell.divergence is not None else ""
        return _outcome(case, "failure", problem, where, kind=cell.status)
    if cell.status == SKIP:
        return _outcome(case, "skipped", cell.detail)
    return case


def _check_case(check, verdict: Verdict) -> ElementTree.Element:
    case = _case(check.model, f"preprocessing/{check.deployment}/{check.library}")
    if check.status == PASS:
        return case
    problem = f"{check.status}: {check.detail}"
    if check.key in verdict.waivers:
        return _outcome(case, "skipped", f"waived ({verdict.waivers[check.key]}): {problem}")
    if not check.gated:
        return _outcome(case, "skipped", f"information only (the zoo declares no deployments): {problem}")
    return _outcome(case, "error" if check.status == ERROR else "failure", problem,
                    kind=check.status if check.status in (FAIL, ERROR) else "")


def _seconds(cell: Cell) -> float:
    """The time its timed runs took, as far as it is known (p50 times the measured runs)."""
    return sum(timing.p50_ms * timing.runs for timing in cell.timings) / 1000


def step_summary(results: list[ModelResult], verdict: Verdict, report: str = "report.md") -> str:
    """The verdict, each model's counts of PASS/FAIL/ERROR/SKIP and the blocking lines, for a CI job's summary
    page ($GITHUB_STEP_SUMMARY)."""
    lines = [f"## Parity: {verdict.label}", "",
             f"{len(verdict.blocking)} blocking, {len(verdict.waived)} waived; the full report: `{report}`", "",
             "Deployed cells by status; explored cells (never blocking) by whether they are within their budget.", "",
             "| model | PASS | FAIL | ERROR | SKIP | explored: within budget | explored: not |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for result in results:
        deployed = [cell for cell in result.cells if cell.gated]
        explored = [cell for cell in result.cells if not cell.gated]
        counts = [sum(cell.status == status for cell in deployed) for status in (PASS, FAIL, ERROR, SKIP)]
        counts += [sum(cell.status == PASS for cell in explored), sum(cell.status in (FAIL, ERROR) for cell in explored)]
        lines.append(f"| {result.model} | " + " | ".join(str(count) for count in counts) + " |")
    if verdict.blocking:
        lines += ["", "Blocking:", ""] + [f"- {line}" for line in verdict.blocking]
    if verdict.waived:
        lines += ["", "Waived:", ""] + [f"- {line}" for line in verdict.waived]
    return "\n".join(lines) + "\n"
