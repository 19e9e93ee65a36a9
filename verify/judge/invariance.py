"""Batch invariance: a runtime must give each sample the same answer alone, in an odd batch and in the full batch.
Pure functions on the outputs a cell's worker returns."""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from converter.zoo import PrecisionBudget, Tolerance

from .compare import PASS, compare_outputs, per_sample_cosine
from .kinds import output_kind

PROBE_BATCHES = (1, 3)  # the first sample alone, and the first three: an odd batch that no kernel is tuned for


def probe_feeds(feeds: Mapping[str, np.ndarray], size: int) -> dict[str, np.ndarray]:
    return {name: np.ascontiguousarray(array[:size]) for name, array in feeds.items()}


def batch_invariance(full: Mapping[str, np.ndarray], probes: Mapping[int, Mapping[str, np.ndarray]],
                     tolerance: Tolerance | Mapping[str, Tolerance],
                     budget: PrecisionBudget | None = None,
                     kinds: Mapping[str, str] | None = None) -> tuple[bool | None, str]:
    """Each probe's outputs against the same samples' rows of the full batch: fp32 within the elementwise
    tolerance (atol + rtol x the sample's largest magnitude), a reduced precision within its budget's cosine;
    detections and masks (`kinds`) by their own matching, at the cell's limits.
    Returns (None when nothing was probed, whether every probe agreed) and a line saying so."""
    if not probes:
        return None, "not checked"
    samples = len(next(iter(full.values())))
    sizes = ", ".join(str(size) for size in sorted(probes))
    kinds = kinds or {}
    matched = [name for name in full if output_kind(kinds.get(name, "regression")).matched]
    for size, outputs in sorted(probes.items()):
        if matched:  # detections and masks by their own matching (a detection's row may move), at the cell's limits
            held = {name: tolerance[name] if isinstance(tolerance, Mapping) else tolerance for name in matched}
            if budget is not None:
                held = {name: budget.limit(value) for name, value in held.items()}
            if any(outputs.get(name) is None or outputs[name].shape[:1] != (size,) for name in matched):
                return False, f"batch {size} gave outputs of another shape"
            compared = compare_outputs({name: full[name][:size] for name in matched},
                                       {name: outputs[name] for name in matched}, held, kinds, vacuous=False)
            differing = {name: c for name, c in compared.items() if c.status != PASS}
            if differing:
                name, comparison = next(iter(differing.items()))
                return False, f"batch {size} and batch {samples} differ on the same samples: '{name}' {comparison.reason}"
        for name, got in outputs.items():
            if name in matched:
                continue
            held = tolerance[name] if isinstance(tolerance, Mapping) else tolerance
            expected = full[name][:size].reshape(size, -1).astype(np.float64)
            candidate = got.reshape(size, -1).astype(np.float64) if got.shape[:1] == (size,) else None
            if candidate is None or candidate.shape != expected.shape:
                return False, f"batch {size} gave output '{name}' of shape {got.shape}"
            if budget is None:
                allowed = held.atol + held.rtol * np.abs(expected).max(axis=1, keepdims=True)
                worst = float(np.abs(candidate - expected).max())
                if not (np.abs(candidate - expected) <= allowed).all():
                    return False, (f"batch {size} and batch {samples} differ on the same samples: '{name}' max |diff| "
                                   f"{worst:.3g} > atol {held.atol:g} + rtol {held.rtol:g} x max|out|")
            else:
                cosine = float(per_sample_cosine(candidate, expected).min())
                if not cosine >= budget.min_cosine:  # NaN fails too
                    return False, (f"batch {size} and batch {samples} differ on the same samples: '{name}' cosine "
                                   f"{cosine:.4f} < {budget.min_cosine:g}")
    return True, f"batches {sizes} and {samples} agree"
