"""A classifier's prediction grid (predictions/<model>.png): thumbnails of the inputs as the model saw them,
titled with the reference's top-1."""
from __future__ import annotations

import math
import textwrap
from pathlib import Path

from ...report.charts import drawn_earlier, file_name, png_bytes, pyplot, write_chart
from ...results import ModelResult
from .tables import showcase

GRID_IMAGES = 24  # thumbnails per grid


def grid_file(model: str) -> str:
    return f"predictions/{file_name(model)}.png"


def write_prediction_grids(results: list[ModelResult], entries: dict, folder: Path,
                           run_id: str = "", drawn: Path | None = None) -> dict[str, str]:
    written = {}
    for result in results:
        reference = result.reference
        entry = entries.get(result.model)
        earlier = drawn_earlier(result, grid_file(result.model))
        if earlier is None and (reference is None or reference.predictions is None
                                or result.reference_probabilities is None or not result.gallery or entry is None):
            continue
        written[result.model] = grid_file(result.model)
        write_chart(folder, written[result.model], earlier, lambda: prediction_grid(result, entry.preprocess),
                    run_id, drawn, ("grid", result, entry.preprocess))
    return written


def short_name(name: str, width: int = 22) -> str:
    """An image's name in at most `width` characters, its start and its end kept (the end has the extension)."""
    if len(name) <= width:
        return name
    tail = (width - 1) * 2 // 3
    return f"{name[:width - 1 - tail]}\u2026{name[-tail:]}"


def prediction_grid(result: ModelResult, preprocess) -> bytes:
    """Thumbnails of the model's inputs (as the model saw them) titled with the reference's top-1 and its
    probability, the true label when known; red where the prediction is wrong, orange where some cell's top-1
    differs from the reference's."""
    matplotlib, plt = pyplot()
    import numpy as np

    shown_images = [index for index in showcase(result, GRID_IMAGES) if index in result.gallery]
    count = len(shown_images)
    columns = min(6, count)
    rows = math.ceil(count / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(2.1 * columns, 2.6 * rows + 0.4), dpi=100, squeeze=False)
    others = [cell for cell in result.cells if cell.predictions is not None and not cell.reference]
    mean, std = np.asarray(preprocess.mean, np.float32), np.asarray(preprocess.std, np.float32)
    for position, axis in enumerate(axes.flat):
        axis.axis("off")
        if position >= count:
            continue
        index = shown_images[position]
        pixels = result.gallery[index].transpose(1, 2, 0) * std + mean
        if preprocess.channel_order == "BGR" and pixels.shape[2] == 3:
            pixels = pixels[..., ::-1]
        axis.imshow(pixels.clip(0, 1).squeeze(), cmap="gray" if pixels.shape[2] == 1 else None)
        top1 = int(result.reference.predictions[index, 0])
        probability = float(result.reference_probabilities[index, 0])
        label = result.labels[index] if result.labels is not None else None
        disagree = [cell for cell in others if int(cell.predictions[index, 0]) != top1]
        title = f"{short_name(result.input_names[index])}\n{result.class_name(top1)} {probability:.2f}"
        colour = "black"
        if label is not None:
            title += f"\ntrue: {result.class_name(label)}"
            colour = "green" if label == top1 else "red"
        if disagree:
            title += f"\n{len(disagree)} cell(s) differ"
            colour = "red" if colour == "red" else "darkorange"
        axis.set_title(title, fontsize=8, color=colour)
        for spine in axis.spines.values():
            spine.set_edgecolor(colour)
        if colour != "black":
            axis.add_patch(matplotlib.patches.Rectangle((0, 0), 1, 1, transform=axis.transAxes, fill=False,
                                                        edgecolor=colour, linewidth=3))
    shown = (f"{count} of {len(result.input_names)} images (those where a cell differs and mistakes first)"
             if count < len(result.input_names) else f"{count} images")
    heading = f"{result.model}: reference top-1 on {shown}; green right, red wrong, orange: a cell differs"
    figure.suptitle(textwrap.fill(heading, width=int(26 * columns)), fontsize=9)  # a narrow grid: on more lines
    figure.tight_layout()
    return png_bytes(figure)
