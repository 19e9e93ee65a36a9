"""One image's detections matched to the reference's: pure numpy, no models. Two runtimes may return the same
detections in another order (a sort that is not stable, ties between equal scores), so detections are paired by
class and overlap, never by position."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PAIR_IOU = 0.5  # two boxes this much overlapped are the same object, however far apart their coordinates are


@dataclass(frozen=True)
class ImageMatch:
    """How one image's detections compare with the reference's (those scoring at least threshold - band)."""

    matched: int  # pairs of the same class
    missed: int  # reference detections above the band with no counterpart
    extra: int  # the runtime's detections above the band with no counterpart
    relabelled: int  # reference detections whose only counterpart has another class
    in_band: int  # unmatched detections inside the band around the threshold: allowed
    worst_iou: float  # the lowest IoU of a matched pair (1.0 with none)
    worst_score_diff: float  # the largest score difference of a matched pair (0.0 with none)
    worst_coordinate_diff: float  # the largest |coordinate difference| of a matched pair, in pixels


@dataclass(frozen=True)
class Detections:
    """One image's detections: boxes (n, 4) as x1, y1, x2, y2; scores (n,); labels (n,)."""

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray

    def above(self, score: float) -> Detections:
        keep = np.isfinite(self.scores) & (self.scores >= score)
        return Detections(self.boxes[keep], self.scores[keep], self.labels[keep])

    def __len__(self) -> int:
        return len(self.scores)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box of `a` (n, 4) with every box of `b` (m, 4), x1 y1 x2 y2: (n, m)."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    width = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    height = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    overlap = width * height
    union = area_a[:, None] + area_b[None, :] - overlap
    # two boxes without area (a point, a line) overlap fully when they are the same box, else not at all
    same = (a[:, None, :] == b[None, :, :]).all(axis=2)
    return np.where(union > 0, overlap / np.where(union > 0, union, 1.0), same.astype(np.float64))


def greedy_pairs(iou: np.ndarray, allowed: np.ndarray, closeness: np.ndarray) -> list[tuple[int, int]]:
    """Pairs (row, column), each used once, taken by IoU from the highest, among the allowed ones with IoU >=
    PAIR_IOU; between equal IoUs the closer scores first (two equal boxes of equal score pair either way)."""
    rows, cols = np.nonzero(allowed & (iou >= PAIR_IOU))
    order = np.lexsort((closeness[rows, cols], -iou[rows, cols]))
    used_rows, used_cols, pairs = set(), set(), []
    for index in order:
        row, col = int(rows[index]), int(cols[index])
        if row not in used_rows and col not in used_cols:
            used_rows.add(row)
            used_cols.add(col)
            pairs.append((row, col))
    return pairs


@dataclass(frozen=True)
class Pairing:
    """Which of one image's detections (those above threshold - band, as `Detections.above` keeps them in order)
    pair with which, and what is left."""

    reference: Detections
    candidate: Detections
    pairs: list[tuple[int, int]]  # same class
    relabelled: list[tuple[int, int]]  # another class, one side above the band
    reference_free: np.ndarray  # bool per reference detection: unpaired
    candidate_free: np.ndarray
    iou: np.ndarray  # (reference, candidate)
    high: float  # threshold + band: an unpaired detection above it counts


def pair_detections(reference: Detections, candidate: Detections, threshold: float, band: float) -> Pairing:
    """The candidate's detections paired with the reference's: first within a class, then across classes (a
    changed label, unless both sides are inside the band)."""
    low, high = threshold - band, threshold + band
    ref, cand = reference.above(low), candidate.above(low)
    iou = box_iou(ref.boxes, cand.boxes)
    closeness = np.abs(ref.scores[:, None].astype(np.float64) - cand.scores[None, :])
    same = ref.labels[:, None] == cand.labels[None, :]
    pairs = greedy_pairs(iou, same, closeness)
    ref_free = np.ones(len(ref), bool)
    cand_free = np.ones(len(cand), bool)
    for row, col in pairs:
        ref_free[row] = cand_free[col] = False
    relabelled = []
    for row, col in greedy_pairs(iou, ~same & ref_free[:, None] & cand_free[None, :], closeness):
        if ref.scores[row] >= high or cand.scores[col] >= high:
            relabelled.append((row, col))
            ref_free[row] = cand_free[col] = False
    return Pairing(ref, cand, pairs, relabelled, ref_free, cand_free, iou, high)


def match_image(reference: Detections, candidate: Detections, threshold: float, band: float) -> ImageMatch:
    """How the candidate's detections pair with the reference's (pair_detections). A detection left unpaired
    counts against the candidate unless it scores inside the band."""
    paired = pair_detections(reference, candidate, threshold, band)
    ref, cand, pairs = paired.reference, paired.candidate, paired.pairs
    missed = int((paired.reference_free & (ref.scores >= paired.high)).sum())
    extra = int((paired.candidate_free & (cand.scores >= paired.high)).sum())
    in_band = int(paired.reference_free.sum() + paired.candidate_free.sum()) - missed - extra
    if pairs:
        rows, cols = (np.asarray(side) for side in zip(*pairs))
        worst_iou = float(paired.iou[rows, cols].min())
        worst_score = float(np.abs(ref.scores[rows].astype(np.float64) - cand.scores[cols]).max())
        worst_coordinate = float(np.abs(ref.boxes[rows].astype(np.float64) - cand.boxes[cols]).max())
    else:
        worst_iou, worst_score, worst_coordinate = 1.0, 0.0, 0.0
    return ImageMatch(len(pairs), missed, extra, len(paired.relabelled), in_band, worst_iou, worst_score,
                      worst_coordinate)


def image_detections(boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray) -> list[Detections]:
    """A batch's outputs (samples, detections, ...) as one Detections per sample."""
    return [Detections(boxes[i].reshape(-1, 4), scores[i].reshape(-1), labels[i].reshape(-1))
            for i in range(len(scores))]
