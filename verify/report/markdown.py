"""Reports are pure functions of results: markdown, CSV frames and the summary JSON. No I/O here."""
from __future__ import annotations

import math
from dataclasses import asdict
from typing import Any

import pandas as pd

from converter.zoo import ModelEntry

from ..judge.compare import ERROR, FAIL, PASS, SKIP, output_and_size
from ..judge.gate import Verdict, is_required
from ..judge.invariance import PROBE_BATCHES
from ..judge.noise import derived_limits, far_above, judged_tolerance
from ..results import Cell, ModelResult
from ..tasks import task_of
from .decision import decision_section, recommend
from .tables import number, table
from .timing_report import peaks_of, timing_section

PARITY_COLUMNS = ["model", "artifact", "runtime", "device", "precision", "output", "status", "cell_status", "max_abs_diff",
                  "max_rel_diff", "noise_units", "atol", "rtol", "tolerance_from", "atol_to_pass", "rtol_to_pass", "non_finite", "cosine", "top1_agreement",
                  "top5_overlap", "top1_ties", "samples", "required", "deployed", "emulated", "waiver",
                  "batch_invariance", "detail", "first_divergence"]
PREPROCESSING_COLUMNS = ["model", "deployment", "library", "gated", "status", "channel_shift", "input_max_abs_diff",
                         "max_abs_diff", "top1_agreement", "confident_flips", "waiver", "detail"]



DEPLOYED_RULE = ("Deployed cells (the zoo's `formats` at their own precision, and every cell `required` names) are "
                 "gated: a drift blocks. Explored cells (`candidates` formats, reduced-precision runtime settings "
                 "such as torch-bf16) are judged by their precision budgets and shown in What to ship; they never "
                 "block, and are marked *explored*.")


def parity_frame(results: list[ModelResult], entries: dict, verdict: Verdict) -> pd.DataFrame:
    """One row per cell and output: `status` is the output's, `cell_status` the cell's (the worst output's)."""
    rows = []
    for result in results:
        for cell in result.cells:
            outputs = list(cell.comparisons.items()) or [(name, None) for name in result.outputs]
            for output, c in outputs:
                rows.append({
                    "model": cell.model, "artifact": cell.artifact, "runtime": cell.runtime, "device": cell.device,
                    "precision": cell.precision, "output": result.output_label(output), "status": c.status if c else cell.status, "cell_status": cell.status,
                    "max_abs_diff": c.max_abs_diff if c else math.nan,
                    "max_rel_diff": c.max_rel_diff if c else math.nan,
                    "noise_units": _or_nan(result.noise_units(cell, output)),
                    **_judged_by(entries.get(cell.model), cell, output, result),
                    "atol_to_pass": _or_nan(c.atol_to_pass if c and _elementwise(cell) else None),
                    "rtol_to_pass": _or_nan(c.rtol_to_pass if c and _elementwise(cell) else None),
                    "non_finite": c.non_finite if c else 0,
                    "cosine": c.cosine if c else math.nan, "top1_agreement": c.top1_agreement if c else math.nan,
                    "top5_overlap": c.top5_overlap if c else math.nan, "top1_ties": c.top1_ties if c else 0,
                    "samples": c.samples if c else result.samples,
                    "required": is_required(cell, entries.get(cell.model)), "deployed": cell.gated,
                    "emulated": cell.emulated,
                    "waiver": verdict.waivers.get(cell.key, ""), "batch_invariance": cell.batch_invariance,
                    "detail": ("reference; " if cell.reference else "") + (c.reason if c else cell.detail),
                    "first_divergence": cell.divergence.summary if cell.divergence else "",
                })
    return pd.DataFrame(rows, columns=PARITY_COLUMNS)


def preprocessing_frame(results: list[ModelResult], verdict: Verdict) -> pd.DataFrame:
    rows = []
    for result in results:
        for check in result.preprocessing:
            c = check.comparison
            rows.append({"model": check.model, "deployment": check.deployment, "library": check.library,
                         "gated": check.gated, "status": check.status,
                         "channel_shift": c.channel_shift if c else math.nan,
                         "input_max_abs_diff": c.input_max_abs_diff if c else math.nan,
                         "max_abs_diff": c.max_abs_diff if c else math.nan,
                         "top1_agreement": c.top1_agreement if c else math.nan,
                         "confident_flips": c.confident_flips if c else math.nan,
                         "waiver": verdict.waivers.get(check.key, ""), "detail": check.detail})
    return pd.DataFrame(rows, columns=PREPROCESSING_COLUMNS)


def summary(results: list[ModelResult], verdict: Verdict, environment: dict,
            provenance: dict | None = None) -> dict[str, Any]:
    counts: dict[str, int] = {}
    for result in results:
        for cell in result.cells:
            counts[cell.status] = counts.get(cell.status, 0) + 1
    return {
        "verdict": verdict.label, "exit_code": verdict.exit_code, "partial": verdict.left_out is not None,
        "left_out": verdict.left_out, "provenance": provenance or {},
        "blocking": list(verdict.blocking), "waived": list(verdict.waived), "notes": list(verdict.notes),
        "cells": counts,
        "failing_cells": [
            {"model": c.model, "artifact": c.artifact, "runtime": c.runtime, "device": c.device,
             "precision": c.precision, "status": c.status, "deployed": c.gated, "detail": c.detail,
             "waiver": verdict.waivers.get(c.key),
             "outputs": {name: comparison.status for name, comparison in c.comparisons.items()},
             "first_divergence": asdict(c.divergence) if c.divergence else None}
            for r in results for c in r.cells if c.status in (FAIL, ERROR)
        ],
        "failing_preprocessing": [
            {"model": p.model, "deployment": p.deployment, "library": p.library, "status": p.status,
             "gated": p.gated, "detail": p.detail, "waiver": verdict.waivers.get(p.key)}
            for r in results for p in r.preprocessing if p.status in (FAIL, ERROR)
        ],
        "models": {r.model: {"error": r.error, "samples": r.samples, "outputs": r.outputs,
                             "inputs": inputs_file(r.model) if r.inputs_saved else None,
                             "conversion_failures": r.conversion_failures, "trusted_pickle": r.trusted_pickle,
                             "images": r.image_source, "classes": len(r.classes) if r.classes else None,
                             "task": r.task,
                             "noise_floor": {name: asdict(floor) for name, floor in r.noise_floor.items()},
                             "accuracy": {c.key: {"precision": c.precision, **c.accuracy.metrics}
                                          for c in r.cells if c.accuracy},
                             "recommendation": recommend(r)}
                   for r in results},
        "environment": environment,
    }


def inputs_file(model: str) -> str:
    """Where the reports keep the batch every runtime got, relative to the report folder."""
    return f"inputs/{model}.npz"


def markdown(results: list[ModelResult], verdict: Verdict, environment: dict, provenance: dict | None = None,
             charts: dict[str, str] | None = None, tradeoffs: dict[str, str] | None = None,
             pictures: dict[str, str] | None = None, entries: dict[str, ModelEntry] | None = None) -> str:
    """The report a reviewer reads: the verdict first, then narrow tables (they fit a 1000-pixel page), long
    texts in lists under them, skipped cells counted once with their reasons, each model's task's own sections.
    `charts`, `tradeoffs`, `pictures`: model -> the path of its timing chart, trade-off chart and its task's
    picture, relative to the report; `entries` the zoo's, by model (the tolerances)."""
    lines = [f"# Parity report: {verdict.label}", ""]
    if verdict.left_out:
        lines += [f"**Partial run**: left out {verdict.left_out}.", ""]
    if verdict.passed:
        lines.append("**PASS**: every deployed cell " + ("that ran " if verdict.left_out else "")
                     + "matches the PyTorch eager CPU reference within tolerance.")
    else:
        lines.append(f"**BLOCKED**: {len(verdict.blocking)} problem(s) block the deployment.")
        lines += [""] + [f"- {line}" for line in verdict.blocking]
    if verdict.waived:
        lines += ["", "Waived by `allow_failures`:", ""] + [f"- {line}" for line in verdict.waived]
    lines += ["", DEPLOYED_RULE]
    emulated = sorted({cell.emulated for result in results for cell in result.cells if cell.emulated})
    if emulated:
        lines += [""] + [f"**{text}**: those cells' timings say nothing of a CPU with the instructions (there bf16 "
                         "is faster than fp32, here slower), and What to ship does not offer them for speed."
                         for text in emulated]
    if verdict.notes:
        lines += ["", "Notes:", ""] + [f"- {line}" for line in verdict.notes]
    if provenance:
        lines += ["", "What was tested:", ""] + [f"- {key}: {value}" for key, value in provenance.items()
                                                  if key != "left_out"]  # said above
    reused = [cell for result in results for cell in result.cells if cell.cached]
    if reused:
        lines += ["", f"{len(reused)} cell(s) reused from earlier runs with the same artifact files, inputs, "
                      f"settings, tools, code and machine (measured {min(c.cached for c in reused)} to "
                      f"{max(c.cached for c in reused)}); `--no-cache` measures them again."]
    lines += _matrix(results, verdict)
    everywhere = _skipped_everywhere(results)
    for result in results:
        lines += _model_section(result, verdict, everywhere, peaks_of(environment, results),
                                (charts or {}).get(result.model), (entries or {}).get(result.model))
        if not result.error:
            lines += decision_section(result, (tradeoffs or {}).get(result.model))
            lines += task_of(result).sections(result, (pictures or {}).get(result.model))
    failures = [(r, a, e) for r in results for a, e in r.conversion_failures.items()]
    if failures:
        lines += ["", "## Conversion failures (from the manifest)", ""]
        for result, artifact, error in failures:
            lines.append(f"- **{result.model} / {artifact}**: {error}")
            raw = result.conversion_details.get(artifact)
            if raw:
                lines.append(f"  <details><summary>raw error</summary>{_escape(raw)}</details>")
    built = [(r.model, a, text) for r in results for a, text in r.built_with.items()]
    if built:
        lines += ["", "## How the artifacts were built", ""]
        lines += [f"- {model} / {artifact}: {text}" for model, artifact, text in built]
    lines += ["", "## Environment", ""]
    lines += table(["", ""], [[k, str(v)] for k, v in environment.items()])
    configs = {}
    for result in results:
        for cell in result.cells:
            if cell.config:
                configs.setdefault(f"{cell.runtime} {cell.device}", cell.config)
    if configs:
        lines += ["", "Effective runtime configuration:", ""]
        lines += [f"- {k}: " + ", ".join(f"{a}={b}" for a, b in v.items()) for k, v in configs.items()]
    return "\n".join(lines) + "\n"


def _rows(results: list[ModelResult]) -> dict[tuple[str, str, str], dict[str, Cell]]:
    rows: dict[tuple[str, str, str], dict[str, Cell]] = {}
    for result in results:
        for cell in result.cells:
            rows.setdefault((cell.runtime, cell.artifact, cell.device), {})[result.model] = cell
    return rows


def _skipped_everywhere(results: list[ModelResult]) -> set[tuple[str, str, str]]:
    return {key for key, cells in _rows(results).items() if all(c.status == SKIP for c in cells.values())}


def _matrix(results: list[ModelResult], verdict: Verdict) -> list[str]:
    """Cells as rows and models as columns; rows where every model SKIPs become one line of reasons."""
    rows = _rows(results)
    shown = {key: cells for key, cells in rows.items() if any(c.status != SKIP for c in cells.values())}
    lines = ["", "## Matrix", "", "Status and max |diff| against the reference (torch eager, CPU, float32).", ""]
    lines += table(["runtime", "artifact", "device", *[r.model for r in results]],
                    [[runtime, artifact, device, *[_matrix_cell(cells.get(r.model), verdict) for r in results]]
                     for (runtime, artifact, device), cells in shown.items()])
    skipped = [cell for key, cells in rows.items() if key not in shown for cell in cells.values()]
    lines += _skipped(skipped, "Not run on this machine")
    return lines


def _model_section(result: ModelResult, verdict: Verdict, skipped_everywhere: set, peak_gflops: float | None,
                   chart: str | None, entry: ModelEntry | None = None) -> list[str]:
    lines = ["", f"## {result.model}", ""]
    facts = [f"{result.samples} samples" + (f" ({result.image_source})" if result.image_source else "")
             + (f", inputs saved in `{inputs_file(result.model)}`" if result.inputs_saved else
                ", too many to save the preprocessed inputs: rerun on the images" if result.samples else "")]
    multi = result.rows_per_cell
    if len(result.outputs) > 1:
        kinds = f" ({', '.join(f'{n}: {k}' for n, k in result.output_kinds.items())})" if result.output_kinds else ""
        facts.append(f"outputs {', '.join(result.outputs)}{kinds} (the cell's status is the worst of them; "
                     "`parity.csv` has one row per output)")
    if len(result.sizes) > 1:
        facts.append(f"verified at {len(result.sizes)} sizes: {'; '.join(result.sizes)} (timed at the first; a row "
                     "per size and output)")
    if result.trusted_pickle:
        facts.append("the model was loaded from a **trusted pickle** (`trust_pickle: true`)")
    if result.error:
        facts.append(f"**ERROR**: {result.error}")
    lines += ["; ".join(facts), ""]
    ran = [cell for cell in result.cells if cell.status != SKIP]
    if ran and not result.error:
        lines += table(["artifact", "runtime", "device", "precision", *(["output"] if multi else []), "status", "max abs",
                         "max rel", "noise x", "to pass: atol / rtol", "cosine", "top-1", "top-5"],
                        [row for cell in ran for row in _parity_rows(cell, verdict, multi, result)])
        details = [cell for cell in ran if cell.status != PASS or cell.key in verdict.waivers or "tie" in cell.detail]
        if details:
            lines += [""] + [f"- {c.runtime} ({c.artifact}) {c.device}: {c.status}: {c.detail}"
                             + (f" (waived: {verdict.waivers[c.key]})" if c.key in verdict.waivers else "")
                             + ("" if c.gated else " (explored: it does not block)")
                             for c in details]
        lines += _invariance_lines(ran)
        lines += _noise_lines(result, entry)
        lines += timing_section(result, peak_gflops, chart)
    lines += _skipped([cell for cell in result.cells if cell.status == SKIP
                       and (cell.runtime, cell.artifact, cell.device) not in skipped_everywhere], "Skipped")
    divergences = [c for c in result.cells if c.divergence]
    if divergences:
        lines += ["", "Where the failing cells diverge from the reference:", ""]
        lines += [f"- {c.runtime} ({c.artifact}) {c.device}: {c.divergence.summary}" for c in divergences]
    if result.preprocessing:
        gated = any(p.gated for p in result.preprocessing)
        lines += ["", "Deployment preprocessing against the reference transform (torchvision on PIL), "
                      "through the reference model"
                  + ("" if gated else " (information only: the zoo declares no deployments for this model)")
                  + ":", ""]
        lines += table(["deployment", "library", "status", "channel shift", "logit max abs", "top-1",
                         "confident flips"],
                        [[p.deployment, p.library, p.status if p.gated else f"{p.status} (info)",
                          number(p.comparison.channel_shift if p.comparison else None, "{:.3g}"),
                          number(p.comparison.max_abs_diff if p.comparison else None, "{:.3g}"),
                          number(p.comparison.top1_agreement if p.comparison else None, "{:.2f}"),
                          str(p.comparison.confident_flips) if p.comparison else ""]
                         for p in result.preprocessing])
        lines += [""] + [f"- {p.deployment}: {p.detail}"
                         + (f" (waived: {verdict.waivers[p.key]})" if p.key in verdict.waivers else "")
                         for p in result.preprocessing]
    return lines


def _noise_lines(result: ModelResult, entry: ModelEntry | None) -> list[str]:
    """The reference's noise floor per output, and the tolerance `auto` derived from it."""
    if not result.noise_floor:
        return []
    lines = ["", "Noise floor of the reference (float32 against itself in float64, on other threads and in other "
                 "batches; `noise x` is a float32 cell's worst difference in these floors, over 50 flagged):", ""]
    for name, floor in result.noise_floor.items():
        line = f"- {name}: {floor.describe()}"
        if entry is not None and entry.tolerance.auto:
            limits = derived_limits(entry.tolerance.noise_multiple, floor)
            line += (f"; `tolerance: auto`: atol {limits['atol']:.2g}, rtol {limits['rtol']:.2g} "
                     f"({entry.tolerance.noise_multiple:g}x the floor)")
        lines.append(line)
    return lines


def _units(units: float | None) -> str:
    if units is None:
        return ""
    return f"**{units:.0f}**" if far_above(units) else f"{units:.1f}" if units < 100 else f"{units:.0f}"


def _invariance_lines(cells: list[Cell]) -> list[str]:
    """One line for the batch-invariance check: how many cells gave each sample the same answer in every batch."""
    checked = [c for c in cells if c.batch_invariant is not None]
    if not checked:
        return []
    agreed = [c for c in checked if c.batch_invariant]
    lines = ["", f"Batch invariance: {len(agreed)} of {len(checked)} cells give each sample the same answer alone, "
                 f"in a batch of {PROBE_BATCHES[-1]} and in the full batch."]
    lines += [f"- {c.runtime} ({c.artifact}) {c.device}: {c.batch_invariance}" for c in checked if not c.batch_invariant]
    return lines


def _skipped(cells: list[Cell], title: str) -> list[str]:
    """Skipped cells once, grouped by their reason."""
    if not cells:
        return []
    by_reason: dict[str, list[str]] = {}
    for cell in cells:
        name = f"{cell.runtime}@{cell.device}"
        if name not in by_reason.setdefault(cell.detail, []):
            by_reason[cell.detail].append(name)
    lines = ["", f"{title} ({len(cells)} cells):", ""]
    return lines + [f"- {', '.join(names)}: {reason}" for reason, names in by_reason.items()]


def _matrix_cell(cell: Cell | None, verdict: Verdict) -> str:
    if cell is None:
        return "-"
    text = "REF" if cell.reference and cell.status == PASS else cell.status
    # the diff of the output that decided the status (the logits when every output passed)
    shown = next((c for c in cell.comparisons.values() if c.status == cell.status), cell.comparison)
    if shown and shown.non_finite and not cell.reference:
        text += f" {_max_abs(shown)}"
    elif shown and not math.isnan(shown.max_abs_diff) and not cell.reference:
        text += f" {shown.max_abs_diff:.1e}"
    return text + (" (waived)" if cell.key in verdict.waivers else "") + ("" if cell.gated else " *explored*")


def _parity_rows(cell: Cell, verdict: Verdict, multi: bool, result: ModelResult) -> list[list[str]]:
    """One row per cell; with several outputs, one per output."""
    waived = (" (waived)" if cell.key in verdict.waivers else "") + ("" if cell.gated else " *explored*")
    outputs = list(cell.comparisons.items()) if multi and cell.comparisons else [("", cell.comparison)]
    rows = []
    for output, c in outputs:
        status = (c.status if output else cell.status) + waived
        if cell.reference and status == PASS:
            status = "REF"
        precision = cell.precision + (" (emulated)" if cell.emulated else "")
        rows.append([cell.artifact, cell.runtime, cell.device, precision,
                     *([result.output_label(output)] if multi else []), status,
                     _max_abs(c), number(c.max_rel_diff if c else None),
                     _units(result.noise_units(cell, output or next(iter(cell.comparisons), ""))),
                     _to_pass(c) if _elementwise(cell) else "",
                     number(c.cosine if c else None, "{:.6f}"), number(c.top1_agreement if c else None, "{:.2f}"),
                     number(c.top5_overlap if c else None, "{:.2f}")])
    return rows


def _max_abs(comparison) -> str:
    """The max |diff|, or the count of NaN and Inf values where the output has any (no statistic hides them)."""
    if comparison is not None and comparison.non_finite:
        return f"{comparison.non_finite} NaN/Inf"
    return number(comparison.max_abs_diff if comparison else None)


def _judged_by(entry: ModelEntry | None, cell: Cell, output: str, result: ModelResult) -> dict[str, Any]:
    """The atol and rtol a float32 cell's output was held to, and where they came from: the zoo, or its noise floor
    (`tolerance: auto`)."""
    if entry is None or not _elementwise(cell) or output not in cell.comparisons:
        return {"atol": math.nan, "rtol": math.nan, "tolerance_from": ""}
    name = output_and_size(output)[0]
    held = judged_tolerance(entry, cell.runtime, cell.artifact, cell.device, name, result.noise_floor)
    derived = entry.tolerance.auto and name in result.noise_floor and held.rtol == derived_limits(
        entry.tolerance.noise_multiple, result.noise_floor[name])["rtol"]
    return {"atol": held.atol, "rtol": held.rtol,
            "tolerance_from": f"noise floor x{entry.tolerance.noise_multiple:g}" if derived else "zoo"}


def _or_nan(value: float | None) -> float:
    return math.nan if value is None else value


def _elementwise(cell: Cell) -> bool:
    """Whether the cell is held to atol/rtol (a float32 cell; the reference and reduced precisions are not)."""
    return not cell.reference and cell.precision == "fp32"


def _to_pass(comparison) -> str:
    """The smallest atol (at the cell's rtol) and rtol (at its atol) that would pass, where judged elementwise."""
    if comparison is None or comparison.atol_to_pass is None or comparison.rtol_to_pass is None:
        return ""
    return f"{comparison.atol_to_pass:.1e} / {comparison.rtol_to_pass:.1e}"


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
