"""Uncertainty of a report's numbers: bootstrap intervals over test videos, and the optimism gap's null size.

- A single checkpoint's frame metric gets the percentile interval of a bootstrap over test *videos*
  (:func:`vad.metrics.intervals.bootstrap_replicates`, seeded). Its per-video scores are the run's ``scores.npz``
  artifact (the run's selected checkpoint), its ground truth the dataset's. Replicates are cached per run.
- A seed row (mean over seeds) gets the interval of the mean under a two-level bootstrap: every replicate draws the
  test videos (the same draw for every seed) *and* the seeds with replacement, so both the test set's and the
  seeds' variability widen it (:func:`seed_mean_interval`).
- The optimism gap (test-selected minus validation-selected) gets a paired interval: both checkpoints are scored on
  the same resampled videos in every replicate (what :func:`vad.metrics.intervals.paired_bootstrap_difference`
  computes; here from the cached replicates, which use the same draws).
- Beside the gap, its expected size when every candidate is equally good (:func:`null_gap`).
"""

from __future__ import annotations

import hashlib
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from search.reporting.data import TrackedRun
from search.reporting.figures import SCORES_ARTIFACT, TestTruth, frame_scores, run_scores, threshold_of
from vad.atomic import atomic_write_bytes
from vad.metrics.intervals import bootstrap_replicates
from vad.metrics.intervals import percentile_interval as metric_interval
from vad.scoring import TestScores

Interval = tuple[float, float]


def percentile_interval(values: np.ndarray, level: float = 0.95) -> Interval | None:
    """The central ``level`` percentile interval of the finite ``values`` ``(B,)`` (``None`` when none is)."""
    low, high = metric_interval(values, level)
    return None if math.isnan(low) else (low, high)


def seed_mean_interval(replicates: Sequence[np.ndarray], *, level: float = 0.95, seed: int = 0) -> Interval | None:
    """Interval of the mean over seeds. ``replicates[s]`` ``(B,)`` is seed ``s``'s metric on video replicate ``b``
    (the same video draws for every seed); replicate ``b`` also draws the seeds with replacement and averages
    them: ``mean_j R[s_bj, b]``. With one seed this is that seed's own interval."""
    table = np.stack([np.asarray(r, dtype=np.float64) for r in replicates])  # (S, B)
    n_seeds, n_boot = table.shape
    drawn = np.random.default_rng(seed).integers(0, n_seeds, size=(n_boot, n_seeds))
    values = table[drawn, np.arange(n_boot)[:, None]]  # (B, S)
    with np.errstate(invalid="ignore"):
        finite = np.isfinite(values)
        means = np.where(finite.any(axis=1), np.nansum(values, axis=1) / np.maximum(finite.sum(axis=1), 1), np.nan)
    return percentile_interval(means, level)


@dataclass(frozen=True)
class NullGap:
    """The optimism gap expected when every candidate is equally good: ``expected`` (mean) and ``upper`` (the
    ``level`` quantile) of the null gaps, over ``candidates`` candidates."""

    expected: float
    upper: float
    candidates: int


def null_gap(select: Sequence[float] | np.ndarray, values: Sequence[float] | np.ndarray, *, mode: str = "max",
             n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> NullGap | None:
    """Expected optimism gap under the null that all ``N`` candidates are equally good.

    ``select`` ``(N,)`` is what the test-selected pick maximises (``mode="max"``; ``min`` for a loss) over the
    candidates (every trial x epoch it chose among), ``values`` ``(N,)`` the reported metric of the same candidates.
    Under the null the candidates are exchangeable draws of one distribution, estimated by their own values: each
    replicate draws ``N`` candidates with replacement, takes ``values`` at the one with the best ``select`` (what
    selecting on the test set reports) and subtracts ``values`` of one more independent draw (what a selection
    unrelated to the test metric, e.g. on validation data, reports when nothing is better than anything else).
    ``expected`` is the mean of those differences, ``upper`` their ``level`` quantile. Real differences between the
    candidates (bad early epochs, bad trials) widen the spread the estimate uses, so it is generous to the
    selection effect: a gap beyond it says the validation pick is worse than a randomly drawn candidate.
    Candidates whose ``select`` or ``values`` is not finite are left out; ``None`` when none is left."""
    select, values = np.asarray(select, dtype=np.float64), np.asarray(values, dtype=np.float64)
    keep = np.isfinite(select) & np.isfinite(values)
    select, values = select[keep], values[keep]
    n = select.size
    if n == 0:
        return None
    signed = select if mode == "max" else -select
    rng = np.random.default_rng(seed)
    chunk = max(1, 2_000_000 // n)
    gaps = []
    for start in range(0, n_boot, chunk):
        size = min(chunk, n_boot - start)
        drawn = rng.integers(0, n, size=(size, n))
        best = drawn[np.arange(size), np.argmax(signed[drawn], axis=1)]
        gaps.append(values[best] - values[rng.integers(0, n, size=size)])
    gap = np.concatenate(gaps)
    return NullGap(float(gap.mean()), float(np.quantile(gap, level)), n)


@dataclass
class Bootstrap:
    """Bootstrap replicates of the frame metrics of runs' saved checkpoints, on one dataset's test set; per-run
    scores and replicates are cached in memory (a report asks for a run several times: its row, the gap, the
    figures) and, with ``cache_dir``, on disk under a key of the frame scores, labels, offsets, threshold,
    ``n_boot`` and ``seed`` (a UCF-Crime-sized test set takes tens of seconds per run on a busy core)."""

    truth: TestTruth
    scratch: Path
    n_boot: int = 1000
    seed: int = 0
    level: float = 0.95
    cache_dir: Path | None = None
    _scores: dict[str, TestScores | None] = field(default_factory=dict, repr=False)
    _replicates: dict[str, dict[str, np.ndarray] | None] = field(default_factory=dict, repr=False)

    def scores(self, run: TrackedRun) -> TestScores | None:
        """The run's ``scores.npz`` (its selected checkpoint's per-video scores; ``None`` without one)."""
        if run.run_id not in self._scores:
            self._scores[run.run_id] = run_scores(run, self.scratch)
        return self._scores[run.run_id]

    def replicates(self, run: TrackedRun) -> dict[str, np.ndarray] | None:
        """``{frame metric: (n_boot,)}`` of the run's saved checkpoint (``None`` without saved scores)."""
        if run.run_id not in self._replicates:
            scores = self.scores(run)
            result = None
            if scores is not None:
                frames = frame_scores(scores, self.truth, f"{run.name}: {SCORES_ARTIFACT}")
                result = self._compute(frames, threshold_of(run))
            self._replicates[run.run_id] = result
        return self._replicates[run.run_id]

    def _compute(self, frames: np.ndarray, threshold: float) -> dict[str, np.ndarray]:
        gt = self.truth.ground_truth
        path = None
        if self.cache_dir is not None:
            digest = hashlib.sha256()
            for array in (np.ascontiguousarray(frames, dtype=np.float32), np.ascontiguousarray(gt.labels),
                          np.ascontiguousarray(gt.offsets, dtype=np.int64)):
                digest.update(array.tobytes())
            digest.update(f"{threshold!r} {self.n_boot} {self.seed}".encode())
            path = self.cache_dir / f"{digest.hexdigest()[:32]}.npz"
            if path.is_file():
                with np.load(path, allow_pickle=False) as data:
                    return {name: data[name] for name in data.files}
        result = bootstrap_replicates(frames, gt.labels, gt.offsets, threshold=threshold, n_boot=self.n_boot,
                                      seed=self.seed)
        if path is not None:
            buffer = io.BytesIO()
            np.savez(buffer, **result)
            atomic_write_bytes(path, buffer.getvalue())
        return result

    def intervals(self, runs: Sequence[TrackedRun]) -> dict[str, Interval]:
        """Intervals of every frame metric of one run's checkpoint, or of the mean over several seed runs (see
        :func:`seed_mean_interval`); empty when some run has no saved scores."""
        tables = [self.replicates(run) for run in runs]
        if not tables or any(table is None for table in tables):
            return {}
        out = {}
        for name in tables[0]:
            interval = seed_mean_interval([table[name] for table in tables], level=self.level, seed=self.seed)
            if interval is not None:
                out[name] = interval
        return out

    def paired_difference(self, run_a: TrackedRun, run_b: TrackedRun) -> dict[str, Interval]:
        """Interval of ``metric(a) - metric(b)`` per frame metric, both scored on the same video draws."""
        a, b = self.replicates(run_a), self.replicates(run_b)
        if a is None or b is None:
            return {}
        out = {}
        for name in a:
            interval = percentile_interval(a[name] - b[name], self.level)
            if interval is not None:
                out[name] = interval
        return out
