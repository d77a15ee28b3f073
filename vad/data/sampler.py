"""Balanced random mini-batches: B normal then B abnormal rows per batch, every row seen in every epoch.

The larger class is covered by one fresh permutation per epoch (topped up from another to fill the last batch);
the smaller class is cycled through fresh permutations. ``numpy.random.Generator`` seeded by ``(seed, epoch)``,
so an epoch's batches are the same whatever ran before (resuming is exact).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np


class BalancedBatchSampler:
    """Batches of ``2 * batch_per_class`` positions into ``labels`` (or the matching ``rows``)."""

    def __init__(self, labels: np.ndarray, batch_per_class: int, seed: int = 0, rows: np.ndarray | None = None) -> None:
        """``labels`` ``(V,)`` 0/1 of the rows sampled from; ``rows`` ``(V,)`` optional values to yield instead of
        positions (e.g. cache rows of the training split)."""
        labels = np.asarray(labels).reshape(-1)
        if not np.isin(labels, (0, 1)).all():
            raise ValueError("labels: expected 0 (normal) / 1 (abnormal) values")
        if not isinstance(batch_per_class, int) or batch_per_class < 1:
            raise ValueError(f"batch_per_class: expected a positive integer, got {batch_per_class!r}")
        self.normal = np.flatnonzero(labels == 0)
        self.abnormal = np.flatnonzero(labels == 1)
        if not len(self.normal) or not len(self.abnormal):
            raise ValueError(f"labels: need at least one normal and one abnormal row, got {len(self.normal)} normal "
                             f"and {len(self.abnormal)} abnormal")
        if rows is not None:
            rows = np.asarray(rows).reshape(-1)
            if len(rows) != len(labels):
                raise ValueError(f"rows: expected {len(labels)} values (one per label), got {len(rows)}")
        self.rows = rows
        self.batch_per_class = batch_per_class
        self.seed = int(seed)

    def __len__(self) -> int:
        """Batches per epoch: ``ceil(max(n_normal, n_abnormal) / batch_per_class)``."""
        return math.ceil(max(len(self.normal), len(self.abnormal)) / self.batch_per_class)

    def epoch(self, epoch: int) -> Iterator[np.ndarray]:
        """The batches of one epoch, each ``(2B,)`` int64: B normal then B abnormal, in random order."""
        rng = np.random.default_rng([self.seed, int(epoch)])
        needed = len(self) * self.batch_per_class
        normal = _cycled(self.normal, needed, rng).reshape(len(self), self.batch_per_class)
        abnormal = _cycled(self.abnormal, needed, rng).reshape(len(self), self.batch_per_class)
        for batch in np.concatenate([normal, abnormal], axis=1):
            yield batch if self.rows is None else self.rows[batch]


def _cycled(members: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` members: fresh permutations concatenated until long enough (each member at least once when
    ``count >= len(members)``)."""
    rounds = math.ceil(count / len(members))
    return np.concatenate([members[rng.permutation(len(members))] for _ in range(rounds)])[:count].astype(np.int64)
