"""Detections and masks compared between runtimes: the matching and its verdicts on plain arrays, no model."""
from __future__ import annotations

import numpy as np
import pytest

from converter.zoo import DEFAULT_BUDGETS, Tolerance
from verify.judge.compare import ERROR, FAIL, PASS, compare_outputs
from verify.judge.invariance import batch_invariance
from verify.judge.masks import compare_masks, mean_iou
from verify.judge.matching import Detections, box_iou, match_image

KINDS = {"boxes": "boxes", "scores": "scores", "labels": "labels"}
TOLERANCES = {name: Tolerance() for name in KINDS}
SLOTS = 10


def detections(seed: int = 0, images: int = 4) -> dict[str, np.ndarray]:
    """Padded detector outputs: per image 3-5 objects of 20-40 px scoring 0.45-0.95, then low-scoring padding."""
    rng = np.random.default_rng(seed)
    boxes = np.zeros((images, SLOTS, 4), np.float32)
    scores = np.full((images, SLOTS), 0.01, np.float32)
    labels = np.zeros((images, SLOTS), np.int64)
    for image in range(images):
        count = int(rng.integers(3, 6))
        corner = rng.uniform(0, 80, size=(count, 2))
        size = rng.uniform(20, 40, size=(count, 2))
        boxes[image, :count] = np.concatenate([corner, corner + size], axis=1)
        scores[image, :count] = np.sort(rng.uniform(0.45, 0.95, size=count))[::-1]
        labels[image, :count] = rng.integers(0, 3, size=count)
    return {"boxes": boxes, "scores": scores, "labels": labels}


def verdicts(reference, candidate, tolerance: Tolerance = Tolerance()) -> dict[str, str]:
    compared = compare_outputs(reference, candidate, {name: tolerance for name in KINDS}, KINDS)
    return {name: c.status for name, c in compared.items()}


def copy(outputs):
    return {name: array.copy() for name, array in outputs.items()}


def test_box_iou_of_known_boxes():
    a = np.array([[0, 0, 10, 10]], np.float32)
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]], np.float32)
    assert np.allclose(box_iou(a, b), [[1.0, 50 / 150, 0.0]])
    line = np.array([[5, 5, 5, 9]], np.float32)  # no area: the same box only
    assert box_iou(line, np.array([[5, 5, 5, 9], [5, 5, 5, 8]], np.float32)).tolist() == [[1.0, 0.0]]


def test_the_same_detections_in_another_order_pass():
    reference = detections()
    shuffled = copy(reference)
    order = np.random.default_rng(1).permutation(SLOTS)
    for name in shuffled:
        shuffled[name] = shuffled[name][:, order]
    assert verdicts(reference, shuffled) == {"boxes": PASS, "scores": PASS, "labels": PASS}


def test_two_equal_boxes_of_equal_score_pair_either_way():
    box = np.array([[10, 10, 40, 40], [10, 10, 40, 40], [50, 50, 70, 70]], np.float32)
    reference = Detections(box, np.array([0.8, 0.8, 0.6], np.float32), np.array([1, 1, 2]))
    swapped = Detections(box[[1, 0, 2]], reference.scores[[1, 0, 2]], reference.labels[[1, 0, 2]])
    match = match_image(reference, swapped, threshold=0.3, band=0.05)
    assert (match.matched, match.missed, match.extra, match.worst_iou) == (3, 0, 0, 1.0)


def test_a_box_shifted_by_two_pixels_blocks_and_is_named():
    reference = detections()
    shifted = copy(reference)
    shifted["boxes"][2, 1] += np.array([2, 0, 2, 0], np.float32)
    compared = compare_outputs(reference, shifted, TOLERANCES, KINDS)
    assert compared["boxes"].status == FAIL and compared["scores"].status == PASS
    assert "worst IoU" in compared["boxes"].reason and "image 2" in compared["boxes"].reason
    assert compared["boxes"].images[2].worst_iou < 0.99 and compared["boxes"].max_abs_diff == pytest.approx(2)


def test_a_dropped_detection_blocks_and_an_extra_one_too():
    reference = detections()
    dropped = copy(reference)
    dropped["scores"][1, 0] = 0.0
    compared = compare_outputs(reference, dropped, TOLERANCES, KINDS)
    assert compared["boxes"].status == FAIL and "1 detection(s) missed" in compared["boxes"].reason
    assert compared["boxes"].images[1].missed == 1
    extra = copy(reference)
    extra["boxes"][0, -1] = [100, 100, 120, 130]
    extra["scores"][0, -1] = 0.7
    assert verdicts(reference, extra)["boxes"] == FAIL


def test_a_swapped_label_blocks_on_the_labels():
    reference = detections()
    swapped = copy(reference)
    swapped["labels"][3, 0] = (swapped["labels"][3, 0] + 1) % 3
    compared = compare_outputs(reference, swapped, TOLERANCES, KINDS)
    assert compared["labels"].status == FAIL and "changed class" in compared["labels"].reason
    assert compared["boxes"].status == PASS  # the box is where it was; its class is what changed


def test_a_raised_score_threshold_blocks():
    reference = detections()
    filtered = copy(reference)
    filtered["scores"][filtered["scores"] < 0.6] = 0.0  # a runtime that filters at 0.6 instead of 0.3
    assert (reference["scores"] >= 0.35).sum() > (reference["scores"] >= 0.6).sum()
    assert verdicts(reference, filtered)["boxes"] == FAIL


def test_a_detection_inside_the_score_band_may_go():
    reference = detections()
    reference["scores"][0, 4:] = 0.01
    reference["scores"][0, 3] = 0.31  # inside 0.3 +- 0.05
    gone = copy(reference)
    gone["scores"][0, 3] = 0.27
    compared = compare_outputs(reference, gone, TOLERANCES, KINDS)
    assert compared["scores"].status == FAIL  # 0.04 > score_atol: the pair still matched, its score moved
    assert compared["boxes"].status == PASS
    vanished = copy(reference)
    vanished["scores"][0, 3] = 0.0
    compared = compare_outputs(reference, vanished, TOLERANCES, KINDS)
    assert compared["boxes"].status == PASS and compared["boxes"].images[0].in_band == 1


def test_a_score_moved_beyond_score_atol_blocks_within_fp32_and_passes_the_fp16_budget():
    reference = detections()
    moved = copy(reference)
    moved["scores"][:, :3] += 0.004
    assert verdicts(reference, moved)["scores"] == FAIL
    assert verdicts(reference, moved, DEFAULT_BUDGETS["fp16"].limit(Tolerance()))["scores"] == PASS


def test_a_reference_with_too_few_detections_is_refused():
    reference = detections()
    reference["scores"][:] = 0.05
    reference["scores"][0, 0] = 0.9
    compared = compare_outputs(reference, copy(reference), TOLERANCES, KINDS)
    assert {c.status for c in compared.values()} == {ERROR}
    assert "pass vacuously" in compared["boxes"].reason


def test_detections_are_batch_invariant_in_another_order():
    full = detections()
    probe = {name: array[:1, ::-1].copy() for name, array in full.items()}  # the same detections, reversed
    assert batch_invariance(full, {1: probe}, TOLERANCES, kinds=KINDS)[0] is True
    probe["labels"][0, -1] += 1
    agreed, reason = batch_invariance(full, {1: probe}, TOLERANCES, kinds=KINDS)
    assert agreed is False and "changed class" in reason


def masks(seed: int = 0, images: int = 3, classes: int = 3, size: int = 32) -> np.ndarray:
    """Clear mask logits: a background and two squares, each pixel's class ahead by 2-4."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 0.3, size=(images, classes, size, size)).astype(np.float32)
    for image in range(images):
        truth = np.zeros((size, size), int)
        for cls in range(1, classes):
            top, left = rng.integers(0, size - 12, size=2)
            truth[top:top + 10, left:left + 10] = cls
        for cls in range(classes):
            logits[image, cls][truth == cls] += rng.uniform(2, 4)
    return logits


def test_the_same_mask_logits_pass_with_their_metrics():
    reference = masks()
    compared = compare_masks(reference, reference + 1e-6, Tolerance())
    assert compared.status == PASS and compared.top1_agreement == 1.0 and compared.miou == 1.0


def test_five_percent_of_pixels_flipped_at_the_borders_block():
    reference = masks()
    classes = reference.argmax(1)
    border = np.zeros_like(classes, bool)
    border[:, 1:] |= classes[:, 1:] != classes[:, :-1]
    border[:, :, 1:] |= classes[:, :, 1:] != classes[:, :, :-1]
    flipped = reference.copy()
    rows = np.argwhere(border)[: int(0.05 * classes.size)]
    for image, y, x in rows:  # the pixel goes to the next class
        flipped[image, :, y, x] = np.roll(flipped[image, :, y, x], 1)
    compared = compare_masks(reference, flipped, Tolerance())
    assert compared.status == FAIL and "pixel agreement" in compared.reason and compared.top1_agreement < 0.999


def test_swapped_class_channels_block():
    reference = masks()
    compared = compare_masks(reference, reference[:, [0, 2, 1]], Tolerance())
    assert compared.status == FAIL and "mIoU" in compared.reason


def test_a_mask_of_one_class_everywhere_is_refused():
    reference = masks()
    reference[:, 0] += 100
    assert compare_masks(reference, reference, Tolerance()).status == ERROR


def test_mean_iou_ignores_unlabelled_pixels():
    truth = np.array([[0, 0, 1, 255]])
    assert mean_iou(np.array([[0, 0, 1, 1]]), truth, classes=2, ignore=255) == 1.0
    assert mean_iou(np.array([[0, 1, 1, 1]]), truth, classes=2, ignore=255) == pytest.approx((1 / 2 + 1 / 2) / 2)


def test_a_reduced_precision_cell_with_nan_detections_fails_even_when_its_map_holds():
    from verify.judge.accuracy import judge_precision

    reference = detections()
    broken = copy(reference)
    broken["boxes"][0, 0, 0] = np.nan
    compared = compare_outputs(reference, broken, TOLERANCES, KINDS)
    status, reason = judge_precision(compared, DEFAULT_BUDGETS["fp16"], "fp16", drop=0.0)
    assert status == FAIL and "NaN" in reason


def test_padding_may_score_minus_infinity_with_any_box():
    reference = detections()
    reference["scores"][:, -2:] = -np.inf
    reference["boxes"][:, -2:] = np.nan
    assert set(verdicts(reference, copy(reference)).values()) == {PASS}


def test_one_pixel_at_a_near_tie_changing_class_leaves_the_mask_passing():
    reference = masks()
    reference[0, :, 5, 5] = [1.0, 1.0 + 1e-3, -5.0]  # class 1 by a thousandth: a near tie
    moved = reference.copy()
    moved[0, :, 5, 5] = [1.0 + 2e-3, 1.0, -5.0]
    compared = compare_masks(reference, moved, Tolerance())
    assert compared.status == PASS and compared.miou == 1.0 and compared.top1_agreement < 1.0


def test_a_probe_of_background_only_is_batch_invariant():
    full = masks()
    full[0, 0] += 100  # the first image: background everywhere
    agreed, reason = batch_invariance({"mask": full}, {1: {"mask": full[:1].copy()}}, {"mask": Tolerance()},
                                      kinds={"mask": "mask_logits"})
    assert agreed is True, reason
