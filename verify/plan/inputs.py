"""The images the verifier feeds: a folder of the user's, or the seeded synthetic set."""
from __future__ import annotations

import hashlib
import io
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from converter.core.errors import WorkbenchError
from converter.core.files import atomic_write, kept_bytes
from converter.core.images import IMAGE_SUFFIXES, image_files, preprocess, read_rgb, synthetic_images as _synthetic
from converter.core.outputs import Feeds
from converter.core.samples import sample_feeds
from converter.zoo import ModelEntry


log = logging.getLogger(__name__)

__all__ = ["CHUNK", "ImageSet", "InputError", "InputFile", "label_indices", "load_images", "preprocess", "save_inputs",
           "synthetic_images", "write_input_file"]

CHUNK = 64  # images preprocessed, and samples run, at a time: what any one process holds of a large folder


class InputError(WorkbenchError):
    """No usable images."""


@dataclass
class ImageSet:
    """The images of a run, by name. A folder's are read from their files when needed, so a folder of any size is
    never held whole; the synthetic set is kept in memory."""

    names: list[str]
    source: str = ""  # where they came from, for the report
    labels: list[str] | None = None  # per image, its class folder's name (an ImageFolder layout), else None
    paths: list[Path] | None = None  # where each image is read from
    kept: list[Image.Image] | None = None  # or the images themselves (RGB)
    distinct: bool | None = None  # at least two images differ (None: not checked yet)

    @property
    def labelled(self) -> bool:
        return self.labels is not None

    def __len__(self) -> int:
        return len(self.names)

    def image(self, index: int) -> Image.Image:
        return self.kept[index] if self.kept is not None else read_rgb(self.paths[index])

    def __getitem__(self, key: int | slice) -> Image.Image | list[Image.Image]:
        """One image, or a slice of them as a list (read now)."""
        if isinstance(key, slice):
            return [self.image(index) for index in range(*key.indices(len(self)))]
        return self.image(key)

    def __iter__(self) -> Iterator[Image.Image]:
        return (self.image(index) for index in range(len(self)))

    @property
    def images(self) -> list[Image.Image]:
        """Every image in memory: for a small set only."""
        return list(self)


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
    readable, names, kept = [], [], []
    first, distinct = None, False
    for index, path in enumerate(paths):
        try:
            image = read_rgb(path)  # decoded once here, so that an unreadable file is skipped before any model runs
            if first is None:
                first = (image.size, image.tobytes())
            elif not distinct:
                distinct = image.size != first[0] or image.tobytes() != first[1]
            readable.append(path)
            names.append(path.name if labels is None else f"{path.parent.name}/{path.name}")
            kept.append(index)
        except Image.DecompressionBombError as exc:  # PIL refuses images over 2x its pixel limit (~179 Mpx)
            log.warning("skipping %s: too large to decode safely (%s)", path, exc)
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            log.warning("skipping %s: not a readable image (%s)", path, exc)
    if not readable:
        raise InputError(f"{folder}: none of the {len(paths)} image files could be read")
    skipped = len(paths) - len(readable)
    kinds = "" if labels is None else f" in {len(set(labels))} labelled classes"
    return ImageSet(names, f"{len(readable)} images{kinds} from {folder}"
                    + (f" ({skipped} unreadable skipped)" if skipped else ""),
                    labels=None if labels is None else [labels[i] for i in kept], paths=readable, distinct=distinct)


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
    return ImageSet([f"synthetic-{seed}-{i}.png" for i in range(count)], f"{count} synthetic images (seed {seed})",
                    kept=_synthetic(count, seed))


@dataclass(frozen=True)
class InputFile:
    """A model's inputs as raw samples in a file, one record per sample holding every named input, read a slice at
    a time: every worker reads the same samples and none holds them all, so a folder of thousands of images runs
    within the worker memory limit."""

    path: Path
    samples: int
    fields: tuple[tuple[str, str, tuple[int, ...]], ...]  # per input in forward's order: name, dtype, one sample's shape
    digest: str  # sha256 of the contents

    def __len__(self) -> int:
        return self.samples

    @property
    def record(self) -> np.dtype:
        return np.dtype([(name, dtype, shape) for name, dtype, shape in self.fields])

    def read(self, start: int = 0, stop: int | None = None) -> Feeds:
        """Samples start to stop (the end when None), as {input name: array}."""
        stop = len(self) if stop is None else min(stop, len(self))
        count, record = max(stop - start, 0), self.record
        with open(self.path, "rb") as file:
            file.seek(start * record.itemsize)
            values = np.fromfile(file, record, count)
        if len(values) != count:
            raise InputError(f"{self.path}: the preprocessed inputs are shorter than written (disk full?)")
        return _split(values, self.fields)

    def take(self, indices: list[int]) -> Feeds:
        """The samples at `indices`, in that order (the file mapped once, only those samples copied)."""
        if not indices:
            return _split(np.empty(0, self.record), self.fields)
        if max(indices) >= len(self) or min(indices) < 0:
            raise IndexError(f"{self.path}: samples {indices} outside 0..{len(self) - 1}")
        mapped = np.memmap(self.path, self.record, mode="r", shape=(self.samples,))
        try:
            return _split(np.array(mapped[np.asarray(indices)]), self.fields)
        finally:
            del mapped


def _split(records: np.ndarray, fields) -> Feeds:
    return {name: np.ascontiguousarray(records[name]) for name, _, _ in fields}


def write_input_file(images: ImageSet, entry: ModelEntry, path: Path, seed: int = 0,
                     progress: Callable[[int, int], None] | None = None) -> tuple[InputFile, float | None]:
    """Every input of `entry` for each of the run's samples, CHUNK at a time, into `path`: the image input from
    `images` through the model's preprocessing, the others made by their kind (converter.core.samples; chunk by
    chunk from seeds of their own, so a sample is the same in any run of the same size). A model without an image
    input gets as many samples as there are images. Returns the file and, for an image input, the largest
    per-channel standard deviation over every image and pixel (a normalisation that flattens every input shows
    as a tiny one; None without an image input)."""
    image = entry.image_input
    digest = hashlib.sha256()
    sums = squares = None
    values = 0
    fields: tuple = ()
    with open(path, "wb") as out:
        for start in range(0, len(images), CHUNK):
            stop = min(start + CHUNK, len(images))
            given = {}
            if image is not None:
                given[image.name] = np.ascontiguousarray(
                    preprocess([images.image(i) for i in range(start, stop)], entry.preprocess))
            feeds = sample_feeds(entry, stop - start, seed * 1_000_003 + start, given=given)
            fields = tuple((name, str(array.dtype), array.shape[1:]) for name, array in feeds.items())
            records = np.empty(stop - start, np.dtype([(n, d, s) for n, d, s in fields]))
            for name, array in feeds.items():
                records[name] = array
            out.write(records.tobytes())
            digest.update(records.tobytes())
            if image is not None:
                wide = given[image.name].astype(np.float64)
                axes = (0, *range(2, wide.ndim))  # all but the channel
                sums = wide.sum(axis=axes) + (0 if sums is None else sums)
                squares = (wide * wide).sum(axis=axes) + (0 if squares is None else squares)
                values += wide.size // wide.shape[1]
            if progress is not None:
                progress(stop, len(images))
    spread = None
    if image is not None:
        mean = sums / values
        spread = float(np.sqrt(np.maximum(squares / values - mean * mean, 0)).max())
    return InputFile(path, len(images), fields, digest.hexdigest()), spread


def save_inputs(path: Path, feeds: Feeds, names: list[str], kept: Path | None = None) -> None:
    """The inputs every runtime got and their image names as a compressed .npz: a model's single input as
    `inputs`, several each under its own name. `kept`: a folder of files written before, by a digest of what
    they hold: an unchanged re-run copies its file (compressing 64 images takes 1.5 s)."""
    arrays = {"inputs": next(iter(feeds.values()))} if len(feeds) == 1 else dict(feeds)
    digest = hashlib.sha256(f"{names}".encode())
    for name, array in arrays.items():
        digest.update(f"{name}{array.dtype}{array.shape}".encode())
        digest.update(np.ascontiguousarray(array).tobytes())

    def compressed() -> bytes:
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **arrays, names=np.asarray(names))
        return buffer.getvalue()
    atomic_write(path, kept_bytes(kept / f"{digest.hexdigest()}.npz" if kept is not None else None, compressed))
