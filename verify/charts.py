"""One latency/throughput chart per model (charts/<model>-timing.png), drawn with matplotlib off-screen."""
from __future__ import annotations

import io
import math
import re
from pathlib import Path

from converter.core.files import atomic_write

from .results import ModelResult

CHARTS = "charts"
MARKERS = ("o", "s", "^", "D")


def chart_file(model: str) -> str:
    """Where a model's chart goes, relative to the report folder (a model name is a safe file name, but the
    chart must never write outside its folder whatever the name)."""
    return f"{CHARTS}/{re.sub(r'[^A-Za-z0-9_.-]', '_', model)}-timing.png"


def write_timing_charts(results: list[ModelResult], folder: Path) -> dict[str, str]:
    """Draw every model with timings; returns model -> chart path relative to `folder`."""
    written = {}
    for result in results:
        timed = [cell for cell in result.cells if len(cell.timings) > 0]
        if timed:
            written[result.model] = chart_file(result.model)
            atomic_write(folder / written[result.model], timing_chart(result))
    return written


def timing_chart(result: ModelResult) -> bytes:
    """Left: median latency per call against the batch size, with its 95% interval; right: images per second.
    Both axes logarithmic in the batch, so 1, 8 and 32 sit evenly apart."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    timed = [cell for cell in result.cells if cell.timings]
    # the legend sits under both plots, three entries a row: the figure grows with it, so it never covers an axis
    legend_inches = 0.1 + 0.18 * math.ceil(len(timed) / 3)
    figure, (latency, throughput) = plt.subplots(1, 2, figsize=(10, 3.2 + legend_inches), dpi=100)
    colours = plt.get_cmap("tab20").colors  # 20 distinct colours (the default cycle repeats after 10)
    for index, cell in enumerate(timed):
        ordered = sorted(cell.timings, key=lambda t: t.batch)
        batches = [t.batch for t in ordered]
        label = f"{cell.runtime} ({cell.artifact}) {cell.device}"
        errors = [[t.p50_ms - t.ci_low_ms for t in ordered], [t.ci_high_ms - t.p50_ms for t in ordered]]
        style = {"color": colours[index % len(colours)], "marker": MARKERS[index // len(colours) % len(MARKERS)]}
        latency.errorbar(batches, [t.p50_ms for t in ordered], yerr=errors, capsize=3, label=label, **style)
        throughput.plot(batches, [t.throughput_ips for t in ordered], **style)
    for axis, title, unit in ((latency, "latency per call (median, 95% interval)", "ms"),
                              (throughput, "throughput", "images / s")):
        axis.set_xscale("log", base=2)
        axis.set_yscale("log")
        axis.set_xlabel("batch size")
        axis.set_ylabel(unit)
        axis.set_title(title, fontsize=10)
        axis.grid(True, which="both", alpha=0.3)
        axis.set_xticks(sorted({t.batch for c in result.cells for t in c.timings}))
        axis.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
        axis.yaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
        axis.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda value, _: f"{value:g}"))
        axis.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    figure.suptitle(f"{result.model}", fontsize=11)
    figure.legend(*latency.get_legend_handles_labels(), loc="lower center", ncol=3, fontsize=8, frameon=False)
    figure.tight_layout(rect=(0, legend_inches / figure.get_figheight(), 1, 1))
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return buffer.getvalue()
