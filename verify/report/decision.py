"""What to ship: per model, every passing cell with its precision, accuracy (or top-1 agreement), speed and
size, the explored cells outside their budget as not shippable, the Pareto front of speed against accuracy, and
the fastest cell that passes its gate without losing accuracy (with the faster lossy ones beside it). Pure
functions of the results; the chart is drawn in charts.py."""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

from ..judge.accuracy import drop_points
from ..judge.compare import FAIL, PASS
from ..results import Cell, ModelResult
from ..tasks import task_of
from .tables import table


@dataclass(frozen=True)
class Choice:
    cell: Cell
    precision: str
    score: float  # the task's score with labelled images (top-1 accuracy), else top-1 agreement (0-1)
    drop: float  # percentage points of the score lost against the reference
    latency_ms: float  # median at the smallest timed batch (NaN: not timed)
    latency_batch: int
    throughput_ips: float  # images per second at the largest timed batch (NaN: not timed)
    speedup: float  # the reference's latency over this cell's, at the smallest batch
    size_bytes: int | None
    pareto: bool = False  # no other cell is at least as fast and as accurate, and better in one
    not_shippable: str = ""  # why an explored cell cannot ship (outside its precision budget); "": it passed
    stable: bool = True  # its latency's 95% interval was narrow enough and the machine at full speed
    interval_ms: tuple[float, float] = (math.nan, math.nan)  # that interval
    drift: float = 0.0  # how far below full speed the machine ran while it was timed

    @property
    def speed_option(self) -> bool:
        """Whether its speed can recommend it: it passed, was timed, and its precision is native on this CPU."""
        return not self.not_shippable and not self.cell.emulated and not math.isnan(self.latency_ms)


def choices(result: ModelResult) -> list[Choice]:
    """Every PASSing cell, and every explored cell outside its budget (marked not shippable, with why), fastest
    first; deployed cells that fail block the gate and are no choice."""
    reference = result.reference
    if reference is None or reference.status != PASS:
        return []
    labelled = reference.accuracy is not None
    reference_latency = _latency(reference)[0]
    rows = []
    for cell in result.cells:
        explored_failure = cell.status == FAIL and not cell.gated
        if cell.status != PASS and not explored_failure:
            continue
        if labelled and cell.accuracy is not None:
            score, drop = cell.accuracy.value, drop_points(reference.accuracy, cell.accuracy) or 0.0
        elif cell.comparison is not None and cell.comparison.matched_kind:
            # detections and masks, matched at the cell's own limits: within them or not (a few pixels changed
            # inside an fp16 budget lose nothing a threshold would not)
            score = 1.0 if cell.status == PASS else 0.0
            drop = 100.0 * (1.0 - score)
        elif cell.comparison is not None and not math.isnan(cell.comparison.top1_agreement):
            score = cell.comparison.top1_agreement
            drop = 100.0 * (1.0 - score)
        elif cell.comparisons:  # no class scores (an embedding, a regression): the lowest cosine of its outputs
            cosines = [c.cosine for c in cell.comparisons.values() if not math.isnan(c.cosine)]
            score = 1.0 if cell.status == PASS else min(cosines, default=0.0)
            drop = 100.0 * (1.0 - score)
        else:
            continue
        latency, batch = _latency(cell)
        smallest = min(cell.timings, key=lambda t: t.batch) if cell.timings else None
        largest = max(cell.timings, key=lambda t: t.batch) if cell.timings else None
        rows.append(Choice(cell, cell.precision, score, drop, latency, batch,
                           largest.throughput_ips if largest else math.nan,
                           reference_latency / latency if latency and not math.isnan(latency) else math.nan,
                           result.artifact_bytes.get(cell.artifact),
                           not_shippable=cell.detail if explored_failure else "",
                           stable=smallest.stable if smallest else True,
                           interval_ms=(smallest.ci_low_ms, smallest.ci_high_ms) if smallest else (math.nan, math.nan),
                           drift=smallest.drift if smallest else 0.0))
    front = pareto_front(rows)
    rows = [replace(row, pareto=index in front) for index, row in enumerate(rows)]
    return sorted(rows, key=lambda row: (math.isnan(row.latency_ms), row.latency_ms))


def pareto_front(rows: list[Choice]) -> set[int]:
    """Indices of the rows that can ship for speed (timed, passed, native precision) that no other such row beats
    on both latency and score."""
    timed = [(i, r) for i, r in enumerate(rows) if r.speed_option]
    return {i for i, r in timed
            if not any((o.latency_ms <= r.latency_ms and o.score >= r.score)
                       and (o.latency_ms < r.latency_ms or o.score > r.score) for _, o in timed)}


def recommendation(rows: list[Choice], accept_drop: float = 0.0, score: str = "accuracy") -> str | None:
    """The fastest cell that passes its gate and loses no more than `accept_drop` points against the reference
    (none by default), with the faster cells that lose more named beside it and what they cost. A speed-up read
    off an unstable figure (this cell's or the reference's) is withheld and the reason said. `score`: what the
    task's score against labels is called."""
    timed = [row for row in rows if row.speed_option]
    kept = [row for row in timed if row.drop <= accept_drop + 1e-9]
    if not kept:
        return None
    best = min(kept, key=lambda row: row.latency_ms)
    cell = best.cell
    reference = next((row for row in rows if row.cell.reference), None)
    loss = f"loses no {score}" if accept_drop == 0 else f"loses at most {accept_drop:g} points"
    line = (f"Ship {cell.runtime} on {cell.artifact} ({best.precision}, {cell.device}): the fastest cell that passes "
            f"its gate and {loss} against the reference, {_speed(best, reference)}, {_score(best, score)}.")
    lossy = [row for row in timed if row.drop > accept_drop + 1e-9 and row.latency_ms < best.latency_ms]
    if lossy:
        faster = min(lossy, key=lambda row: row.latency_ms)
        line += (f" Faster but lossy: {faster.cell.runtime} on {faster.cell.artifact} ({faster.precision}), "
                 f"{faster.latency_ms:.2f} ms{'' if faster.stable else ' (unstable figure)'}, {_score(faster, score)}; "
                 f"`accept_accuracy_drop: {math.ceil(faster.drop * 10) / 10:g}` in the zoo recommends it.")
    return line


def recommend(result: ModelResult) -> str | None:
    """The recommendation for one model, at the accuracy trade its zoo entry accepts."""
    rows = choices(result)
    return recommendation(rows, result.accept_accuracy_drop, score_name(result, rows)) if rows else None


def _score(row: Choice, score: str) -> str:
    if row.cell.accuracy is None:  # its drop is the disagreement itself: nothing to add
        return f"{_unlabelled_measure(row)} with the reference {100 * row.score:.1f}%"
    change = ("as the reference" if abs(row.drop) < 0.05 else
              f"{abs(row.drop):.1f} points {'below' if row.drop > 0 else 'above'} the reference")
    return f"{score} {100 * row.score:.1f}% ({change})"


def _speed(row: Choice, reference: Choice | None) -> str:
    text = f"{row.latency_ms:.2f} ms at batch {row.latency_batch}"
    unstable = [f"{name} {r.latency_ms:.2f} ms, 95% interval {r.interval_ms[0]:.2f}-{r.interval_ms[1]:.2f}"
                + (f", machine {100 * r.drift:.0f}% below full speed" if r.drift > 0 else "")
                for name, r in (("this cell", row), ("the reference", reference)) if r is not None and not r.stable]
    if unstable:
        return (text + " (speed-up withheld: unstable figures, the machine was not at full speed or the interval "
                f"too wide: {'; '.join(unstable)}; time it again on a quiet machine)")
    if row.cell.reference or math.isnan(row.speedup):
        return text
    return text + f" ({row.speedup:.1f}x the reference)"


def score_name(result: ModelResult, rows: list[Choice]) -> str:
    """What the rows' score is: the task's score against labels, else top-1 agreement or the lowest cosine."""
    return task_of(result).score_name if rows[0].cell.accuracy is not None else _unlabelled_measure(rows[0])


def _unlabelled_measure(row: Choice) -> str:
    first = row.cell.comparison
    if first is not None and first.matched_kind:
        return "agreement"  # detections or pixels matched at the cell's limits: 100% or 0
    return "top-1 agreement" if first is not None and not math.isnan(first.top1_agreement) else "lowest cosine"


def decision_section(result: ModelResult, chart: str | None) -> list[str]:
    rows = choices(result)
    if not rows:
        return []
    labelled = rows[0].cell.accuracy is not None
    score = score_name(result, rows)
    lines = ["", f"What to ship ({score}{' on ' + str(result.samples) + ' labelled images' if labelled else ''}; "
                 "`*` on the Pareto front of latency against it; `~` an unstable latency; *explored* cells never "
                 "block, and those outside their precision budget are not shippable):", ""]
    body = [[f"{r.cell.runtime}", r.cell.artifact, r.cell.device,
             r.precision + (" (emulated)" if r.cell.emulated else ""), f"{100 * r.score:.1f}%",
             f"{r.drop:+.1f}", _figure(r.latency_ms, "{:.2f}") + ("" if r.stable else "~"),
             _figure(r.throughput_ips, "{:.0f}"), _figure(r.speedup, "{:.2f}x"),
             f"{r.size_bytes / 1e6:.1f}" if r.size_bytes else "-", "*" if r.pareto else "",
             "no (see below)" if r.not_shippable else ("yes" if r.cell.gated else "yes *explored*")] for r in rows]
    lines += table(["runtime", "artifact", "device", "precision", score, "drop (points)",
                    f"p50 ms (batch {rows[0].latency_batch})", "samples/s (largest batch)", "speed-up", "MB", "front",
                    "shippable"], body)
    outside = [r for r in rows if r.not_shippable]
    if outside:
        lines += [""] + [f"- not shippable: {r.cell.runtime} on {r.cell.artifact} ({r.precision}): {r.not_shippable}"
                         for r in outside]
    emulated = sorted({r.cell.emulated for r in rows if r.cell.emulated})
    lines += [f"- not a speed option on this CPU: {text}" for text in emulated]
    line = recommend(result)
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
