"""Batch invariance on plain arrays."""
from __future__ import annotations

import numpy as np

from converter.zoo import PrecisionBudget, Tolerance
from verify.judge.invariance import batch_invariance, probe_feeds

FULL = {"logits": np.random.default_rng(0).normal(0, 2, (8, 10)).astype(np.float32)}


def test_the_same_rows_agree_and_name_the_batches():
    probes = {size: {"logits": FULL["logits"][:size] + 1e-7} for size in (1, 3)}
    assert batch_invariance(FULL, probes, Tolerance()) == (True, "batches 1, 3 and 8 agree")


def test_a_batch_that_mixes_samples_fails_with_the_batch_sizes():
    mixed = FULL["logits"][:3].copy()
    mixed[1] = FULL["logits"][2]  # a kernel that reads the wrong sample in an odd batch
    agreed, line = batch_invariance(FULL, {1: {"logits": FULL["logits"][:1]}, 3: {"logits": mixed}}, Tolerance())
    assert agreed is False and line.startswith("batch 3 and batch 8 differ on the same samples")


def test_reduced_precision_is_held_to_its_cosine_and_nothing_probed_is_none():
    budget = PrecisionBudget(min_cosine=0.99, top1=0.9, max_accuracy_drop=1)
    noisy = {1: {"logits": FULL["logits"][:1] * 1.01}}  # 1% off: outside fp32 tolerance, inside the cosine
    assert batch_invariance(FULL, noisy, Tolerance())[0] is False
    assert batch_invariance(FULL, noisy, Tolerance(), budget)[0] is True
    assert batch_invariance(FULL, {}, Tolerance()) == (None, "not checked")
    assert batch_invariance(FULL, {3: {"logits": FULL["logits"][:2]}}, Tolerance())[0] is False


def test_probe_feeds_are_the_first_samples_contiguous():
    feeds = {"input": np.arange(24, dtype=np.float32).reshape(4, 6)[:, ::2]}
    probe = probe_feeds(feeds, 3)["input"]
    assert probe.shape == (3, 3) and probe.flags["C_CONTIGUOUS"]
