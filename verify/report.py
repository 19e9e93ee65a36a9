"""Reports are pure functions of results: markdown, CSV frames and the summary JSON. No I/O here."""
from __future__ import annotations

import math
from dataclasses import asdict
from typing import Any

import pandas as pd

from .gate import Verdict, is_required
from .results import Cell, ModelResult

PARITY_COLUMNS = ["model", "artifact", "runtime", "device", "status", "max_abs_diff", "max_rel_diff", "cosine",
                  "top1_agreement", "top5_overlap", "top1_ties", "samples", "required", "waiver", "detail",
                  "first_divergence"]
PREPROCESSING_COLUMNS = ["model", "deployment", "library", "status", "channel_shift", "input_max_abs_diff",
                         "max_abs_diff", "top1_agreement", "waiver", "detail"]
TIMING_COLUMNS = ["model", "artifact", "runtime", "device", "batch", "runs", "p50_ms", "p90_ms", "p99_ms",
                  "mean_ms", "throughput_ips", "threads"]


def parity_frame(results: list[ModelResult], entries: dict) -> pd.DataFrame:
    rows = []
    for result in results:
        for cell in result.cells:
            c = cell.comparison
            rows.append({
                "model": cell.model, "artifact": cell.artifact, "runtime": cell.runtime, "device": cell.device,
                "status": cell.status,
                "max_abs_diff": c.max_abs_diff if c else math.nan, "max_rel_diff": c.max_rel_diff if c else math.nan,
                "cosine": c.cosine if c else math.nan, "top1_agreement": c.top1_agreement if c else math.nan,
                "top5_overlap": c.top5_overlap if c else math.nan, "top1_ties": c.top1_ties if c else 0,
                "samples": c.samples if c else result.samples,
                "required": is_required(cell, entries.get(cell.model)), "waiver": cell.waiver or "",
                "detail": ("reference; " if cell.reference else "") + cell.detail,
                "first_divergence": cell.divergence.summary if cell.divergence else "",
            })
    return pd.DataFrame(rows, columns=PARITY_COLUMNS)


def preprocessing_frame(results: list[ModelResult]) -> pd.DataFrame:
    rows = []
    for result in results:
        for check in result.preprocessing:
            c = check.comparison
            rows.append({"model": check.model, "deployment": check.deployment, "library": check.library,
                         "status": check.status,
                         "channel_shift": c.channel_shift if c else math.nan,
                         "input_max_abs_diff": c.input_max_abs_diff if c else math.nan,
                         "max_abs_diff": c.max_abs_diff if c else math.nan,
                         "top1_agreement": c.top1_agreement if c else math.nan,
                         "waiver": check.waiver or "", "detail": check.detail})
    return pd.DataFrame(rows, columns=PREPROCESSING_COLUMNS)


def timing_frame(results: list[ModelResult]) -> pd.DataFrame:
    rows = [
        {"model": cell.model, "artifact": cell.artifact, "runtime": cell.runtime, "device": cell.device,
         "batch": t.batch, "runs": t.runs, "p50_ms": t.p50_ms, "p90_ms": t.p90_ms, "p99_ms": t.p99_ms,
         "mean_ms": t.mean_ms, "throughput_ips": t.throughput_ips, "threads": cell.config.get("threads")}
        for result in results for cell in result.cells for t in cell.timings
    ]
    frame = pd.DataFrame(rows, columns=TIMING_COLUMNS)
    return frame.astype({"batch": "Int64", "runs": "Int64", "threads": "Int64"})


def summary(results: list[ModelResult], verdict: Verdict, environment: dict) -> dict[str, Any]:
    counts: dict[str, int] = {}
    for result in results:
        for cell in result.cells:
            counts[cell.status] = counts.get(cell.status, 0) + 1
    return {
        "verdict": verdict.label, "exit_code": verdict.exit_code,
        "blocking": verdict.blocking, "waived": verdict.waived, "notes": verdict.notes,
        "cells": counts,
        "failing_cells": [
            {"model": c.model, "artifact": c.artifact, "runtime": c.runtime, "device": c.device,
             "status": c.status, "detail": c.detail, "waiver": c.waiver,
             "first_divergence": asdict(c.divergence) if c.divergence else None}
            for r in results for c in r.cells if c.status in ("FAIL", "ERROR")
        ],
        "failing_preprocessing": [
            {"model": p.model, "deployment": p.deployment, "library": p.library, "status": p.status,
             "detail": p.detail, "waiver": p.waiver}
            for r in results for p in r.preprocessing if p.status in ("FAIL", "ERROR")
        ],
        "models": {r.model: {"error": r.error, "samples": r.samples, "inputs": r.inputs_file,
                             "conversion_failures": r.conversion_failures, "trusted_pickle": r.trusted_pickle}
                   for r in results},
        "environment": environment,
    }


def markdown(results: list[ModelResult], verdict: Verdict, environment: dict) -> str:
    lines = [f"# Parity report: {verdict.label}", ""]
    if verdict.passed:
        lines.append("**PASS**: every required cell matches the PyTorch eager CPU reference within tolerance.")
    else:
        lines.append(f"**BLOCKED**: {len(verdict.blocking)} problem(s) block the deployment.")
        lines += [""] + [f"- {line}" for line in verdict.blocking]
    if verdict.waived:
        lines += ["", "Waived by `allow_failures`:", ""] + [f"- {line}" for line in verdict.waived]
    if verdict.notes:
        lines += ["", "Notes:", ""] + [f"- {line}" for line in verdict.notes]

    columns = _matrix_columns(results)
    lines += ["", "## Matrix", "", "Status and max |diff| against the reference (torch eager, CPU, float32).", ""]
    lines += _table(["model", *[f"{r} ({a}) {d}" for a, r, d in columns]],
                    [[r.model, *[_matrix_cell(r, col) for col in columns]] for r in results])

    for result in results:
        lines += ["", f"## {result.model}", ""]
        facts = [f"{result.samples} samples" + (f", inputs saved in `{result.inputs_file}`" if result.inputs_file else "")]
        if result.trusted_pickle:
            facts.append("the model was loaded from a **trusted pickle** (`trust_pickle: true`)")
        if result.error:
            facts.append(f"**ERROR**: {result.error}")
        lines += ["; ".join(facts), ""]
        lines += _table(
            ["artifact", "runtime", "device", "status", "max abs", "max rel", "cosine", "top-1", "top-5",
             "b1 p50 ms", "b1 p90 ms", "b1 p99 ms", "img/s", "detail"],
            [_model_row(cell) for cell in result.cells])
        divergences = [c for c in result.cells if c.divergence]
        if divergences:
            lines += ["", "Where the failing cells diverge from the reference:", ""]
            lines += [f"- {c.runtime} ({c.artifact}) {c.device}: {c.divergence.summary}" for c in divergences]
        if result.preprocessing:
            lines += ["", "Deployment preprocessing against the reference transform (torchvision on PIL), "
                          "through the reference model:", ""]
            lines += _table(["deployment", "library", "status", "channel shift", "input max abs", "logit max abs",
                             "top-1", "detail"],
                            [[p.deployment, p.library, p.status,
                              _num(p.comparison.channel_shift if p.comparison else None, "{:.3g}"),
                              _num(p.comparison.input_max_abs_diff if p.comparison else None, "{:.3g}"),
                              _num(p.comparison.max_abs_diff if p.comparison else None, "{:.3g}"),
                              _num(p.comparison.top1_agreement if p.comparison else None, "{:.2f}"),
                              p.detail + (f" (waived: {p.waiver})" if p.waiver else "")]
                             for p in result.preprocessing])

    failures = [(r.model, a, e) for r in results for a, e in r.conversion_failures.items()]
    if failures:
        lines += ["", "## Conversion failures (from the manifest)", ""]
        lines += _table(["model", "artifact", "error"], [list(f) for f in failures])

    lines += ["", "## Environment", ""]
    lines += _table(["", ""], [[k, str(v)] for k, v in environment.items()])
    configs = {}
    for result in results:
        for cell in result.cells:
            if cell.config:
                configs.setdefault(f"{cell.runtime} {cell.device}", cell.config)
    if configs:
        lines += ["", "Effective runtime configuration:", ""]
        lines += _table(["runtime", "configuration"],
                        [[k, ", ".join(f"{a}={b}" for a, b in v.items())] for k, v in configs.items()])
    return "\n".join(lines) + "\n"


def _matrix_columns(results: list[ModelResult]) -> list[tuple[str, str, str]]:
    seen: dict[tuple[str, str, str], None] = {}
    for result in results:
        for cell in result.cells:
            seen.setdefault((cell.artifact, cell.runtime, cell.device), None)
    return list(seen)


def _matrix_cell(result: ModelResult, column: tuple[str, str, str]) -> str:
    cell = next((c for c in result.cells if (c.artifact, c.runtime, c.device) == column), None)
    if cell is None:
        return "-"
    text = "REF" if cell.reference and cell.status == "PASS" else cell.status
    if cell.comparison and not math.isnan(cell.comparison.max_abs_diff) and not cell.reference:
        text += f" {cell.comparison.max_abs_diff:.1e}"
    return text + (" (waived)" if cell.waiver else "")


def _model_row(cell: Cell) -> list[str]:
    c = cell.comparison
    b1 = next((t for t in cell.timings if t.batch == 1), None)
    bulk = max(cell.timings, key=lambda t: t.batch, default=None)
    detail = ("reference; " if cell.reference else "") + cell.detail + (f" (waived: {cell.waiver})" if cell.waiver else "")
    return [cell.artifact, cell.runtime, cell.device, cell.status,
            _num(c.max_abs_diff if c else None), _num(c.max_rel_diff if c else None),
            _num(c.cosine if c else None, "{:.6f}"), _num(c.top1_agreement if c else None, "{:.2f}"),
            _num(c.top5_overlap if c else None, "{:.2f}"),
            _num(b1.p50_ms if b1 else None, "{:.2f}"), _num(b1.p90_ms if b1 else None, "{:.2f}"),
            _num(b1.p99_ms if b1 else None, "{:.2f}"),
            _num(bulk.throughput_ips if bulk else None, "{:.1f}") + (f" (b{bulk.batch})" if bulk else ""),
            detail]


def _num(value, fmt: str = "{:.2e}") -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else fmt.format(value)


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    def clean(text: str) -> str:
        return str(text).replace("|", "\\|").replace("\n", " ")

    out = ["| " + " | ".join(clean(h) for h in header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(clean(v) for v in row) + " |" for row in rows]
    return out
