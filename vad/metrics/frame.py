"""Frame- and video-level metrics of anomaly scores, in agreement with scikit-learn.

All ranking metrics come from one sort of the scores (the curve scikit-learn's ``_binary_clf_curve`` builds):
``auc`` = ``roc_auc_score``, ``ap`` = ``average_precision_score``, ``pr_auc`` = ``auc(recall, precision)`` over
``precision_recall_curve`` (the trapezoidal number the original RTFM/MGFN/UR-DMU code reports as "AP").
Threshold metrics use ``score > threshold`` as the positive prediction. Undefined ranking values (one class
only) are ``nan`` rather than an exception or scikit-learn's warning-and-0.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np


def _as_scores(scores: object, what: str) -> np.ndarray:
    array = np.asarray(scores, dtype=np.float64)
    if array.ndim > 1 and sum(size != 1 for size in array.shape) <= 1:
        array = array.reshape(-1)  # (F, 1) or (1, F)
    if array.ndim != 1:
        raise ValueError(f"{what}: expected a 1-D array, got shape {np.shape(scores)}")
    if not np.isfinite(array).all():
        bad = int(np.flatnonzero(~np.isfinite(array))[0])
        raise ValueError(f"{what}: non-finite value {array[bad]} at index {bad}")
    return array


def _as_binary(labels: object, what: str) -> np.ndarray:
    array = _as_scores(labels, what)
    if not np.isin(array, (0.0, 1.0)).all():
        bad = int(np.flatnonzero(~np.isin(array, (0.0, 1.0)))[0])
        raise ValueError(f"{what}: expected 0/1 labels, got {array[bad]} at index {bad}")
    return array.astype(bool)


def _scores_and_labels(scores: object, labels: object, what: str) -> tuple[np.ndarray, np.ndarray]:
    score_array = _as_scores(scores, f"{what} scores")
    label_array = _as_binary(labels, f"{what} labels")
    if score_array.shape != label_array.shape:
        raise ValueError(
            f"{what}: {score_array.size} scores but {label_array.size} labels; expected one score per label"
        )
    if score_array.size == 0:
        raise ValueError(f"{what}: no scores given")
    return score_array, label_array


def _runs(
    scores: np.ndarray, labels: np.ndarray, breaks: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Runs of equal consecutive scores (the frames of one snippet share its score): per run ``(score, positive
    frames, frames, first position)``, each ``(R,)``; ``breaks``: positions where a run starts anyway (videos).

    Ranking counts need only these (ties count together anyway), so sorting the runs instead of the frames gives
    the same curve from a 16x shorter sort.
    """
    starts = np.flatnonzero(scores[1:] != scores[:-1]) + 1
    if breaks is not None:
        starts = np.union1d(starts, breaks[(breaks > 0) & (breaks < scores.size)])
    starts = np.r_[0, starts].astype(np.int64)
    positives = np.add.reduceat(labels, starts, dtype=np.float64)
    frames = np.diff(np.r_[starts, scores.size]).astype(np.float64)
    return scores[starts], positives, frames, starts


def _sorted_curve(scores: np.ndarray, positives: np.ndarray, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(tps, fps)``: cumulative true/false positive frames at each distinct threshold, highest first, from runs
    ``(R,)`` sorted by ascending score. Only the counts after the last run of each distinct score are read, so
    the order of tied runs changes no value (an unstable sort will do); the counts are integers, exact in
    float64."""
    scores, positives, frames = scores[::-1], positives[::-1], frames[::-1]
    last_of_each_value = np.r_[np.flatnonzero(scores[1:] != scores[:-1]), scores.size - 1]
    tps = np.cumsum(positives)[last_of_each_value]
    fps = np.cumsum(frames)[last_of_each_value] - tps
    return tps, fps


def _ranking_curve(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative true/false positives at each distinct threshold, highest score first: ``(tps, fps)``."""
    run_scores, positives, frames, _ = _runs(scores, labels)
    order = np.argsort(run_scores)
    return _sorted_curve(run_scores[order], positives[order], frames[order])


def _trapezoid(y: np.ndarray, x: np.ndarray) -> float:
    """Area under the piecewise-linear curve through ``(x, y)`` (``np.trapezoid``, also on NumPy 1.x)."""
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2.0))


def _curve_metrics(tps: np.ndarray, fps: np.ndarray, n_pos: int, n_neg: int) -> dict[str, float]:
    """ROC-AUC, average precision and trapezoidal PR-AUC of a curve (``n_pos > 0``; AUC ``nan`` if ``n_neg == 0``)."""
    recall = np.r_[0.0, tps / n_pos]
    precision = np.r_[1.0, tps / (tps + fps)]
    ap = float(np.sum(np.diff(recall) * precision[1:]))
    pr_auc = _trapezoid(precision, recall)
    if n_neg == 0:
        auc = float("nan")
    else:
        auc = _trapezoid(np.r_[0.0, tps / n_pos], np.r_[0.0, fps / n_neg])
    return {"auc": auc, "ap": ap, "pr_auc": pr_auc}


def _ranking_metrics(scores: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """ROC-AUC, average precision and trapezoidal PR-AUC; ``nan`` where undefined."""
    n_pos = int(labels.sum())
    n_neg = labels.size - n_pos
    if n_pos == 0:
        return {"auc": float("nan"), "ap": float("nan"), "pr_auc": float("nan")}
    return _curve_metrics(*_ranking_curve(scores, labels), n_pos, n_neg)


def _ratio(numerator: float, denominator: float, zero_division: float) -> float:
    return float(numerator / denominator) if denominator > 0 else float(zero_division)


def _threshold_metrics(
    scores: np.ndarray, labels: np.ndarray, threshold: float, zero_division: float
) -> dict[str, float]:
    """F1 (positive class), macro-F1, precision, recall and accuracy of ``score > threshold``."""
    predicted = scores > threshold
    tp = float(np.count_nonzero(predicted & labels))
    fp = float(np.count_nonzero(predicted & ~labels))
    fn = float(np.count_nonzero(~predicted & labels))
    tn = float(labels.size) - tp - fp - fn
    f1_positive = _ratio(2 * tp, 2 * tp + fp + fn, zero_division)
    # scikit-learn's macro average runs over the classes present in the labels or the predictions; a present
    # class always has a positive denominator.
    per_class = [_ratio(2 * t, 2 * t + f_p + f_n, zero_division)
                 for t, f_p, f_n in ((tp, fp, fn), (tn, fn, fp)) if t + f_p + f_n > 0]
    return {
        "f1": f1_positive,
        "f1_macro": float(np.mean(per_class)),
        "precision": _ratio(tp, tp + fp, zero_division),
        "recall": _ratio(tp, tp + fn, zero_division),
        "accuracy": (tp + tn) / labels.size,
    }


def frame_metrics(
    frame_scores: Sequence[float] | np.ndarray,
    frame_labels: Sequence[float] | np.ndarray,
    threshold: float = 0.5,
    zero_division: float = 0.0,
) -> dict[str, float]:
    """Frame-level metrics of scores ``(F,)`` against 0/1 labels ``(F,)``.

    Returns ``auc``, ``ap``, ``pr_auc`` (``nan`` when undefined: AUC needs both classes, AP/PR-AUC a positive
    frame) and, for the prediction ``score > threshold``, ``f1``, ``f1_macro``, ``precision``, ``recall`` and
    ``accuracy``; ``zero_division`` is the value of a ratio whose denominator is 0 (scikit-learn's default is 0).
    """
    scores, labels = _scores_and_labels(frame_scores, frame_labels, "frame_metrics")
    return {**_ranking_metrics(scores, labels), **_threshold_metrics(scores, labels, threshold, zero_division)}


def video_metrics(
    video_scores: Sequence[float] | np.ndarray, video_labels: Sequence[float] | np.ndarray
) -> dict[str, float]:
    """Video-level ``video_auc`` and ``video_ap`` (average precision) of one score per video ``(V,)``."""
    scores, labels = _scores_and_labels(video_scores, video_labels, "video_metrics")
    ranking = _ranking_metrics(scores, labels)
    return {"video_auc": ranking["auc"], "video_ap": ranking["ap"]}


def expand_to_frames(
    snippet_scores: Sequence[np.ndarray],
    frame_lengths: Sequence[int] | np.ndarray,
    frames_per_snippet: int = 16,
) -> np.ndarray:
    """Per-video snippet scores ``[(T_i,)]`` -> concatenated frame scores ``(sum F_i,)``.

    Each score is repeated ``frames_per_snippet`` times, then the video is trimmed to its ground-truth frame
    count ``F_i`` or padded with its last value (the original repositories' ``np.repeat(scores, 16)``).
    """
    if len(snippet_scores) != len(frame_lengths):
        raise ValueError(
            f"expand_to_frames: {len(snippet_scores)} videos of scores but {len(frame_lengths)} frame lengths"
        )
    if frames_per_snippet < 1:
        raise ValueError(f"expand_to_frames: frames_per_snippet must be positive, got {frames_per_snippet}")
    pieces = []
    for index, (scores, length) in enumerate(zip(snippet_scores, frame_lengths)):
        video = _as_scores(scores, f"expand_to_frames: scores of video {index}")
        length = int(length)
        if length < 0:
            raise ValueError(f"expand_to_frames: video {index} has a negative frame length {length}")
        if video.size == 0 and length > 0:
            raise ValueError(f"expand_to_frames: video {index} has no scores but {length} ground-truth frames")
        frames = np.repeat(video, frames_per_snippet)[:length]
        if frames.size < length:
            frames = np.concatenate([frames, np.full(length - frames.size, video[-1])])
        pieces.append(frames)
    return np.concatenate(pieces) if pieces else np.zeros(0)


def _video_ranges(frame_offsets: Sequence[int] | np.ndarray, n_frames: int, n_videos: int) -> np.ndarray:
    offsets = np.asarray(frame_offsets, dtype=np.int64)
    if offsets.shape != (n_videos + 1,):
        raise ValueError(f"frame_offsets: expected {n_videos + 1} offsets for {n_videos} videos, got {offsets.shape}")
    if offsets[0] != 0 or offsets[-1] != n_frames or np.any(np.diff(offsets) < 0):
        raise ValueError(
            f"frame_offsets: expected non-decreasing offsets from 0 to {n_frames} frames, "
            f"got {offsets[0]} ... {offsets[-1]}"
        )
    return offsets


def _frames_of(offsets: np.ndarray, selected: np.ndarray) -> np.ndarray:
    """Boolean frame mask of the videos where ``selected`` is true."""
    return np.repeat(selected, np.diff(offsets))


def false_alarm_rate(
    frame_scores: Sequence[float] | np.ndarray,
    frame_labels: Sequence[float] | np.ndarray,
    frame_offsets: Sequence[int] | np.ndarray,
    video_labels: Sequence[int] | np.ndarray,
    threshold: float = 0.5,
) -> float:
    """Fraction of the normal videos' normal frames with ``score > threshold`` (``nan`` without normal videos).

    ``frame_offsets`` ``(V+1,)`` delimit each video's frames; ``video_labels`` ``(V,)`` are 0 normal / 1 abnormal.
    """
    scores, labels = _scores_and_labels(frame_scores, frame_labels, "false_alarm_rate")
    videos = _as_binary(video_labels, "false_alarm_rate video labels")
    offsets = _video_ranges(frame_offsets, scores.size, videos.size)
    normal_frames = _frames_of(offsets, ~videos) & ~labels
    if not normal_frames.any():
        return float("nan")
    return float(np.mean(scores[normal_frames] > threshold))


def per_class_auc(
    frame_scores: Sequence[float] | np.ndarray,
    frame_labels: Sequence[float] | np.ndarray,
    frame_offsets: Sequence[int] | np.ndarray,
    video_classes: Sequence[str | None],
    normal_class: str | Iterable[str] = ("Normal", "A"),
) -> dict[str, float]:
    """Frame AUC of each anomaly class: that class's videos together with all normal videos.

    ``video_classes`` ``(V,)`` name each video's class (``None``: unknown, left out); ``normal_class`` names the
    normal class(es) (``Normal`` for UCF-Crime, ``A`` for XD-Violence). Classes keep their first-seen order.
    """
    scores, labels = _scores_and_labels(frame_scores, frame_labels, "per_class_auc")
    offsets = _video_ranges(frame_offsets, scores.size, len(video_classes))
    normal_names = {normal_class} if isinstance(normal_class, str) else set(normal_class)
    is_normal = np.array([c in normal_names for c in video_classes], dtype=bool)
    # one sort for all classes (of the runs of equal scores, cut at video starts): each class keeps its videos'
    # runs of the sorted arrays, still in ascending order
    run_scores, positives, frames, starts = _runs(scores, labels, offsets[1:-1])
    order = np.argsort(run_scores)
    run_scores, positives, frames = run_scores[order], positives[order], frames[order]
    run_video = (np.searchsorted(offsets, starts, side="right") - 1)[order]
    result: dict[str, float] = {}
    for name in dict.fromkeys(c for c in video_classes if c is not None and c not in normal_names):
        kept = (is_normal | np.array([c == name for c in video_classes], dtype=bool))[run_video]
        n_pos = int(positives[kept].sum())
        n_neg = int(frames[kept].sum()) - n_pos
        result[name] = (float("nan") if n_pos == 0 else
                        _curve_metrics(*_sorted_curve(run_scores[kept], positives[kept], frames[kept]), n_pos,
                                       n_neg)["auc"])
    return result
