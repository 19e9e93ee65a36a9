"""Charts in the report folder, drawn with matplotlib off-screen: per model its latency/throughput chart
(charts/<model>-timing.png) and its speed-against-accuracy trade-off; the helpers every picture of a task uses."""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import math
import re
import struct
import zlib
from pathlib import Path

import numpy as np

from converter.core.files import atomic_write, kept_bytes

from ..results import ModelResult

CHARTS = "charts"
MARKERS = ("o", "s", "^", "D")


def file_name(model: str) -> str:
    """A model's name as a file name (a model name is a safe file name, but a chart must never write outside its
    folder whatever the name)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", model)


def chart_file(model: str) -> str:
    """Where a model's timing chart goes, relative to the report folder."""
    return f"{CHARTS}/{file_name(model)}-timing.png"


def pyplot():
    """matplotlib and pyplot, drawing off-screen."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return matplotlib, plt


def png_bytes(figure) -> bytes:
    """The figure as PNG bytes; the figure is closed."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    pyplot()[1].close(figure)
    return buffer.getvalue()


RUN_ID_KEY = "parity-run-id"


def stamped(png: bytes, run_id: str) -> bytes:
    """The PNG with a text chunk naming the run that drew it (read: PIL.Image.open(path).text[RUN_ID_KEY])."""
    if not run_id:
        return png
    body = RUN_ID_KEY.encode("latin-1") + b"\0" + run_id.encode("latin-1")
    chunk = struct.pack(">I", len(body)) + b"tEXt" + body + struct.pack(">I", zlib.crc32(b"tEXt" + body))
    header = 8 + 8 + 13 + 4  # the signature, then IHDR (length, type, 13 bytes, CRC): text may follow it
    return png[:header] + chunk + png[header:]


def drawn_earlier(result: ModelResult, relative: str) -> Path | None:
    """The chart the shard that verified `result` drew (result.drawn_in), where that file exists."""
    earlier = Path(result.drawn_in) / relative if result.drawn_in else None
    return earlier if earlier is not None and earlier.is_file() else None


def write_chart(folder: Path, relative: str, earlier: Path | None, draw, run_id: str, drawn: Path | None = None,
                source: object = None) -> None:
    """A chart: `earlier` copied (a shard's, stamped with that shard's run), or else `draw()`n here and stamped
    with this run's id. `drawn`: a folder of charts drawn before, by a digest of `source` (everything the chart
    is drawn from): an unchanged re-run copies its PNG instead of drawing it again (half a second each)."""
    if earlier is not None:
        atomic_write(folder / relative, earlier.read_bytes())
        return
    key = _digest(source) if drawn is not None else None
    png = kept_bytes(drawn / f"{key}.png" if key else None, draw)
    atomic_write(folder / relative, stamped(png, run_id))


def _drawing_code() -> list[str]:
    """What draws a chart besides its data: this workbench's code and matplotlib's version."""
    from importlib.metadata import version

    from ..cells.cache import code_fingerprint

    return [code_fingerprint(), version("matplotlib")]


def _digest(source: object) -> str | None:
    """A digest of what a chart is drawn from, as canonical JSON: a cell's numbers compare alike whether they were
    measured now (numpy scalars, tuples) or read back from the cell cache (floats, lists); arrays by their bytes;
    the cells' `cached` times left out (a chart never shows them). None where it cannot be written so (then the
    chart is drawn)."""
    def plain(value):
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value) if f.name != "cached"}
            return {"type": type(value).__name__, **fields}
        if isinstance(value, np.ndarray):
            return f"{value.dtype}{value.shape}" + hashlib.sha256(np.ascontiguousarray(value).tobytes()).hexdigest()
        if isinstance(value, np.generic):
            return value.item()
        if isinstance(value, (set, frozenset)):
            return sorted(value, key=str)
        if hasattr(value, "model_dump"):  # a zoo setting (pydantic)
            return value.model_dump()
        return str(value)

    try:
        text = json.dumps([_drawing_code(), source], default=plain, sort_keys=True)
    except (TypeError, ValueError):  # keys that are not strings or numbers
        return None
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def write_timing_charts(results: list[ModelResult], folder: Path, run_id: str = "",
                        drawn: Path | None = None) -> dict[str, str]:
    """Draw every model with timings; returns model -> chart path relative to `folder`."""
    written = {}
    for result in results:
        timed = [cell for cell in result.cells if len(cell.timings) > 0]
        if timed:
            written[result.model] = chart_file(result.model)
            write_chart(folder, written[result.model], drawn_earlier(result, written[result.model]),
                        lambda: timing_chart(result), run_id, drawn, ("timing", result))
    return written


def timing_chart(result: ModelResult) -> bytes:
    """Left: median latency per call against the batch size, with its 95% interval; right: images per second.
    Both axes logarithmic in the batch, so 1, 8 and 32 sit evenly apart."""
    matplotlib, plt = pyplot()

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
                              (throughput, "throughput", "samples / s")):
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
    return png_bytes(figure)


def tradeoff_file(model: str) -> str:
    return f"{CHARTS}/{file_name(model)}-tradeoff.png"


def write_tradeoff_charts(results: list[ModelResult], folder: Path, run_id: str = "",
                          drawn: Path | None = None) -> dict[str, str]:
    from .decision import choices, score_name

    written = {}
    for result in results:
        rows = [row for row in choices(result) if not math.isnan(row.latency_ms) and not row.not_shippable]
        if len(rows) > 1:
            written[result.model] = tradeoff_file(result.model)
            score = score_name(result, rows)
            write_chart(folder, written[result.model], drawn_earlier(result, written[result.model]),
                        lambda: tradeoff_chart(result.model, rows, score), run_id, drawn,
                        ("tradeoff", result.model, rows, score))
    return written


PRECISION_MARKERS = {"fp32": "o", "fp16": "s", "bf16": "D", "int8": "^"}


def tradeoff_chart(model: str, rows, score: str = "top-1 accuracy") -> bytes:
    """Latency at the smallest batch against the rows' `score` (a task's accuracy, or top-1 agreement), one point
    per passing cell, marked by precision; the Pareto front joined by a line."""
    matplotlib, plt = pyplot()

    labelled = rows[0].cell.accuracy is not None
    figure, axis = plt.subplots(figsize=(8, 4.6), dpi=100)
    colours = plt.get_cmap("tab10").colors
    for precision, marker in PRECISION_MARKERS.items():
        chosen = [r for r in rows if r.precision == precision]
        if chosen:
            axis.scatter([r.latency_ms for r in chosen], [100 * r.score for r in chosen], marker=marker, s=50,
                         color=colours[list(PRECISION_MARKERS).index(precision)], label=precision, zorder=3)
    front = sorted((r for r in rows if r.pareto), key=lambda r: r.latency_ms)
    axis.plot([r.latency_ms for r in front], [100 * r.score for r in front], "--", color="grey", alpha=0.7,
              label="Pareto front", zorder=2)
    for r in rows:  # named: the front and the reference (the others crowd around them; the table has them all)
        if r.pareto or r.cell.reference:
            axis.annotate(f"{r.cell.runtime}\n{r.cell.artifact}", (r.latency_ms, 100 * r.score), fontsize=7,
                          xytext=(5, 3), textcoords="offset points")
    axis.set_xscale("log")
    plain = matplotlib.ticker.FuncFormatter(lambda value, _: f"{value:g}")
    axis.xaxis.set_major_formatter(plain)
    axis.xaxis.set_minor_formatter(plain)  # the minor ticks label a range inside one decade (2, 3, 4 ms), not 2x10^0
    axis.set_xlabel(f"median latency at batch {rows[0].latency_batch} (ms, log scale; left is faster)")
    axis.set_ylabel(f"{score} (%)" if labelled else f"{score} with the reference (%)")
    axis.set_title(f"{model}: speed against {score}, passing cells", fontsize=10)
    axis.grid(True, which="both", alpha=0.3)
    axis.legend(fontsize=8, loc="best")
    figure.tight_layout()
    return png_bytes(figure)


def write_model_pictures(results: list[ModelResult], entries: dict, folder: Path, run_id: str, drawn: Path | None,
                         subfolder: str, draw) -> dict[str, str]:
    """A task's picture of each model, `subfolder/<model>.png`, drawn by `draw(result, entry)` where the reference
    has predictions and the report kept some inputs (a shard's drawn earlier is copied); by model, the path."""
    written = {}
    for result in results:
        entry, reference = entries.get(result.model), result.reference
        relative = f"{subfolder}/{file_name(result.model)}.png"
        earlier = drawn_earlier(result, relative)
        if earlier is None and (entry is None or reference is None or reference.predictions is None
                                or not result.gallery):
            continue
        written[result.model] = relative
        write_chart(folder, relative, earlier, lambda: draw(result, entry), run_id, drawn,
                    (subfolder, result, entry))
    return written
