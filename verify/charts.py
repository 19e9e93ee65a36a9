"""One latency/throughput chart per model (charts/<model>-timing.png), drawn with matplotlib off-screen."""
from __future__ import annotations

import io
import re
from pathlib import Path

from converter.core.files import atomic_write

from .results import ModelResult

CHARTS = "charts"


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

    figure, (latency, throughput) = plt.subplots(1, 2, figsize=(10, 3.8), dpi=100)
    for cell in result.cells:
        if not cell.timings:
            continue
        ordered = sorted(cell.timings, key=lambda t: t.batch)
        batches = [t.batch for t in ordered]
        label = f"{cell.runtime} ({cell.artifact}) {cell.device}"
        errors = [[t.p50_ms - t.ci_low_ms for t in ordered], [t.ci_high_ms - t.p50_ms for t in ordered]]
        line = latency.errorbar(batches, [t.p50_ms for t in ordered], yerr=errors, marker="o", capsize=3,
                                label=label)[0]
        throughput.plot(batches, [t.throughput_ips for t in ordered], marker="o", color=line.get_color())
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
    figure.tight_layout(rect=(0, 0.12, 1, 1))
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return buffer.getvalue()
