"""BalancedBatchSampler: B normal then B abnormal rows, every row once per epoch, deterministic per (seed, epoch)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from vad.data import BalancedBatchSampler

LABELS = np.array([1] * 7 + [0] * 23)  # 7 abnormal, 23 normal


def test_batches_are_balanced_and_cover_every_row() -> None:
    sampler = BalancedBatchSampler(LABELS, batch_per_class=4, seed=0)
    assert len(sampler) == 6  # ceil(23 / 4)
    batches = list(sampler.epoch(0))
    assert len(batches) == 6
    for batch in batches:
        assert batch.shape == (8,) and batch.dtype == np.int64
        assert (LABELS[batch[:4]] == 0).all() and (LABELS[batch[4:]] == 1).all()
    seen = Counter(np.concatenate(batches).tolist())
    assert set(seen) == set(range(30))
    normal_counts = [seen[i] for i in range(7, 30)]
    assert sorted(normal_counts) == [1] * 22 + [2]  # 24 slots for 23 normal rows
    abnormal_counts = [seen[i] for i in range(7)]  # 24 slots cycled over 7 rows: 3 or 4 each
    assert sum(abnormal_counts) == 24 and min(abnormal_counts) >= 3 and max(abnormal_counts) <= 4


def test_deterministic_for_seed_and_epoch() -> None:
    first = [b.tolist() for b in BalancedBatchSampler(LABELS, 4, seed=7).epoch(3)]
    again = [b.tolist() for b in BalancedBatchSampler(LABELS, 4, seed=7).epoch(3)]
    assert first == again
    sampler = BalancedBatchSampler(LABELS, 4, seed=7)
    list(sampler.epoch(0))  # what ran before does not matter
    assert [b.tolist() for b in sampler.epoch(3)] == first
    assert [b.tolist() for b in sampler.epoch(4)] != first
    assert [b.tolist() for b in BalancedBatchSampler(LABELS, 4, seed=8).epoch(3)] != first


def test_rows_are_yielded_instead_of_positions() -> None:
    rows = np.arange(100, 130)
    sampler = BalancedBatchSampler(LABELS, 4, seed=1, rows=rows)
    plain = BalancedBatchSampler(LABELS, 4, seed=1)
    for with_rows, positions in zip(sampler.epoch(2), plain.epoch(2)):
        assert with_rows.tolist() == (positions + 100).tolist()


def test_small_classes_and_bad_arguments() -> None:
    batches = list(BalancedBatchSampler(np.array([0, 1, 0]), batch_per_class=4, seed=0).epoch(0))
    assert len(batches) == 1 and batches[0][4:].tolist() == [1, 1, 1, 1]
    with pytest.raises(ValueError, match="at least one normal and one abnormal row, got 3 normal and 0 abnormal"):
        BalancedBatchSampler(np.zeros(3, int), 2)
    with pytest.raises(ValueError, match="0 \\(normal\\) / 1 \\(abnormal\\)"):
        BalancedBatchSampler(np.array([0, 2]), 2)
    with pytest.raises(ValueError, match="batch_per_class"):
        BalancedBatchSampler(LABELS, 0)
    with pytest.raises(ValueError, match="rows: expected 30 values"):
        BalancedBatchSampler(LABELS, 2, rows=np.arange(3))
