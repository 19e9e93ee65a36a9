"""The images the verifier feeds: a folder of the user's, or the seeded synthetic set."""
from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from converter.core.errors import WorkbenchError
from converter.core.files import atomic_write
from converter.core.images import IMAGE_SUFFIXES, image_files, preprocess, read_rgb, synthetic_images as _synthetic

log = logging.getLogger(__name__)

__all__ = ["ImageSet", "InputError", "label_indices", "load_images", "preprocess", "save_inputs", "synthetic_images"]


class InputError(WorkbenchError):
    """No usable images."""


@dataclass
class ImageSet:
    images: list[Image.Image]  # RGB
    names: list[str]
    source: str = ""  # where they came from, for the report
    labels: list[str] | None = None  # per image, its class folder's name (an ImageFolder layout), else None

    @property
    def labelled(self) -> bool:
        return self.labels is not None


def load_images(folder: Path) -> ImageSet:
    """Every readable image in `folder`, sorted by name, as RGB. Grayscale is replicated to three
    channels; transparency is composited on black. Corrupt files are skipped with a warning.

    A folder with no images of its own but subfolders of images is the ImageFolder layout (`val/ants/*.jpg`,
    `val/bees/*.jpg`): each image is labelled with its subfolder's name."""
    if not folder.is_dir():
        raise InputError(f"{folder}: not a folder")
    paths, labels = image_files(folder)
    if not paths:
        raise InputError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)}), neither in it nor in "
                         "one subfolder per class")
    images, names, kept = [], [], []
    for index, path in enumerate(paths):
        try:
            images.append(read_rgb(path))
            names.append(path.name if labels is None else f"{path.parent.name}/{path.name}")
            kept.append(index)
        except Image.DecompressionBombError as exc:  # PIL refuses images over 2x its pixel limit (~179 Mpx)
            log.warning("skipping %s: too large to decode safely (%s)", path, exc)
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            log.warning("skipping %s: not a readable image (%s)", path, exc)
    if not images:
        raise InputError(f"{folder}: none of the {len(paths)} image files could be read")
    skipped = len(paths) - len(images)
    kinds = "" if labels is None else f" in {len(set(labels))} labelled classes"
    return ImageSet(images, names, f"{len(images)} images{kinds} from {folder}"
                    + (f" ({skipped} unreadable skipped)" if skipped else ""),
                    labels=None if labels is None else [labels[i] for i in kept])


def label_indices(images: ImageSet, classes: list[str] | None, model: str, field: str = "classes") -> list[int] | None:
    """Each image's class index in the model's classes; None when the images carry no labels or the model has
    no class names. InputError naming every folder that matches no class."""
    if images.labels is None or classes is None:
        return None
    index = {name: i for i, name in enumerate(classes)}
    unknown = sorted(set(images.labels) - set(index))
    if unknown:
        shown = ", ".join(unknown[:5]) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
        raise InputError(f"{images.source}: model '{model}': class folder(s) {shown} match none of its {field} "
                         f"({', '.join(classes[:5])}{', ...' if len(classes) > 5 else ''})")
    return [index[label] for label in images.labels]


def synthetic_images(count: int = 8, seed: int = 0) -> ImageSet:
    return ImageSet(_synthetic(count, seed), [f"synthetic-{seed}-{i}.png" for i in range(count)],
                    f"{count} synthetic images (seed {seed})")


def save_inputs(path: Path, batch: np.ndarray, names: list[str]) -> None:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, inputs=batch, names=np.asarray(names))
    atomic_write(path, buffer.getvalue())
