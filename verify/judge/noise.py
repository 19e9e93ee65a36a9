"""The reference's own numerical noise, and tolerances in its units. Pure functions on arrays: no models.

A float32 model gives slightly different answers for the same input when only the arithmetic changes: computed in
float64, on another number of threads (another reduction order), in another batch (another kernel). The largest of
those moves, absolute and relative to each sample's largest magnitude (the elementwise rule's two terms), is the
output's noise floor. A converted model that differs from the reference by a few floors did nothing but reorder
arithmetic; one that differs by hundreds changed something, even when a hand-written tolerance lets it pass."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import numpy as np

from converter.zoo import ModelEntry, Tolerance

from .compare import Comparison, output_and_size
from .kinds import output_kind

# The noise floor is never taken below float32's own rounding (a variant that happens to round identically).
FLOAT32_EPS = float(np.finfo(np.float32).eps)
# Where a cell inside its tolerance is flagged: a real change hiding under a loose tolerance.
FAR_ABOVE = 50.0


@dataclass(frozen=True)
class NoiseFloor:
    """One output's noise floor, measured on the reference's first samples: a difference within abs + rel x the
    sample's largest |value| is the size of the reference's own arithmetic noise (one "noise floor")."""

    rel: float  # the largest |variant - reference| of a sample over its largest |reference| (at least float32 eps)
    abs: float  # the largest |variant - reference| (at least float32 eps at the samples' median scale)
    samples: int = 0
    sources: dict[str, float] = field(default_factory=dict)  # each variant's relative difference
    missing: dict[str, str] = field(default_factory=dict)  # variants that could not run, and why

    @property
    def worst_source(self) -> str:
        return max(self.sources, key=self.sources.get) if self.sources else ""

    def describe(self) -> str:
        measured = ", ".join(f"{name} {value:.1e}" for name, value in self.sources.items())
        missing = "; not measured: " + "; ".join(f"{k} ({v})" for k, v in self.missing.items()) if self.missing else ""
        return (f"abs {self.abs:.1e} + rel {self.rel:.1e} of each sample's largest value, over {self.samples} "
                f"samples (relative, by source: {measured}){missing}")


def noise_floor(reference: np.ndarray, variants: Mapping[str, np.ndarray | str]) -> NoiseFloor | None:
    """The noise floor of one output from the reference's own rows (samples, ...) and the same samples' rows
    computed otherwise, by variant name; a variant given as a string could not run (the string says why).
    A variant holds the first rows of `reference` it was computed on. None when no variant ran."""
    ref = np.asarray(reference, dtype=np.float64).reshape(len(reference), -1)
    sources: dict[str, float] = {}
    absolute = 0.0
    missing = {name: value for name, value in variants.items() if isinstance(value, str)}
    magnitude = np.abs(ref).max(axis=1)
    for name, value in variants.items():
        if isinstance(value, str):
            continue
        rows = len(value)
        other = np.asarray(value, dtype=np.float64).reshape(rows, -1)
        if other.shape != ref[:rows].shape or not np.isfinite(other).all():
            missing[name] = f"shape {value.shape} or non-finite values"
            continue
        diff = np.abs(other - ref[:rows]).max(axis=1)
        sources[name] = float((diff / np.maximum(magnitude[:rows], np.finfo(np.float64).tiny)).max())
        absolute = max(absolute, float(diff.max()))
    if not sources:
        return None
    scale = float(np.median(magnitude)) or 1.0
    return NoiseFloor(rel=max(FLOAT32_EPS, *sources.values()), abs=max(FLOAT32_EPS * scale, absolute),
                      samples=len(ref), sources=sources, missing=missing)


def noise_units(reference: np.ndarray, candidate: np.ndarray, floor: NoiseFloor) -> float:
    """How many noise floors the candidate is from the reference at its worst element: the largest |c - r| over
    (floor.abs + floor.rel x the sample's largest |r|). `tolerance: auto` passes a cell up to its multiple."""
    samples = len(reference)
    ref = np.asarray(reference, dtype=np.float64).reshape(samples, -1)
    diff = np.abs(np.asarray(candidate, dtype=np.float64).reshape(samples, -1) - ref)
    return float((diff / (floor.abs + floor.rel * np.abs(ref).max(axis=1, keepdims=True))).max())


def with_noise_units(comparisons: Mapping[str, Comparison], reference: Mapping[str, np.ndarray],
                     candidate: Mapping[str, np.ndarray], floors: Mapping[str, NoiseFloor]) -> dict[str, Comparison]:
    """Each comparison judged element by element with its noise units, where its output's floor was measured (at
    every size of a shape sweep: the floor is the first size's)."""
    marked = {}
    for key, comparison in comparisons.items():
        floor = floors.get(output_and_size(key)[0])
        if (floor is not None and not comparison.matched_kind and not comparison.non_finite and key in candidate
                and key in reference and candidate[key].shape == reference[key].shape):
            comparison = replace(comparison, noise_units=noise_units(reference[key], candidate[key], floor))
        marked[key] = comparison
    return marked


SAMPLE_VALUES = 256  # of the reference's first sample, kept in the history


def reference_sample(output: np.ndarray) -> list[float]:
    """The first SAMPLE_VALUES values of an output's first sample, as the history keeps them."""
    return [float(value) for value in np.asarray(output[0], dtype=np.float64).ravel()[:SAMPLE_VALUES]]


def sample_units(before: list[float], after: list[float], floor: NoiseFloor) -> float | None:
    """How many noise floors apart two runs' reference samples are (None when they do not line up)."""
    if not before or len(before) != len(after):
        return None
    return noise_units(np.asarray([before]), np.asarray([after]), floor)


def derived_limits(multiple: float, floor: NoiseFloor) -> dict[str, float]:
    """`tolerance: auto`'s atol and rtol for an output with this noise floor: `multiple` floors."""
    return {"atol": multiple * floor.abs, "rtol": multiple * floor.rel}


def judged_tolerance(entry: ModelEntry, runtime: str, artifact: str, device: str, output: str,
                     floors: Mapping[str, NoiseFloor]) -> Tolerance:
    """The tolerance an output of a cell is held to: the zoo's, with atol and rtol from the output's noise floor
    where the model's tolerance is `auto`, the floor was measured and the cell runs on the CPU (the floor is the CPU
    reference's; a GPU's kernels round otherwise, and the calibration is the CPU's), else the zoo's own values."""
    floor = floors.get(output) if device == "cpu" else None
    derived = derived_limits(entry.tolerance.noise_multiple, floor) if floor is not None else None
    return entry.tolerance_for(runtime, artifact, device, output, derived)


def reference_floors(reference: Mapping[str, np.ndarray], probes: Mapping[int, Mapping[str, np.ndarray]],
                     variants: Mapping[str, Mapping[str, np.ndarray] | str],
                     kinds: Mapping[str, str]) -> dict[str, NoiseFloor]:
    """Each elementwise output's noise floor from the reference's outputs, its probes (the first samples alone and in
    an odd batch) and its noise variants (runner.noise_variants). Detections and masks are judged by matching, not
    element by element: they have none."""
    floors = {}
    for name, rows in reference.items():
        if output_kind(kinds.get(name, "regression")).matched:
            continue
        measured: dict[str, np.ndarray | str] = {f"batch={size}": outputs[name] for size, outputs in probes.items()
                                                 if name in outputs}
        for variant, outputs in variants.items():
            measured[variant] = outputs if isinstance(outputs, str) else outputs.get(name, "no such output")
        held = max((len(v) for v in measured.values() if not isinstance(v, str)), default=0)
        floor = noise_floor(rows[:held], measured) if held else None
        if floor is not None:
            floors[name] = floor
    return floors


def far_above(units: float | None, threshold: float = FAR_ABOVE) -> bool:
    """Whether a cell's worst difference is more than `threshold` noise floors: a change, not arithmetic."""
    return units is not None and units > threshold
