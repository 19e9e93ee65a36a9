"""Parity metrics and verdicts on plain arrays: no I/O, no models."""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

import numpy as np

from converter.zoo import Tolerance

from .kinds import LOGITS, OutputKind, output_kind
from .matching import ImageMatch

PASS, FAIL, ERROR, SKIP = "PASS", "FAIL", "ERROR", "SKIP"
SEVERITY = {PASS: 0, SKIP: 1, FAIL: 2, ERROR: 3}  # the worst status of several is the cell's
MIN_SPREAD_FACTOR = 10.0  # a reference whose logits differ by less than 10x the tolerance cannot fail a check
TOP_K = 5
ELEMENTWISE, COSINE, TOP1, NEIGHBOURS, NON_FINITE = "elementwise", "cosine", "top1", "neighbours", "non-finite"
SHAPE = "shape"  # the runtime could not run the inputs of one size of the shape sweep
SIZE_SEPARATOR = " @ "  # an output at another size of the sweep: 'logits @ sequence=77'


def output_and_size(key: str) -> tuple[str, str]:
    """A comparison's key as (output name, size label); at the sweep's first size the label is ''."""
    name, _, size = key.partition(SIZE_SEPARATOR)
    return name, size



@dataclass(frozen=True)
class Comparison:
    status: str  # PASS, FAIL or ERROR
    reason: str
    samples: int = 0
    max_abs_diff: float = float("nan")
    max_rel_diff: float = float("nan")  # per sample, divided by the reference's largest magnitude
    cosine: float = float("nan")  # the lowest per-sample cosine similarity
    top1_agreement: float = float("nan")  # fraction of samples with the same top-1 class
    top1_ties: int = 0  # disagreements where the reference's own margin is inside the tolerance
    top5_overlap: float = float("nan")  # mean fraction of shared top-5 classes
    failures: tuple[str, ...] = ()  # one line per failed check, for people
    failed_checks: tuple[str, ...] = ()  # which: ELEMENTWISE, COSINE, TOP1, NEIGHBOURS, NON_FINITE, SHAPE
    neighbour_agreement: float | None = None  # embeddings: fraction of samples whose nearest neighbour stayed
    images: tuple[ImageMatch, ...] = ()  # detections: per image, how the runtime's matched the reference's
    miou: float | None = None  # masks: the lowest per-image mean IoU with the reference's mask (top1: pixels)
    matched_kind: bool = False  # detections or masks: judged by matching at the cell's limits (see OutputKind)
    non_finite: int = 0  # NaN and Inf values in the candidate's output (any is a FAIL)
    # the smallest tolerance that passes the elementwise check: atol at the given rtol, rtol at the given atol
    # (Polygraphy's "minimum required tolerance"); the lowest cosine is `cosine`. None where not judged elementwise
    atol_to_pass: float | None = None
    rtol_to_pass: float | None = None
    # the worst element's difference in units of the reference's noise floor (verify.judge.noise; float32 cells
    # judged element by element, once the floor is measured)
    noise_units: float | None = None

    @property
    def elementwise_failed(self) -> bool:
        """Some logit is outside atol/rtol or not finite: the rule a layer-by-layer search can apply."""
        return NON_FINITE in self.failed_checks or ELEMENTWISE in self.failed_checks


CompareFunc = Callable[..., Comparison]  # (reference, candidate, tolerance, kind=LOGITS) -> Comparison


def reference_problem(reference: np.ndarray, tolerance: Tolerance, kind: OutputKind = LOGITS) -> str | None:
    """Why a reference output cannot support a parity check (a check that cannot fail must not pass). Outputs
    without classes are checked per sample, flattened."""
    classification = kind.classes
    if reference.dtype.kind in "biu":  # an integer or boolean output: compared as numbers
        reference = reference.astype(np.float64)
    if not classification and reference.ndim >= 2 and reference.shape[0] > 0 and reference[0].size > 0:
        reference = reference.reshape(len(reference), -1)
    if reference.ndim != 2 or reference.shape[0] == 0 or reference.shape[1] == 0:
        expected = "(samples, classes)" if classification else "(samples, ...)"
        return f"reference output has shape {reference.shape}, expected {expected} with both > 0"
    if not np.isfinite(reference).all():
        return f"reference output contains {non_finite_text(reference)[1]}"
    if np.all(reference == reference.flat[0]):
        return f"reference output is constant ({float(reference.flat[0]):g} everywhere)"
    if kind.bounds is not None and not ((reference >= kind.bounds[0] - 1e-6) & (reference <= kind.bounds[1] + 1e-6)).all():
        return (f"reference output declared {kind.name} has values outside {kind.bounds[0]:g}-{kind.bounds[1]:g} "
                f"({float(reference.min()):.3g} to {float(reference.max()):.3g}): is it another kind?")
    bound = MIN_SPREAD_FACTOR * _allowed(tolerance, np.abs(reference).max())
    if reference.shape[1] > 1:
        spread = np.median(reference.max(axis=1) - reference.min(axis=1))
        if spread <= bound:
            what = "logits are too flat to tell classes apart" if classification else "values are too flat to check"
            return f"reference {what}: median spread {spread:.3g} <= {bound:.3g} (10x atol + rtol*max)"
    if reference.shape[0] > 1 and np.abs(reference - reference[:1]).max() <= bound:
        return f"reference output does not depend on the input: every sample gives the same {kind.noun}"
    return None


def compare(reference: np.ndarray, candidate: np.ndarray, tolerance: Tolerance,
            kind: OutputKind | str = LOGITS) -> Comparison:
    """Candidate against reference: every |c - r| <= atol + rtol * (the sample's largest |r|), the lowest
    cosine >= min_cosine, and what the output's kind adds: for class scores (logits, probabilities) tie-aware
    top-1 agreement >= top1; for an embedding, each sample's nearest neighbour among the batch kept for a fraction
    >= top1 of the samples. Every output is compared per sample, flattened.

    rtol scales with the sample's magnitude, not each logit's own: a near-zero logit is not held to a
    tighter bound than float32 arithmetic through a deep network can give (measured: 2.5e-4 on one logit
    near 0 of efficientnet_b0 in ONNX Runtime, where the logits reach ~5), while a 1% weight change still
    moves logits by ~1e-2 of their magnitude, ten times the default bound."""
    kind = output_kind(kind) if isinstance(kind, str) else kind
    classification = kind.classes
    problem = reference_problem(reference, tolerance, kind)
    if problem is not None:
        return Comparison(ERROR, problem, samples=int(reference.shape[0]) if reference.ndim else 0)
    if candidate.shape != reference.shape:
        return Comparison(FAIL, f"output shape {candidate.shape}, reference {reference.shape}", samples=len(reference))
    samples = len(reference)
    if not np.isfinite(candidate).all():
        bad, text = non_finite_text(candidate)
        reason = f"output contains {text}"
        return Comparison(FAIL, reason, samples=samples, failures=(reason,), failed_checks=(NON_FINITE,),
                          non_finite=bad)

    ref = reference.reshape(samples, -1).astype(np.float64)
    cand = candidate.reshape(samples, -1).astype(np.float64)
    diff = np.abs(cand - ref)
    magnitude = np.maximum(np.abs(ref).max(axis=1), np.finfo(np.float64).tiny)
    cosine = float(per_sample_cosine(ref, cand).min())
    failures: list[str] = []
    failed: list[str] = []
    notes: list[str] = []
    allowed = tolerance.atol + tolerance.rtol * magnitude[:, None]
    outside = diff > allowed
    atol_to_pass, rtol_to_pass = tolerance_to_pass(diff, magnitude, tolerance)
    if outside.any():
        worst = np.unravel_index(np.argmax(diff - allowed), diff.shape)
        noun = kind.noun
        index = "class" if classification else "element"
        failures.append(
            f"{int(outside.sum())}/{diff.size} {noun} outside atol {tolerance.atol:g} + rtol {tolerance.rtol:g}"
            f" x max|ref| (worst: sample {worst[0]} {index} {worst[1]}, |diff| {diff[worst]:.3g}"
            f" > {allowed[worst[0], 0]:.3g}; passes at atol {atol_to_pass:.2g} or rtol {rtol_to_pass:.2g})")
        failed.append(ELEMENTWISE)
    if cosine < tolerance.min_cosine:
        failures.append(f"cosine {cosine:.6f} < {tolerance.min_cosine:g}")
        failed.append(COSINE)
    top1_agreement, ties, top5 = float("nan"), 0, float("nan")
    if classification:
        ref_top1, cand_top1 = ref.argmax(axis=1), cand.argmax(axis=1)
        disagree = np.flatnonzero(ref_top1 != cand_top1)
        # A disagreement is a tie when the reference itself scores the candidate's class within tolerance of
        # its top-1.
        ref_gap = ref[disagree, ref_top1[disagree]] - ref[disagree, cand_top1[disagree]]
        ties = int((ref_gap <= tolerance.atol + tolerance.rtol * magnitude[disagree]).sum())
        top1_agreement = float((ref_top1 == cand_top1).mean())
        top5 = _top_k_overlap(ref, cand)
        effective_top1 = (samples - len(disagree) + ties) / samples
        if effective_top1 < tolerance.top1:
            failures.append(f"top-1 agreement {effective_top1:.3f} < {tolerance.top1:g}")
            failed.append(TOP1)
        if ties:
            notes.append(f"{ties} top-1 tie(s) within tolerance")
    neighbours: float | None = None
    if kind.neighbours and samples >= 3:
        neighbours, neighbour_ties = _neighbour_agreement(ref, cand, tolerance)
        if neighbours < tolerance.top1:
            failures.append(f"nearest neighbour kept for {neighbours:.3f} of the samples < {tolerance.top1:g}")
            failed.append(NEIGHBOURS)
        if neighbour_ties:
            notes.append(f"{neighbour_ties} nearest-neighbour tie(s) within tolerance")
    max_abs = float(diff.max())
    reason = "; ".join(failures + notes) if failures else ("; ".join(notes) or f"max |diff| {max_abs:.3g}")
    return Comparison(FAIL if failures else PASS, reason, samples=samples, max_abs_diff=max_abs,
                      max_rel_diff=float((diff.max(axis=1) / magnitude).max()), cosine=cosine,
                      top1_agreement=top1_agreement, top1_ties=ties, top5_overlap=top5,
                      neighbour_agreement=neighbours, failures=tuple(failures), failed_checks=tuple(failed),
                      atol_to_pass=atol_to_pass, rtol_to_pass=rtol_to_pass)


def tolerance_to_pass(diff: np.ndarray, magnitude: np.ndarray, tolerance: Tolerance) -> tuple[float, float]:
    """The smallest atol that passes `diff` (samples, values) at the tolerance's rtol, and the smallest rtol at its
    atol, by the elementwise rule |diff| <= atol + rtol x the sample's largest |reference| (`magnitude`). Each is
    rounded up by one part in 1e6, so that the value itself passes."""
    atol = max(0.0, float((diff - tolerance.rtol * magnitude[:, None]).max()))
    rtol = max(0.0, float(((diff - tolerance.atol) / magnitude[:, None]).max()))
    return atol * (1 + 1e-6), rtol * (1 + 1e-6)


def non_finite_text(array: np.ndarray) -> tuple[int, str]:
    """How many values of `array` are NaN or Inf, and a phrase naming them and the first one's place:
    '2 NaN and 1 Inf (first: sample 0 element 7)'. Arrays are (samples, ...), flattened per sample."""
    values = np.asarray(array, dtype=np.float64)
    nan, inf = int(np.isnan(values).sum()), int(np.isinf(values).sum())
    counts = " and ".join(f"{n} {what}" for n, what in ((nan, "NaN"), (inf, "Inf")) if n) or "no NaN or Inf"
    if not nan + inf:
        return 0, counts
    flat = values.reshape(len(values), -1) if values.ndim >= 1 and len(values) else values.reshape(1, -1)
    sample, element = np.argwhere(~np.isfinite(flat))[0]
    return nan + inf, f"{counts} (first: sample {sample} element {element})"


def _neighbour_agreement(ref: np.ndarray, cand: np.ndarray, tolerance: Tolerance) -> tuple[float, int]:
    """The fraction of samples whose nearest other sample (by cosine) is the same in both, a change counted as kept
    where the reference's own similarities to the two neighbours are within tolerance (a tie); and the ties."""
    def similarities(x: np.ndarray) -> np.ndarray:
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        unit = x / np.where(norms > 0, norms, 1.0)
        matrix = unit @ unit.T
        np.fill_diagonal(matrix, -np.inf)
        return matrix
    ref_sim, cand_sim = similarities(ref), similarities(cand)
    ref_nn, cand_nn = ref_sim.argmax(axis=1), cand_sim.argmax(axis=1)
    rows = np.flatnonzero(ref_nn != cand_nn)
    gap = ref_sim[rows, ref_nn[rows]] - ref_sim[rows, cand_nn[rows]]
    ties = int((gap <= tolerance.atol + tolerance.rtol).sum())
    return (len(ref) - len(rows) + ties) / len(ref), ties


def compare_outputs(reference: Mapping[str, np.ndarray], candidate: Mapping[str, np.ndarray],
                    tolerances: Mapping[str, Tolerance], kinds: Mapping[str, str],
                    compare_func: CompareFunc = compare, vacuous: bool = True) -> dict[str, Comparison]:
    """Each named output against the reference's, by its kind and at its own tolerance, the first logits output
    first (the cell's headline comparison). A detector's boxes, scores and labels at one size are compared
    together (verify.judge.detections), mask logits by their pixels' classes (verify.judge.masks). `vacuous`
    off: a few samples (a probe, the images at another size of a sweep) need not hold enough detections, or more than
    one class, to support a check on their own."""
    from .detections import compare_detections
    from .masks import compare_masks

    order = sorted(reference, key=lambda name: kinds.get(name) != "logits")
    compared: dict[str, Comparison] = {}
    detectors: dict[str, dict[str, str]] = {}  # size label -> part -> output key
    for name in order:
        kind = output_kind(kinds.get(name, "regression"))
        if kind.detection:
            detectors.setdefault(output_and_size(name)[1], {})[kind.name] = name
        elif kind.mask:
            compared[name] = compare_masks(reference[name], candidate[name], tolerances[name],
                                           vacuous and not output_and_size(name)[1])
        else:
            compared[name] = compare_func(reference[name], candidate[name], tolerances[name], kind=kind)
    for parts in detectors.values():
        if sorted(parts) != ["boxes", "labels", "scores"]:
            reason = f"a detector's outputs are compared together: boxes, scores and labels, found {sorted(parts)}"
            compared.update({name: Comparison(ERROR, reason, matched_kind=True) for name in parts.values()})
            continue
        # the boxes' tolerance holds for all three parts; only the first size needs enough detections on its own
        first_size = not output_and_size(parts["boxes"])[1]
        compared.update(compare_detections(reference, candidate, parts, tolerances[parts["boxes"]],
                                           vacuous and first_size))
    return {name: compared[name] for name in order}


def worst(comparisons: Mapping[str, Comparison]) -> tuple[str, str]:
    """The cell's status (the worst of its outputs') and its detail, naming the outputs when there are several."""
    status = max((c.status for c in comparisons.values()), key=SEVERITY.__getitem__, default=ERROR)
    if len(comparisons) == 1:
        return status, next(iter(comparisons.values())).reason
    shown = [f"{name}: {c.reason}" for name, c in comparisons.items() if c.status == status]
    return status, "; ".join(shown)


def with_reason(comparison: Comparison, status: str, reason: str) -> Comparison:
    """A copy with another verdict (a runtime that disagrees with itself): the original is left as it was."""
    return replace(comparison, status=status, reason=reason)


def _allowed(tolerance: Tolerance, magnitude: float) -> float:
    return tolerance.atol + tolerance.rtol * float(magnitude)


def per_sample_cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The cosine similarity of each row of `a` with the same row of `b` (samples, features)."""
    norm_a, norm_b = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    norms = norm_a * norm_b
    cosine = (a * b).sum(axis=1) / np.where(norms > 0, norms, 1.0)
    # Both all-zero: identical; only one all-zero: nothing in common.
    return np.where(norms > 0, cosine, np.where((norm_a == 0) & (norm_b == 0), 1.0, 0.0))


def _top_k_overlap(ref: np.ndarray, cand: np.ndarray) -> float:
    k = min(TOP_K, ref.shape[1])
    ref_top = np.argsort(-ref, axis=1)[:, :k]
    cand_top = np.argsort(-cand, axis=1)[:, :k]
    return float(np.mean([len(set(r) & set(c)) / k for r, c in zip(ref_top, cand_top)]))
