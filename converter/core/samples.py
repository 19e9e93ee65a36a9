"""A model's input samples by kind: what the converter traces and checks with and what the verifier feeds when no
images do. Seeded: the same entry, count, point and seed give the same arrays on any machine.

Each kind is one function in INPUT_KINDS (the only list of input kinds the zoo accepts):
- image: synthetic natural-looking images through the model's preprocessing, at the point's height and width;
- tokens: integer ids drawn from 0 to vocab - 1;
- mask: an attention mask for a tokens input: ones, then zeros on a padded tail of each sample but the first
  (so padding is exercised: a model that ignores its mask answers differently on the padded samples);
- tensor: floats from a normal or uniform distribution, integers uniform in [low, high), or the samples of a
  user's .npy/.npz file.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .images import preprocess_to, synthetic_images
from .outputs import Feeds
from .registry import Registry

if TYPE_CHECKING:
    from ..zoo import ModelEntry, ModelInput

Maker = Callable[["ModelInput", tuple[int, ...], np.random.Generator, "ModelEntry", int], np.ndarray]
INPUT_KINDS: Registry[Maker] = Registry("input kind")


def sample_feeds(entry: ModelEntry, count: int, seed: int, point: Mapping[str, int] | None = None,
                 given: Mapping[str, np.ndarray] | None = None) -> Feeds:
    """`count` samples of every input of `entry` at one point of its shape sweep (default: the first), in
    forward's order. `given` supplies some inputs already made (the preprocessed images of a run); every other
    input is made here, each from a generator of its own (adding an input does not change the others)."""
    point = entry.shape_points[0] if point is None else point
    feeds: Feeds = {}
    for index, spec in enumerate(entry.model_inputs):
        if given is not None and spec.name in given:
            feeds[spec.name] = given[spec.name]
            continue
        rng = np.random.default_rng([seed, index, *sorted(point.values())])
        shape = spec.size_at(point, count)
        array = INPUT_KINDS[spec.kind](spec, shape, rng, entry, seed)
        feeds[spec.name] = np.ascontiguousarray(array.astype(spec.data_type, copy=False))
    return feeds


def _image(spec: ModelInput, shape: tuple[int, ...], rng: np.random.Generator, entry: ModelEntry,
           seed: int) -> np.ndarray:
    count, _, height, width = shape
    return preprocess_to(synthetic_images(count, seed), entry.preprocess, height, width)


def _tokens(spec: ModelInput, shape: tuple[int, ...], rng: np.random.Generator, entry: ModelEntry,
            seed: int) -> np.ndarray:
    return rng.integers(0, spec.vocab or 1, size=shape)


def _mask(spec: ModelInput, shape: tuple[int, ...], rng: np.random.Generator, entry: ModelEntry,
          seed: int) -> np.ndarray:
    """Ones, then a padded tail of zeros along the last axis: none on the first sample, up to half the length on
    the others (at least one position stays unmasked)."""
    mask = np.ones(shape, np.int64)
    length = shape[-1]
    for sample in range(1, shape[0]):
        padded = int(rng.integers(1, length // 2 + 1)) if length > 1 else 0
        if padded:
            mask[sample, ..., length - padded:] = 0
    return mask


def _tensor(spec: ModelInput, shape: tuple[int, ...], rng: np.random.Generator, entry: ModelEntry,
            seed: int) -> np.ndarray:
    if spec.file is not None:
        return _from_file(spec, shape)
    if spec.data_type == "bool":
        return rng.integers(0, 2, size=shape)
    if np.dtype(spec.data_type).kind in "iu":
        return rng.integers(int(spec.low), int(spec.high), size=shape)
    if spec.distribution == "uniform":
        return rng.uniform(spec.low, spec.high, size=shape)
    return rng.normal(spec.mean, spec.std, size=shape)


def _from_file(spec: ModelInput, shape: tuple[int, ...]) -> np.ndarray:
    """The file's first samples, repeated in order where it has fewer than asked."""
    array = read_samples(Path(spec.file), spec.name)
    if tuple(array.shape[1:]) != shape[1:]:
        raise ValueError(f"{spec.file}: samples of shape {tuple(array.shape[1:])}, the input '{spec.name}' takes "
                         f"{shape[1:]}")
    return array[np.arange(shape[0]) % len(array)]


def read_samples(path: Path, name: str) -> np.ndarray:
    """A .npy file's array, or the array named `name` in a .npz (its only one when it has a single array);
    ValueError naming the file when neither holds samples."""
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: cannot read samples ({exc})") from None
    if isinstance(loaded, np.lib.npyio.NpzFile):
        with loaded:
            names = list(loaded.files)
            key = name if name in names else names[0] if len(names) == 1 else None
            if key is None:
                raise ValueError(f"{path}: no array named '{name}' (has: {', '.join(names)})")
            array = loaded[key]
    else:
        array = loaded
    if array.ndim < 1 or len(array) == 0:
        raise ValueError(f"{path}: expected samples along the first axis, found shape {array.shape}")
    return array


INPUT_KINDS.register("image", _image)
INPUT_KINDS.register("tokens", _tokens)
INPUT_KINDS.register("mask", _mask)
INPUT_KINDS.register("tensor", _tensor)
