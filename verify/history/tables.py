"""The history and a diff of two runs, for people: markdown lines, a CSV frame and a chart. Pure but for the chart's
file, which draw_history writes."""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from converter.core.files import atomic_write

from ..judge.noise import FAR_ABOVE
from ..report.charts import file_name, png_bytes, pyplot
from ..report.tables import number, table
from .diff import RunDiff
from .records import RunRecord
from .store import CellPoint

LINE_MARKERS = "os^Dv<>phX*"
HISTORY_COLUMNS = ["seq", "run_id", "date", "model", "key", "runtime", "artifact", "device", "precision", "status",
                   "max_abs_diff", "noise_units", "p50_ms", "batch"]


def history_frame(points: list[CellPoint]) -> pd.DataFrame:
    return pd.DataFrame([{column: getattr(p, column) for column in HISTORY_COLUMNS} for p in points],
                        columns=HISTORY_COLUMNS)


def history_lines(points: list[CellPoint]) -> list[str]:
    """Per cell, a row per run: its status, worst difference from the reference (and in noise floors) and p50."""
    by_cell: dict[str, list[CellPoint]] = {}
    for point in points:
        by_cell.setdefault(point.key, []).append(point)
    lines = []
    for key, series in by_cell.items():
        changed = len({p.status for p in series}) > 1
        lines += ["", f"### {key}" + (" (status changed)" if changed else ""), ""]
        lines += table(["run", "date", "status", "max abs diff", "noise x", "p50 ms"],
                       [[p.run_id, p.date[:19], p.status, number(p.max_abs_diff), number(p.noise_units, "{:.1f}"),
                         number(p.p50_ms, "{:.2f}") + (f" (batch {p.batch})" if p.batch else "")]
                        for p in series])
    return lines


def draw_history(points: list[CellPoint], folder: Path) -> dict[str, Path]:
    """Per model, a chart of its float32 cells over the runs: the worst difference in noise floors and the p50
    latency, one line per runtime and artifact. Returns the files written, by model."""
    _, plt = pyplot()
    written = {}
    for model in dict.fromkeys(p.model for p in points):
        mine = [p for p in points if p.model == model and p.precision == "fp32" and p.runtime != "torch"]
        runs = list(dict.fromkeys(p.run_id for p in points if p.model == model))
        if not mine or len(runs) < 1:
            continue
        figure, (noise, latency) = plt.subplots(2, 1, figsize=(9, 6.5), sharex=True)
        for index, key in enumerate(dict.fromkeys(p.key for p in mine)):
            series = [p for p in mine if p.key == key]
            x = [runs.index(p.run_id) for p in series]
            style = {"marker": LINE_MARKERS[index % len(LINE_MARKERS)], "label": f"{series[0].runtime} on "
                     f"{series[0].artifact}"}  # ten colours repeat: the marker tells the eleventh line apart
            noise.plot(x, [p.noise_units if p.noise_units is not None else math.nan for p in series], **style)
            latency.plot(x, [p.p50_ms if p.p50_ms is not None else math.nan for p in series], **style)
        noise.set_ylabel("worst difference\n(noise floors)")
        if any(p.noise_units is not None for p in mine):
            noise.axhline(FAR_ABOVE, color="grey", linestyle="--", linewidth=1)
            noise.annotate(f"{FAR_ABOVE:g}x: flagged", (0, FAR_ABOVE), xytext=(2, 3), textcoords="offset points",
                           fontsize=7, color="grey")
            noise.set_yscale("log")
        else:
            noise.set_yticks([])
            noise.text(0.5, 0.5, "no noise floor: detections and masks are judged by matching", ha="center",
                       va="center", transform=noise.transAxes, color="grey")
        latency.set_ylabel("p50 latency (ms)\nfirst timed batch")
        if all(p.p50_ms is None for p in mine):
            latency.set_yticks([])
            latency.text(0.5, 0.5, "not timed in these runs (--no-timing)", ha="center", va="center",
                         transform=latency.transAxes, color="grey")
        latency.set_xticks(range(len(runs)), [run[:15] for run in runs], rotation=30, ha="right", fontsize=7)
        noise.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        noise.set_title(f"{model}: float32 cells over the recorded runs")
        figure.tight_layout()
        written[model] = atomic_write(folder / f"{file_name(model)}-history.png", png_bytes(figure))
    return written


def describe_run(run: RunRecord) -> str:
    return f"{run.run_id} ({run.kind}, {run.date[:19]}, {run.verdict}, commit {run.commit or '?'})"


def diff_lines(diff: RunDiff) -> list[str]:
    """The diff of two runs as the console and a report show it."""
    lines = [f"before: {describe_run(diff.before)}", f"after:  {describe_run(diff.after)}"]
    if diff.before.zoo_sha256 != diff.after.zoo_sha256:
        lines.append(f"zoo file changed (sha256 {diff.before.zoo_sha256[:12]} -> {diff.after.zoo_sha256[:12]})")
    if diff.tools:
        lines += ["", f"tool versions changed ({len(diff.tools)}):"]
        lines += [f"  {name}: {old} -> {new}" for name, (old, new) in diff.tools.items()]
    if diff.reference_changed:
        lines += ["", "the reference itself moved on the same inputs (beyond its noise floor): "
                  + ", ".join(diff.reference_changed)]
    lines += ["", f"status changed ({len(diff.status)}):"]
    lines += [f"  {c.key}: {c.before} -> {c.after}" + (f" ({c.detail})" if c.after != "PASS" else "")
              for c in diff.status]
    lines += ["", f"drifted beyond the noise floor ({len(diff.drift)}):"]
    lines += [f"  {d.key} '{d.output}': {d.units_before:.1f} -> {d.units_after:.1f} noise floors (max rel "
              f"{d.rel_before:.2g} -> {d.rel_after:.2g})" for d in diff.drift]
    if diff.timings_compared:
        lines += ["", diff.timings_compared]
    else:
        for title, changes in (("slower", diff.slowdown), ("faster", diff.speedup)):
            lines += ["", f"{title} beyond both runs' 95% intervals ({len(changes)}):"]
            lines += [f"  {c.key} batch {c.batch}: {c.p50_before:.2f} ms [{c.interval_before[0]:.2f}, "
                      f"{c.interval_before[1]:.2f}] -> {c.p50_after:.2f} ms [{c.interval_after[0]:.2f}, "
                      f"{c.interval_after[1]:.2f}] ({100 * (c.ratio - 1):+.0f}%)" for c in changes]
    if diff.added:  # the earlier run's cells that are gone are status changes (to absent), above
        lines += ["", f"cells only in the later run ({len(diff.added)}): " + ", ".join(diff.added)]
    return lines


def runs_table(runs: list[tuple]) -> list[str]:
    return table(["#", "run", "kind", "date", "verdict", "machine"],
                 [[str(seq), run_id, kind, date[:19], verdict, machine] for seq, run_id, kind, date, verdict, machine
                  in runs])
