"""Timing in the reports: the CSV rows and the per-model table, pure functions of the results (the charts, which
write files, are in charts.py).

A CPU cell's % of peak is its GFLOP/s over the measured peak of its own precision (verify/cells/peak.py: int8 against
int8 kernels, bf16 against bf16 ones), never over another precision's: int8 cells against the fp32 peak read 292%
and 322% on a Xeon with VNNI (issue 25). No row reads above 100%: a cell that beats every kernel of its precision
is the best evidence of that precision's peak on this machine, so the peak becomes that cell's rate and the table
says which cell set it. A precision without a measured peak gets no percentage, and neither does a GPU cell (the
peaks are the CPU's)."""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from numbers import Real

import pandas as pd

from converter.core.vocabulary import PRECISIONS

from ..cells.timing import Timing
from ..results import ModelResult
from .tables import table

TIMING_COLUMNS = ["model", "artifact", "runtime", "device", "precision", "batch", "runs", "warmup", "seconds",
                  "p50_ms", "p90_ms", "p99_ms", "mean_ms", "min_ms", "cv", "p50_ci_low_ms", "p50_ci_high_ms",
                  "stable", "drift", "attempts", "throughput_ips", "gflops", "pct_of_peak", "peak_gflops", "threads"]
UNSTABLE = "~"  # marks a figure whose 95% interval of the median is wider than the policy allows


@dataclass(frozen=True)
class Peak:
    """One precision's peak on this CPU: what its cells' % of peak is against."""

    precision: str
    gflops: float | None  # the measured best kernel's, or the cell's that beat it; None: no peak for this precision
    measured: float | None = None  # the best kernel's
    kernel: str = ""  # which kernel, or why there is none (the environment's peak_<precision>_kernel)
    arithmetic: str = ""  # native or emulated on this CPU (peak_<precision>_arithmetic)
    raised_by: str = ""  # the cell that beat every kernel of this precision, when one did


def peaks_of(source, results: list[ModelResult] | None = None) -> dict[str, Peak]:
    """The peak of each precision, from `source`: a run's environment (its peak_<precision>_gflops entries), a
    mapping of precision to Peak, a number (the fp32 peak alone) or None. With `results`, a precision whose best
    CPU cell beats its peak has that cell's rate as its peak instead (raised_by names the cell)."""
    if source is None:
        peaks = {}
    elif isinstance(source, Real):
        peaks = {"fp32": Peak("fp32", float(source), float(source))}
    elif isinstance(source, Mapping) and all(isinstance(v, Peak) for v in source.values()):
        peaks = dict(source)
    elif isinstance(source, Mapping):
        peaks = {}
        for precision in PRECISIONS:
            key = f"peak_{precision}_gflops"
            if key in source:
                value = source[key]
                value = float(value) if value is not None and not _missing(value) else None
                peaks[precision] = Peak(precision, value, value, str(source.get(f"peak_{precision}_kernel") or ""),
                                        str(source.get(f"peak_{precision}_arithmetic") or ""))
    else:
        raise TypeError(f"a peak is a number, a mapping or None, not {type(source).__name__}")
    for precision, peak in list(peaks.items()):
        if peak.gflops is None or not results:
            continue
        best, by = _best_cpu_rate(results, precision)
        if best > peak.gflops:
            peaks[precision] = replace(peak, gflops=best, raised_by=by)
    return peaks


def _missing(value) -> bool:
    try:
        return math.isnan(float(value))
    except (TypeError, ValueError):
        return True


def _best_cpu_rate(results: list[ModelResult], precision: str) -> tuple[float, str]:
    """The highest GFLOP/s any CPU cell of this precision reached, at any batch, and which cell it was."""
    best, by = 0.0, ""
    for result in results:
        for cell in result.cells:
            if cell.device != "cpu" or cell.precision != precision:
                continue
            for t in cell.timings:
                gflops = achieved_gflops(result.flops_per_sample, t)
                if not math.isnan(gflops) and gflops > best:
                    best, by = gflops, f"{cell.runtime} {cell.artifact} on {result.model} at batch {t.batch}"
    return best, by


def peak_for(cell, peaks: dict[str, Peak]) -> float | None:
    """The GFLOP/s a cell's % of peak is against: its own precision's CPU peak; None for a GPU cell or a
    precision without one."""
    peak = peaks.get(cell.precision)
    return peak.gflops if cell.device == "cpu" and peak is not None else None


def timing_frame(results: list[ModelResult], peak_gflops=None) -> pd.DataFrame:
    """One row per timed cell and batch size; GFLOP/s from the model's counted FLOPs at the median latency, and
    its % of the peak of the cell's precision (`peak_gflops`: the run's environment, per-precision Peaks, or the
    fp32 peak as a number; raised over these results where a cell beats it)."""
    peaks = peaks_of(peak_gflops, results)
    rows = []
    for result in results:
        for cell in result.cells:
            peak = peak_for(cell, peaks)
            for t in cell.timings:
                gflops = achieved_gflops(result.flops_per_sample, t)
                rows.append({
                    "model": cell.model, "artifact": cell.artifact, "runtime": cell.runtime, "device": cell.device,
                    "precision": cell.precision, "batch": t.batch, "runs": t.runs,
                    "warmup": t.warmup, "seconds": round(t.seconds, 3), "p50_ms": t.p50_ms, "p90_ms": t.p90_ms,
                    "p99_ms": t.p99_ms, "mean_ms": t.mean_ms, "min_ms": t.min_ms, "cv": t.cv,
                    "p50_ci_low_ms": t.ci_low_ms, "p50_ci_high_ms": t.ci_high_ms, "stable": t.stable, "drift": t.drift, "attempts": t.attempts,
                    "throughput_ips": t.throughput_ips, "gflops": gflops,
                    "pct_of_peak": percent_of_peak(gflops, peak), "peak_gflops": peak,
                    "threads": cell.config.get("threads")})
    frame = pd.DataFrame(rows, columns=TIMING_COLUMNS)
    return frame.astype({"batch": "Int64", "runs": "Int64", "warmup": "Int64", "attempts": "Int64", "threads": "Int64"})


def achieved_gflops(flops_per_sample: int | None, timing: Timing) -> float:
    if not flops_per_sample:
        return math.nan
    return flops_per_sample * timing.batch / (timing.p50_ms / 1000.0) / 1e9


def percent_of_peak(gflops: float, peak_gflops: float | None) -> float:
    """100 x gflops / peak_gflops; NaN without a peak or a rate (a precision's peak is peak_for's)."""
    return 100.0 * gflops / peak_gflops if peak_gflops and not math.isnan(gflops) else math.nan


def timing_section(result: ModelResult, peak_gflops, chart: str | None) -> list[str]:
    """The model's timing table: latency at the smallest batch, throughput at the others, and the best
    GFLOP/s with its share of the peak of its own precision (`peak_gflops` as timing_frame takes it; pass the
    run's peaks_of(environment, results) so that every model's table agrees with timing.csv). A figure too noisy
    to stand on is marked, not hidden."""
    timed = [cell for cell in result.cells if cell.timings]
    if not timed:
        return []
    peaks = peaks_of(peak_gflops, [result])
    batches = sorted({t.batch for cell in timed for t in cell.timings})
    smallest, larger = batches[0], batches[1:]
    precisions = sorted({cell.precision for cell in timed})
    threads = sorted({str(cell.config.get("threads")) for cell in timed if cell.config.get("threads")})
    lines = ["", f"Timing ({', '.join(precisions)}; {', '.join(threads) or '?'} thread(s); medians, with the 95% "
                 f"interval of the smallest batch's; `{UNSTABLE}`: that interval is too wide to rely on the figure):",
             ""]
    header = ["artifact", "runtime", "device", f"b{smallest} p50 ms", "95% int.",
              *[f"b{b} img/s" for b in larger], "GFLOP/s", "% peak"]
    rows = []
    for cell in timed:
        by_batch = {t.batch: t for t in cell.timings}
        first = by_batch.get(smallest)
        best = max(cell.timings, key=lambda t: t.throughput_ips)
        gflops = achieved_gflops(result.flops_per_sample, best)
        rows.append([cell.artifact, cell.runtime, cell.device,
                     _figure(first, first.p50_ms if first else None, "{:.2f}"),
                     f"+-{first.interval:.0%}" if first else "",
                     *[_figure(by_batch.get(b), by_batch[b].throughput_ips if b in by_batch else None, "{:.1f}")
                       for b in larger],
                     "" if math.isnan(gflops) else f"{gflops:.0f} (b{best.batch})",
                     _percent_text(cell, gflops, peaks)])
    lines += table(header, rows)
    if result.flops_per_sample:
        lines += ["", f"{result.flops_per_sample / 1e9:.3g} GFLOP per image (counted at conversion); "
                  + peak_note(timed, peaks)]
    if chart:
        lines += ["", f"![{result.model} latency and throughput]({chart})"]
    return lines


def _percent_text(cell, gflops: float, peaks: dict[str, Peak]) -> str:
    """A CPU cell's share of its precision's peak (the precision said where it is not fp32); nothing for a GPU
    cell or an uncounted model; "no <precision> peak" where this CPU has none for the cell's precision."""
    if cell.device != "cpu" or math.isnan(gflops):
        return ""
    peak = peak_for(cell, peaks)
    if peak is None:
        return f"no {cell.precision} peak"
    return f"{percent_of_peak(gflops, peak):.0f}%" + ("" if cell.precision == "fp32" else f" of {cell.precision}")


def peak_note(cells, peaks: dict[str, Peak]) -> str:
    """What the table's % peak is against: each precision's peak with how this CPU does its arithmetic, the
    cell that set a peak by beating every kernel, the precisions without one."""
    used = [p for p in PRECISIONS if any(c.device == "cpu" and c.precision == p for c in cells)]
    figures, notes = [], []
    for precision in used:
        peak = peaks.get(precision)
        if peak is None:
            notes.append(f"no {precision} peak measured in this run: its cells have no % peak")
        elif peak.gflops is None:
            why = peak.kernel if peak.kernel.startswith("no ") else f"no {precision} peak on this CPU" + (
                f" ({peak.kernel})" if peak.kernel else "")
            notes.append(f"{why}: its cells have no % peak")
        else:
            how = "" if precision == "fp32" or not peak.arithmetic else f", {peak.arithmetic}"
            figures.append(f"{precision} {peak.gflops:.0f}{how}")
            if peak.raised_by:
                kernel = f", {peak.kernel.split(' (others:')[0]}" if peak.kernel else ""
                notes.append(f"the {precision} peak is the rate of {peak.raised_by}: it beat every {precision} kernel "
                             f"measured (best {peak.measured:.0f} GFLOP/s{kernel}), so it is this machine's best "
                             f"{precision} evidence and reads 100%")
    text = ("% peak is against this CPU's peak of the cell's own precision (its best kernel measured, or a cell "
            "that beat them), in GFLOP/s: " + "; ".join(figures) + " (see Environment)") if figures else \
        "no % peak: no peak was measured"
    if any(c.device != "cpu" for c in cells):
        notes.append("GPU cells have no % peak: the peaks are the CPU's")
    return text + "." + "".join(f" {note[0].upper()}{note[1:]}." for note in notes)


def _figure(timing: Timing | None, value: float | None, fmt: str) -> str:
    if timing is None or value is None:
        return ""
    return fmt.format(value) + ("" if timing.stable else UNSTABLE)
