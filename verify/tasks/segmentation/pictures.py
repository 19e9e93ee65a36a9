"""A segmenter's picture (masks/<model>.png): a few images, the reference's mask over each, and beside it each runtime
that disagrees, the pixels whose class changed marked."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ...report.charts import png_bytes, pyplot, write_model_pictures
from ...results import ModelResult

PICTURE_IMAGES = 4
DISAGREEING_SHOWN = 3


def _changed(result: ModelResult) -> np.ndarray:
    """Per image, how many pixels some cell classifies otherwise than the reference."""
    reference = result.reference.predictions
    counts = np.zeros(len(reference), int)
    for cell in result.cells:
        if not cell.reference and cell.predictions is not None and cell.predictions.shape == reference.shape:
            counts = np.maximum(counts, (cell.predictions != reference).reshape(len(reference), -1).sum(1))
    return counts


def gallery(result: ModelResult) -> list[int]:
    """The images with the most pixels changed by some cell first, then the first ones."""
    if result.reference is None or result.reference.predictions is None:
        return []
    counts = _changed(result)
    differ = [int(i) for i in np.argsort(-counts, kind="stable") if counts[i] > 0]
    return list(dict.fromkeys([*differ, *range(len(counts))]))[:PICTURE_IMAGES]


def write_pictures(results: list[ModelResult], entries: dict, folder: Path, run_id: str,
                   drawn: Path | None) -> dict[str, str]:
    return write_model_pictures(results, entries, folder, run_id, drawn, "masks", masks_picture)


def masks_picture(result: ModelResult, entry) -> bytes:
    matplotlib, plt = pyplot()
    reference = result.reference
    disagreeing = [cell for cell in result.cells if not cell.reference and cell.predictions is not None
                   and cell.predictions.shape == reference.predictions.shape
                   and (cell.predictions != reference.predictions).any()]
    disagreeing = sorted(disagreeing, key=lambda c: -int((c.predictions != reference.predictions).sum()))
    columns = [("image", None), (f"reference: {reference.runtime} {reference.artifact}", reference),
               *[(f"{c.runtime} {c.artifact} ({c.precision})", c) for c in disagreeing[:DISAGREEING_SHOWN]]]
    images = [i for i in gallery(result) if i in result.gallery]
    figure, axes = plt.subplots(len(images), len(columns), figsize=(2.8 * len(columns), 2.9 * len(images) + 0.6),
                                dpi=100, squeeze=False)
    mean, std = np.asarray(entry.preprocess.mean, np.float32), np.asarray(entry.preprocess.std, np.float32)
    classes = len(result.classes) if result.classes else int(max(
        [reference.predictions.max(), *(c.predictions.max() for _, c in columns[2:])]) + 1)
    # class 0 (background) dark, the others tab10's colours: the image shows faintly beneath
    palette = np.vstack([[0.1, 0.1, 0.1], plt.get_cmap("tab10")(np.arange(max(classes, 2) - 1) % 10)[:, :3]])
    for row, image in enumerate(images):
        pixels = (result.gallery[image].transpose(1, 2, 0) * std + mean).clip(0, 1)
        if pixels.shape[-1] == 1:
            pixels = np.repeat(pixels, 3, axis=-1)
        expected = reference.predictions[image]
        for column, (title, cell) in enumerate(columns):
            axis = axes[row, column]
            axis.set_xticks([])
            axis.set_yticks([])
            name = result.input_names[image] if image < len(result.input_names) else str(image)
            if cell is None:
                axis.imshow(pixels)
                axis.set_title((title + "\n" if row == 0 else "") + name, fontsize=8)
                continue
            got = cell.predictions[image]
            shown = 0.3 * pixels + 0.7 * palette[got]
            note = ""
            if not cell.reference:
                changed = got != expected
                shown[changed] = (1.0, 0.0, 1.0)  # magenta: the class changed
                note = f"\n{int(changed.sum())} pixel(s) changed"
            axis.imshow(shown)
            axis.set_title((title if row == 0 else "") + note, fontsize=8)
    agreed = "" if disagreeing else " (every runtime agrees with the reference)"
    figure.suptitle(f"{result.model}: each pixel's class over the image{agreed}\nmagenta: a class the reference "
                    "does not give", fontsize=9)
    from matplotlib.patches import Patch

    names = result.classes or [str(c) for c in range(classes)]
    figure.legend(handles=[Patch(color=palette[c], label=names[c] if c < len(names) else str(c))
                           for c in range(classes)] + [Patch(color=(1.0, 0.0, 1.0), label="class changed")],
                  loc="lower center", ncol=classes + 1, fontsize=8, frameon=False)
    figure.tight_layout(rect=(0, 0.03, 1, 1))
    return png_bytes(figure)
