"""Timing in the reports: the CSV rows and the per-model table, pure functions of the results (the charts, which
write files, are in charts.py)."""
from __future__ import annotations

import math

import pandas as pd

from .results import ModelResult
from .tables import table
from .timing import Timing

TIMING_COLUMNS = ["model", "artifact", "runtime", "device", "precision", "batch", "runs", "warmup", "seconds",
                  "p50_ms", "p90_ms", "p99_ms", "mean_ms", "min_ms", "cv", "p50_ci_low_ms", "p50_ci_high_ms",
                  "stable", "drift", "attempts", "throughput_ips", "gflops", "pct_of_peak", "threads"]
UNSTABLE = "~"  # marks a figure whose 95% interval of the median is wider than the policy allows


def timing_frame(results: list[ModelResult], peak_gflops: float | None = None) -> pd.DataFrame:
    """One row per timed cell and batch size; GFLOP/s from the model's counted FLOPs at the median latency."""
    rows = []
    for result in results:
        for cell in result.cells:
            for t in cell.timings:
                gflops = achieved_gflops(result.flops_per_sample, t)
                rows.append({
                    "model": cell.model, "artifact": cell.artifact, "runtime": cell.runtime, "device": cell.device,
                    "precision": cell.precision, "batch": t.batch, "runs": t.runs,
                    "warmup": t.warmup, "seconds": round(t.seconds, 3), "p50_ms": t.p50_ms, "p90_ms": t.p90_ms,
                    "p99_ms": t.p99_ms, "mean_ms": t.mean_ms, "min_ms": t.min_ms, "cv": t.cv,
                    "p50_ci_low_ms": t.ci_low_ms, "p50_ci_high_ms": t.ci_high_ms, "stable": t.stable, "drift": t.drift, "attempts": t.attempts,
                    "throughput_ips": t.throughput_ips, "gflops": gflops,
                    "pct_of_peak": percent_of_peak(gflops, peak_gflops), "threads": cell.config.get("threads")})
    frame = pd.DataFrame(rows, columns=TIMING_COLUMNS)
    return frame.astype({"batch": "Int64", "runs": "Int64", "warmup": "Int64", "attempts": "Int64", "threads": "Int64"})


def achieved_gflops(flops_per_sample: int | None, timing: Timing) -> float:
    if not flops_per_sample:
        return math.nan
    return flops_per_sample * timing.batch / (timing.p50_ms / 1000.0) / 1e9


def percent_of_peak(gflops: float, peak_gflops: float | None) -> float:
    return 100.0 * gflops / peak_gflops if peak_gflops and not math.isnan(gflops) else math.nan


def timing_section(result: ModelResult, peak_gflops: float | None, chart: str | None) -> list[str]:
    """The model's timing table: latency at the smallest batch, throughput at the others, and the best
    GFLOP/s with its share of the machine's peak. A figure too noisy to stand on is marked, not hidden."""
    timed = [cell for cell in result.cells if cell.timings]
    if not timed:
        return []
    batches = sorted({t.batch for cell in timed for t in cell.timings})
    smallest, larger = batches[0], batches[1:]
    precisions = sorted({cell.precision for cell in timed})
    threads = sorted({str(cell.config.get("threads")) for cell in timed if cell.config.get("threads")})
    lines = ["", f"Timing ({', '.join(precisions)}; {', '.join(threads) or '?'} thread(s); medians, with the 95% "
                 f"interval of the smallest batch's; `{UNSTABLE}`: that interval is too wide to rely on the figure):",
             ""]
    header = ["artifact", "runtime", "device", f"b{smallest} p50 ms", "95% int.",
              *[f"b{b} img/s" for b in larger], "GFLOP/s", "% peak"]
    rows, over = [], []
    for cell in timed:
        by_batch = {t.batch: t for t in cell.timings}
        first = by_batch.get(smallest)
        best = max(cell.timings, key=lambda t: t.throughput_ips)
        gflops = achieved_gflops(result.flops_per_sample, best)
        percent = percent_of_peak(gflops, peak_gflops)
        if percent > 100:
            over.append(cell)
        rows.append([cell.artifact, cell.runtime, cell.device,
                     _figure(first, first.p50_ms if first else None, "{:.2f}"),
                     f"+-{first.interval:.0%}" if first else "",
                     *[_figure(by_batch.get(b), by_batch[b].throughput_ips if b in by_batch else None, "{:.1f}")
                       for b in larger],
                     "" if math.isnan(gflops) else f"{gflops:.0f} (b{best.batch})",
                     "" if math.isnan(percent) else f"{percent:.0f}%"])
    lines += table(header, rows)
    if result.flops_per_sample:
        lines += ["", f"{result.flops_per_sample / 1e9:.3g} GFLOP per image (counted at conversion); % peak is "
                      "against the machine's measured fp32 peak (see Environment)."]
    if over:
        lines += ["", "**Above 100% of the measured peak** (" + ", ".join(f"{c.runtime} {c.artifact}" for c in over)
                  + "): the peak kernel is not the best on this machine, so every % here reads high."]
    if chart:
        lines += ["", f"![{result.model} latency and throughput]({chart})"]
    return lines


def _figure(timing: Timing | None, value: float | None, fmt: str) -> str:
    if timing is None or value is None:
        return ""
    return fmt.format(value) + ("" if timing.stable else UNSTABLE)
