"""Bootstrap intervals of frame metrics, resampling test *videos* with replacement.

Frames of one video are not independent (a snippet's score is repeated for its 16 frames, anomalies last many
snippets), so the unit of resampling is the video. Every replicate is exact: its metrics equal
:func:`vad.metrics.frame.frame_metrics` on the explicitly resampled frames. It is also fast: frames that share a
score form one "level"; each video is summarised by its histograms of positive and negative frames over the sorted
levels (sparse ``V x U``) and by its confusion counts at the threshold (``V x 4``). A replicate that draws video
``v`` ``c_v`` times has level counts ``c @ H`` and confusion counts ``c @ counts``, from which the ROC and PR curves
(highest score first) and the threshold metrics follow. Replicates are processed in chunks to bound memory.
Intervals are percentile intervals; replicates where a metric is undefined (``nan``: no abnormal frame drawn) are
left out of its interval.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import sparse

from vad.metrics.catalogue import frame_metric_names
from vad.metrics.frame import _scores_and_labels, _video_ranges

_CHUNK_ELEMENTS = 4_000_000  # replicate x level cells per chunk (a few arrays of this size live at once)


class _VideoSummary:
    """Per-video histograms over the score levels and confusion counts at one threshold."""

    def __init__(self, scores: np.ndarray, labels: np.ndarray, offsets: np.ndarray, threshold: float) -> None:
        n_videos = offsets.size - 1
        video_of_frame = np.repeat(np.arange(n_videos), np.diff(offsets))
        _, level = np.unique(-scores, return_inverse=True)  # level 0 = highest score
        level = level.reshape(-1)
        n_levels = int(level.max()) + 1 if level.size else 0
        ones = np.ones(scores.size)
        # (U, V): transposed so that ``H.T @ c.T`` is a sparse-times-dense product
        self.positives = sparse.csr_matrix((ones[labels], (level[labels], video_of_frame[labels])),
                                           shape=(n_levels, n_videos))
        self.negatives = sparse.csr_matrix((ones[~labels], (level[~labels], video_of_frame[~labels])),
                                           shape=(n_levels, n_videos))
        predicted = scores > threshold
        columns = [predicted & labels, predicted & ~labels, ~predicted & labels, ~predicted & ~labels]
        self.confusion = np.stack([np.bincount(video_of_frame, weights=c.astype(np.float64), minlength=n_videos)
                                   for c in columns], axis=1)  # (V, 4): tp, fp, fn, tn
        self.n_levels = n_levels
        self.n_videos = n_videos


def _safe_ratio(numerator: np.ndarray, denominator: np.ndarray, zero_division: float) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denominator > 0, numerator / np.where(denominator > 0, denominator, 1.0), zero_division)


def _ranking(summary: _VideoSummary, counts: np.ndarray) -> dict[str, np.ndarray]:
    """``auc``, ``ap``, ``pr_auc`` ``(B,)`` of the replicates with video counts ``counts`` ``(B, V)``."""
    weights = counts.T.astype(np.float64)  # (V, B)
    tp_level = np.asarray(summary.positives @ weights).T  # (B, U), highest level first
    fp_level = np.asarray(summary.negatives @ weights).T
    tps = np.cumsum(tp_level, axis=1)
    fps = np.cumsum(fp_level, axis=1)
    n_pos = tps[:, -1:] if tps.shape[1] else np.zeros((counts.shape[0], 1))
    n_neg = fps[:, -1:] if fps.shape[1] else np.zeros((counts.shape[0], 1))
    # ROC AUC: trapezoids between consecutive thresholds (levels not drawn repeat a point and add nothing)
    tps_before = tps - tp_level
    with np.errstate(divide="ignore", invalid="ignore"):
        auc = np.sum(fp_level * (tps_before + tp_level / 2.0), axis=1) / (n_pos[:, 0] * n_neg[:, 0])
        recall_step = tp_level / n_pos  # (B, U)
    drawn = tps + fps
    # before any frame is drawn the curve sits at scikit-learn's starting point (recall 0, precision 1)
    precision = _safe_ratio(tps, drawn, 1.0)
    precision_before = np.concatenate([np.ones((precision.shape[0], 1)), precision[:, :-1]], axis=1)
    ap = np.sum(recall_step * precision, axis=1)
    pr_auc = np.sum(recall_step * (precision + precision_before) / 2.0, axis=1)
    undefined_pr = n_pos[:, 0] == 0
    auc[undefined_pr | (n_neg[:, 0] == 0)] = np.nan
    ap[undefined_pr] = np.nan
    pr_auc[undefined_pr] = np.nan
    return {"auc": auc, "ap": ap, "pr_auc": pr_auc}


def _thresholded(summary: _VideoSummary, counts: np.ndarray, zero_division: float) -> dict[str, np.ndarray]:
    """``f1``, ``f1_macro``, ``precision``, ``recall``, ``accuracy`` ``(B,)`` of ``score > threshold``."""
    tp, fp, fn, tn = (counts.astype(np.float64) @ summary.confusion).T
    f1_positive = _safe_ratio(2 * tp, 2 * tp + fp + fn, zero_division)
    f1_negative = _safe_ratio(2 * tn, 2 * tn + fn + fp, zero_division)
    present_positive = (tp + fp + fn) > 0
    present_negative = (tn + fn + fp) > 0
    n_present = present_positive.astype(np.float64) + present_negative
    macro = _safe_ratio(np.where(present_positive, f1_positive, 0.0) + np.where(present_negative, f1_negative, 0.0),
                        n_present, np.nan)
    total = tp + fp + fn + tn
    return {
        "f1": f1_positive,
        "f1_macro": macro,
        "precision": _safe_ratio(tp, tp + fp, zero_division),
        "recall": _safe_ratio(tp, tp + fn, zero_division),
        "accuracy": _safe_ratio(tp + tn, total, np.nan),
    }


def resample_counts(n_videos: int, n_boot: int, seed: int) -> np.ndarray:
    """How often each video is drawn in each replicate ``(n_boot, n_videos)``: ``n_videos`` draws with replacement.

    Replicate ``b`` is the videos ``np.random.default_rng(seed).integers(0, n_videos, (n_boot, n_videos))[b]``.
    """
    if n_videos < 1:
        raise ValueError("bootstrap: no test videos")
    if n_boot < 1:
        raise ValueError(f"bootstrap: n_boot must be positive, got {n_boot}")
    draws = np.random.default_rng(seed).integers(0, n_videos, size=(n_boot, n_videos))
    flat = (np.arange(n_boot)[:, None] * n_videos + draws).reshape(-1)
    return np.bincount(flat, minlength=n_boot * n_videos).reshape(n_boot, n_videos)


def bootstrap_replicates(
    frame_scores: Sequence[float] | np.ndarray,
    frame_labels: Sequence[float] | np.ndarray,
    frame_offsets: Sequence[int] | np.ndarray,
    *,
    threshold: float = 0.5,
    n_boot: int = 1000,
    seed: int = 0,
    zero_division: float = 0.0,
) -> dict[str, np.ndarray]:
    """Every frame metric of every replicate: ``{name: (n_boot,)}`` for each name in ``frame_metric_names()``.

    ``frame_scores``/``frame_labels`` ``(F,)``; ``frame_offsets`` ``(V+1,)`` cumulative frame offsets of the videos
    (``prepared.ground_truth.offsets``). Replicates draw videos as :func:`resample_counts` says.
    """
    scores, labels = _scores_and_labels(frame_scores, frame_labels, "bootstrap")
    offsets = _video_ranges(frame_offsets, scores.size, np.asarray(frame_offsets).size - 1)
    summary = _VideoSummary(scores, labels, offsets, threshold)
    counts = resample_counts(summary.n_videos, n_boot, seed)
    chunk = max(1, _CHUNK_ELEMENTS // max(summary.n_levels, 1))
    pieces: list[dict[str, np.ndarray]] = []
    for start in range(0, n_boot, chunk):
        part = counts[start:start + chunk]
        pieces.append({**_ranking(summary, part), **_thresholded(summary, part, zero_division)})
    return {name: np.concatenate([p[name] for p in pieces]) for name in frame_metric_names()}


def percentile_interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """The central ``level`` percentile interval of the finite ``values`` ``(B,)``; ``(nan, nan)`` when none is."""
    finite = np.asarray(values, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        return float("nan"), float("nan")
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(finite, [tail, 1.0 - tail])
    return float(low), float(high)


def _check_level(level: float) -> None:
    if not 0.0 < level < 1.0:
        raise ValueError(f"bootstrap: level must lie in (0, 1), got {level}")


def bootstrap_intervals(
    frame_scores: Sequence[float] | np.ndarray,
    frame_labels: Sequence[float] | np.ndarray,
    frame_offsets: Sequence[int] | np.ndarray,
    *,
    threshold: float = 0.5,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, tuple[float, float]]:
    """Percentile ``level`` intervals ``{name: (low, high)}`` of every frame metric, over test videos resampled
    with replacement (``n_boot`` replicates, seeded). Shapes as in :func:`bootstrap_replicates`."""
    _check_level(level)
    replicates = bootstrap_replicates(frame_scores, frame_labels, frame_offsets, threshold=threshold,
                                      n_boot=n_boot, seed=seed)
    return {name: percentile_interval(values, level) for name, values in replicates.items()}


def _frame_metric(metric: str) -> str:
    names = frame_metric_names()
    for prefix in ("", "test_", "selected_"):
        if metric.startswith(prefix) and metric[len(prefix):] in names:
            return metric[len(prefix):]
    raise ValueError(f"bootstrap: unknown frame metric {metric!r}; known: {', '.join(names)}")


def paired_bootstrap_difference(
    scores_a: Sequence[float] | np.ndarray,
    scores_b: Sequence[float] | np.ndarray,
    frame_labels: Sequence[float] | np.ndarray,
    frame_offsets: Sequence[int] | np.ndarray,
    *,
    metric: str = "auc",
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    threshold: float = 0.5,
) -> tuple[float, float, float]:
    """``metric(a) - metric(b)`` on all frames and its percentile interval, both score sets ``(F,)`` scored on the
    same resampled videos in every replicate: ``(difference, low, high)``. ``metric`` is a frame metric name
    (``auc``; ``test_auc``/``selected_auc`` resolve to it)."""
    _check_level(level)
    name = _frame_metric(metric)
    offsets = np.asarray(frame_offsets)
    full = np.zeros((1, offsets.size - 1), dtype=np.int64) + 1
    values = []
    for scores in (scores_a, scores_b):
        s, labels = _scores_and_labels(scores, frame_labels, "paired bootstrap")
        summary = _VideoSummary(s, labels, _video_ranges(offsets, s.size, offsets.size - 1), threshold)
        point = {**_ranking(summary, full), **_thresholded(summary, full, 0.0)}[name][0]
        reps = bootstrap_replicates(s, labels, offsets, threshold=threshold, n_boot=n_boot, seed=seed)[name]
        values.append((point, reps))
    difference = values[0][1] - values[1][1]
    low, high = percentile_interval(difference, level)
    return float(values[0][0] - values[1][0]), low, high
