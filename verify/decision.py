"""What to ship: per model, every passing cell with its precision, accuracy (or top-1 agreement), speed and
size, the Pareto front of speed against accuracy, and the fastest cell that passes its gate. Pure functions of
the results; the chart is drawn in charts.py."""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

from .accuracy import drop_points
from .compare import PASS
from .results import Cell, ModelResult
from .tables import table


@dataclass(frozen=True)
class Choice:
    cell: Cell
    precision: str
    score: float  # top-1 accuracy with labelled images, else top-1 agreement with the reference (0-1)
    drop: float  # percentage points of the score lost against the reference
    latency_ms: float  # median at the smallest timed batch (NaN: not timed)
    latency_batch: int
    throughput_ips: float  # images per second at the largest timed batch (NaN: not timed)
    speedup: float  # the reference's latency over this cell's, at the smallest batch
    size_bytes: int | None
    pareto: bool = False  # no other cell is at least as fast and as accurate, and better in one


def choices(result: ModelResult) -> list[Choice]:
    """Every PASSing cell (waived failures are not choices), fastest first; timed cells only are ranked."""
    reference = result.reference
    if reference is None or reference.status != PASS:
        return []
    labelled = reference.accuracy is not None
    reference_latency = _latency(reference)[0]
    rows = []
    for cell in result.cells:
        if cell.status != PASS:
            continue
        if labelled and cell.accuracy is not None:
            score, drop = cell.accuracy.top1, drop_points(reference.accuracy, cell.accuracy) or 0.0
        elif cell.comparison is not None and not math.isnan(cell.comparison.top1_agreement):
            score = cell.comparison.top1_agreement
            drop = 100.0 * (1.0 - score)
        else:
            continue
        latency, batch = _latency(cell)
        largest = max(cell.timings, key=lambda t: t.batch) if cell.timings else None
        rows.append(Choice(cell, cell.precision, score, drop, latency, batch,
                           largest.throughput_ips if largest else math.nan,
                           reference_latency / latency if latency and not math.isnan(latency) else math.nan,
                           result.artifact_bytes.get(cell.artifact)))
    front = pareto_front(rows)
    rows = [replace(row, pareto=index in front) for index, row in enumerate(rows)]
    return sorted(rows, key=lambda row: (math.isnan(row.latency_ms), row.latency_ms))


def pareto_front(rows: list[Choice]) -> set[int]:
    """Indices of the timed rows that no other timed row beats on both latency and score."""
    timed = [(i, r) for i, r in enumerate(rows) if not math.isnan(r.latency_ms)]
    return {i for i, r in timed
            if not any((o.latency_ms <= r.latency_ms and o.score >= r.score)
                       and (o.latency_ms < r.latency_ms or o.score > r.score) for _, o in timed)}


def recommendation(rows: list[Choice]) -> str | None:
    """The fastest cell that passes its gate, in one line."""
    timed = [row for row in rows if not math.isnan(row.latency_ms)]
    if not timed:
        return None
    best = min(timed, key=lambda row: row.latency_ms)
    cell = best.cell
    if cell.accuracy is None:  # its drop is the disagreement itself: nothing to add
        score = f"top-1 agreement with the reference {100 * best.score:.1f}%"
    else:
        change = ("as the reference" if abs(best.drop) < 0.05 else
                  f"{abs(best.drop):.1f} points {'below' if best.drop > 0 else 'above'} the reference")
        score = f"accuracy {100 * best.score:.1f}% ({change})"
    return (f"Ship {cell.runtime} on {cell.artifact} ({best.precision}, {cell.device}): the fastest cell that passes "
            f"its gate, {best.latency_ms:.2f} ms at batch {best.latency_batch} ({best.speedup:.1f}x the reference), "
            f"{score}.")


def decision_section(result: ModelResult, chart: str | None) -> list[str]:
    rows = choices(result)
    if not rows:
        return []
    labelled = rows[0].cell.accuracy is not None
    score = "top-1 accuracy" if labelled else "top-1 agreement"
    lines = ["", f"What to ship ({score}{' on ' + str(result.samples) + ' labelled images' if labelled else ''}; "
                 "`*` on the Pareto front of latency against it; every row passed its gate):", ""]
    body = [[f"{r.cell.runtime}", r.cell.artifact, r.cell.device, r.precision, f"{100 * r.score:.1f}%",
             f"{r.drop:+.1f}", _figure(r.latency_ms, "{:.2f}"), _figure(r.throughput_ips, "{:.0f}"),
             _figure(r.speedup, "{:.2f}x"), f"{r.size_bytes / 1e6:.1f}" if r.size_bytes else "-",
             "*" if r.pareto else ""] for r in rows]
    lines += table(["runtime", "artifact", "device", "precision", score, "drop (points)",
                    f"p50 ms (batch {rows[0].latency_batch})", "images/s (largest batch)", "speed-up", "MB", "front"],
                   body)
    line = recommendation(rows)
    if line:
        lines += ["", f"**{line}**"]
    if chart:
        lines += ["", f"![{result.model} trade-off]({chart})"]
    return lines


def _latency(cell: Cell) -> tuple[float, int]:
    if not cell.timings:
        return math.nan, 0
    smallest = min(cell.timings, key=lambda t: t.batch)
    return smallest.p50_ms, smallest.batch


def _figure(value: float, fmt: str) -> str:
    return "-" if value is None or math.isnan(value) else fmt.format(value)
