"""Comparison on plain arrays: metrics, verdicts, degenerate references, tie-aware top-1."""
from __future__ import annotations

import numpy as np
import pytest

from converter.zoo import Tolerance
from verify.judge.compare import ERROR, FAIL, PASS, compare, non_finite_text, reference_problem

TOL = Tolerance()  # atol 1e-4, rtol 1e-3, min_cosine 0.99999, top1 1.0


def logits(samples=6, classes=10, seed=0):
    return np.random.default_rng(seed).normal(0, 1.5, (samples, classes)).astype(np.float32)


def test_identical_passes_with_zero_metrics():
    ref = logits()
    result = compare(ref, ref.copy(), TOL)
    assert result.status == PASS
    assert result.max_abs_diff == 0 and result.max_rel_diff == 0
    assert result.cosine == pytest.approx(1.0) and result.top1_agreement == 1.0 and result.top5_overlap == 1.0
    assert result.samples == 6


def test_float_noise_passes_and_one_percent_fails():
    ref = logits()
    noisy = ref + np.random.default_rng(1).normal(0, 1e-6, ref.shape).astype(np.float32)
    assert compare(ref, noisy, TOL).status == PASS
    drifted = ref * 1.01
    result = compare(ref, drifted, TOL)
    assert result.status == FAIL
    assert "outside atol" in result.reason
    assert result.max_rel_diff == pytest.approx(0.01, rel=1e-3)


def test_rtol_scales_with_the_samples_magnitude():
    ref = np.array([[5.0, 0.0, -3.0]], dtype=np.float32)
    # 3e-3 on the near-zero logit: within rtol 1e-3 x max|ref| 5 (+ atol), though not within 1e-3 x |0|
    assert compare(ref, ref + np.array([[0, 3e-3, 0]], np.float32), Tolerance(min_cosine=0.999)).status == PASS
    assert compare(ref, ref + np.array([[0, 6e-3, 0]], np.float32), Tolerance(min_cosine=0.999)).status == FAIL


def test_cosine_threshold_is_enforced():
    ref = logits()
    loose = Tolerance(atol=0.3, rtol=0, min_cosine=0.9999, top1=0)
    candidate = ref + 0.05 * logits(seed=3)
    result = compare(ref, candidate, loose)
    assert result.status == FAIL and "cosine" in result.reason
    assert result.cosine < 0.9999


def test_nan_or_inf_in_candidate_fails():
    ref = logits()
    for bad in (np.nan, np.inf):
        candidate = ref.copy()
        candidate[2, 3] = bad
        result = compare(ref, candidate, TOL)
        assert result.status == FAIL and result.non_finite == 1
        assert ("NaN" if np.isnan(bad) else "Inf") in result.reason and "sample 2 element 3" in result.reason


def test_every_non_finite_value_is_counted_and_named():
    ref = logits()
    candidate = ref.copy()
    candidate[1, 4], candidate[3, 0], candidate[5, 9] = np.nan, np.inf, -np.inf
    result = compare(ref, candidate, TOL)
    assert result.status == FAIL and result.non_finite == 3 and result.failed_checks == ("non-finite",)
    assert "1 NaN and 2 Inf (first: sample 1 element 4)" in result.reason
    assert non_finite_text(ref) == (0, "no NaN or Inf")


def test_a_reference_with_nan_is_an_error_naming_the_count():
    ref = logits()
    ref[0, 7] = np.nan
    result = compare(ref, logits(), TOL)
    assert result.status == ERROR and "1 NaN (first: sample 0 element 7)" in result.reason


@pytest.mark.parametrize("scale", [1.0005, 1.003, 1.02])
def test_the_tolerance_to_pass_is_the_smallest_that_passes(scale):
    ref = logits()
    candidate = (ref * scale).astype(np.float32)
    result = compare(ref, candidate, TOL)
    assert result.atol_to_pass >= 0 and result.rtol_to_pass >= 0
    at_atol = TOL.model_copy(update={"atol": result.atol_to_pass, "min_cosine": 0, "top1": 0})
    at_rtol = TOL.model_copy(update={"rtol": result.rtol_to_pass, "min_cosine": 0, "top1": 0})
    assert compare(ref, candidate, at_atol).status == PASS and compare(ref, candidate, at_rtol).status == PASS
    if result.atol_to_pass > 0:  # a little less fails: it is the smallest
        assert compare(ref, candidate, at_atol.model_copy(update={"atol": result.atol_to_pass * 0.99})).status == FAIL
    if result.rtol_to_pass > 0:
        assert compare(ref, candidate, at_rtol.model_copy(update={"rtol": result.rtol_to_pass * 0.99})).status == FAIL
    if result.status == FAIL:
        assert f"passes at atol {result.atol_to_pass:.2g}" in result.reason


def test_inside_the_tolerance_nothing_more_is_needed():
    ref = logits()
    result = compare(ref, ref.copy(), TOL)
    assert result.atol_to_pass == 0 and result.rtol_to_pass == 0


def test_shape_mismatch_fails():
    ref = logits()
    assert compare(ref, ref[:, :5], TOL).status == FAIL
    assert compare(ref, ref[:3], TOL).status == FAIL


@pytest.mark.parametrize("name,reference,fragment", [
    ("all zero", np.zeros((4, 10), np.float32), "constant"),
    ("constant", np.full((4, 10), 3.0, np.float32), "constant"),
    ("nan", np.where(np.eye(4, 10) > 0, np.nan, 1.0).astype(np.float32), "NaN"),
    ("flat", (np.ones((4, 10)) + np.random.default_rng(0).normal(0, 1e-6, (4, 10))).astype(np.float32), "too flat"),
    ("input independent", np.tile(logits(1), (4, 1)), "does not depend on the input"),
    ("no samples", np.zeros((0, 10), np.float32), "shape"),
    ("not 2-d", np.zeros((4,), np.float32), "shape"),
])
def test_degenerate_reference_is_error_not_pass(name, reference, fragment):
    assert fragment in reference_problem(reference, TOL)
    result = compare(reference, reference.copy(), TOL)  # even an identical candidate must not pass
    assert result.status == ERROR and fragment in result.reason


def test_healthy_reference_has_no_problem():
    assert reference_problem(logits(), TOL) is None


def test_a_tolerance_wider_than_the_logit_spread_makes_the_reference_unusable():
    # with atol 5, logits spread over ~5 could be permuted at will: such a check cannot fail
    assert "too flat" in reference_problem(logits(), Tolerance(atol=5))


def test_top1_disagreement_outside_tolerance_fails():
    ref = np.array([[3.0, 1.0, 0.0], [0.0, 2.0, 1.0]], np.float32)
    candidate = ref.copy()
    candidate[0] = [1.0, 3.0, 0.0]  # a clear swap of classes 0 and 1
    result = compare(ref, candidate, TOL)
    assert result.status == FAIL and "top-1 agreement 0.500 < 1" in result.reason
    assert result.top1_agreement == 0.5 and result.top1_ties == 0


def test_top1_tie_within_tolerance_is_reported_not_failed():
    # sample 0: the reference's top two classes differ by 5e-5, inside atol 1e-4
    ref = np.array([[2.00005, 2.0, -1.0], [0.0, 3.0, 1.0]], np.float32)
    candidate = ref.copy()
    candidate[0] = [2.0, 2.00004, -1.0]
    result = compare(ref, candidate, Tolerance(atol=1e-4, rtol=0, min_cosine=0.9999, top1=1.0))
    assert result.status == PASS
    assert result.top1_agreement == 0.5 and result.top1_ties == 1
    assert "tie" in result.reason


def test_top1_threshold_allows_a_fraction():
    # sample 0's two best classes are 1.5e-4 apart: each moves by 8e-5 (inside atol 1e-4) and they swap;
    # the reference's margin exceeds atol, so this is a real disagreement, not a tie
    ref = logits(samples=10)
    ref[0, 0], ref[0, 1] = 5.0, 5.0 - 1.5e-4
    candidate = ref.copy()
    candidate[0, 0] -= 8e-5
    candidate[0, 1] += 8e-5
    tolerance = Tolerance(atol=1e-4, rtol=0, min_cosine=0.999, top1=0.9)
    passed = compare(ref, candidate, tolerance)
    assert passed.status == PASS and passed.top1_agreement == pytest.approx(0.9) and passed.top1_ties == 0
    failed = compare(ref, candidate, tolerance.model_copy(update={"top1": 0.95}))
    assert failed.status == FAIL and failed.failures == ("top-1 agreement 0.900 < 0.95",)
    assert failed.failed_checks == ("top1",) and not failed.elementwise_failed


def test_top5_overlap():
    ref = np.arange(10, dtype=np.float32)[None, :].repeat(2, axis=0) + np.array([[0], [1]], np.float32) * 0.1
    candidate = ref.copy()
    candidate[:, 9], candidate[:, 4] = ref[:, 4], ref[:, 9]  # top-1 pushed out of the top 5
    result = compare(ref, candidate, TOL)
    assert result.status == FAIL
    assert result.top5_overlap == pytest.approx(0.8)


TOLS = {"logits": TOL, "embedding": TOL}
KINDS = {"logits": "logits", "embedding": "regression"}  # an output without a kind of its own: elementwise


def test_an_embedding_output_is_compared_per_sample_without_top1():
    from verify.judge.compare import compare_outputs, worst

    rng = np.random.default_rng(3)
    reference = {"logits": logits(), "embedding": rng.normal(size=(6, 4, 2, 2)).astype(np.float32)}
    same = compare_outputs(reference, {k: v.copy() for k, v in reference.items()}, TOLS, KINDS)
    assert list(same) == ["logits", "embedding"] and worst(same) == (PASS, "logits: max |diff| 0; embedding: max |diff| 0")
    assert np.isnan(same["embedding"].top1_agreement) and same["logits"].top1_agreement == 1.0
    # the logits agree exactly; one embedding value drifts by 1%: the cell is the worst of its outputs
    drifted = {"logits": reference["logits"].copy(), "embedding": reference["embedding"].copy()}
    drifted["embedding"][2, 1, 0, 1] *= 1.01
    drifted["embedding"][2, 1, 0, 1] += 0.05
    compared = compare_outputs(reference, drifted, TOLS, KINDS)
    assert compared["logits"].status == PASS and compared["embedding"].status == FAIL
    status, detail = worst(compared)
    assert status == FAIL and detail.startswith("embedding: 1/96 values outside") and "sample 2 element 5" in detail


def test_a_constant_embedding_is_an_error_not_a_pass():
    from verify.judge.compare import compare_outputs, worst

    reference = {"logits": logits(), "embedding": np.ones((6, 8), np.float32)}
    compared = compare_outputs(reference, {k: v.copy() for k, v in reference.items()}, TOLS, KINDS)
    assert compared["embedding"].status == ERROR and "constant" in compared["embedding"].reason
    assert worst(compared)[0] == ERROR


def test_an_embedding_keeps_its_nearest_neighbours_and_a_scaled_one_fails_elementwise():
    from verify.judge.compare import NEIGHBOURS, ELEMENTWISE

    rng = np.random.default_rng(5)
    centres = rng.normal(size=(4, 16))
    reference = np.concatenate([centres + 0.05 * rng.normal(size=(4, 16)),
                                centres + 0.05 * rng.normal(size=(4, 16))]).astype(np.float32)
    same = compare(reference, reference.copy(), TOL, kind="embedding")
    assert same.status == PASS and same.neighbour_agreement == 1.0
    # scaled by 1.01: every cosine and neighbour is the same; only the elementwise check sees it
    scaled = compare(reference, reference * 1.01, TOL, kind="embedding")
    assert scaled.status == FAIL and scaled.failed_checks == (ELEMENTWISE,) and scaled.neighbour_agreement == 1.0
    # samples paired with other partners: the neighbours check names it
    shuffled = reference.copy()
    shuffled[4:] = reference[[5, 6, 7, 4]]
    moved = compare(reference, shuffled, TOL, kind="embedding")
    assert moved.status == FAIL and NEIGHBOURS in moved.failed_checks and moved.neighbour_agreement == 0.0
    assert "nearest neighbour kept for 0.000 of the samples" in moved.reason


def test_probabilities_outside_zero_to_one_make_the_reference_an_error():
    probabilities = np.exp(logits()) / np.exp(logits()).sum(axis=1, keepdims=True)
    assert compare(probabilities, probabilities.copy(), TOL, kind="probabilities").status == PASS
    wrong = compare(logits(), logits(), TOL, kind="probabilities")
    assert wrong.status == ERROR and "outside 0-1" in wrong.reason
