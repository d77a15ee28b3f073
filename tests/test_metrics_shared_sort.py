"""The ranking metrics sort runs of equal consecutive scores (a snippet's frames), not frames, and ``per_class_auc``
sorts once for all classes: every value must equal, bit for bit, the plain one-sort-of-all-frames computation
(ties included) and agree with scikit-learn."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn import metrics as skm

from vad.metrics import expand_to_frames, frame_metrics, per_class_auc, video_metrics

CLASSES = ["Normal", "Abuse", "Arson", "Normal", "Abuse", None, "Robbery", "Normal", "Arson", "Robbery", "Normal"]


def _case(seed: int, levels: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Frame scores (rounded to ``levels`` values: many ties), labels and offsets of the videos in ``CLASSES``."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(20, 80, len(CLASSES))
    offsets = np.r_[0, np.cumsum(lengths)]
    labels = np.zeros(offsets[-1])
    for video, name in enumerate(CLASSES):
        if name not in ("Normal", None):
            start = offsets[video] + rng.integers(0, lengths[video] // 2)
            labels[start:start + lengths[video] // 3] = 1
    scores = rng.random(labels.size) + 0.4 * labels
    if levels is not None:
        scores = np.round(scores * levels) / levels
    return scores, labels, offsets


@pytest.mark.parametrize(("seed", "levels"), [(0, None), (1, 10), (2, 3), (3, 1)])
def test_per_class_auc_equals_each_class_on_its_own(seed: int, levels: int | None) -> None:
    scores, labels, offsets = _case(seed, levels)
    result = per_class_auc(scores, labels, offsets, CLASSES)
    assert list(result) == ["Abuse", "Arson", "Robbery"]
    video_of_frame = np.repeat(np.arange(len(CLASSES)), np.diff(offsets))
    for name, value in result.items():
        videos = [i for i, c in enumerate(CLASSES) if c in ("Normal", name)]
        keep = np.isin(video_of_frame, videos)
        alone = frame_metrics(scores[keep], labels[keep])["auc"]
        assert value == alone  # bit for bit: the shared sort changes no value
        assert value == pytest.approx(skm.roc_auc_score(labels[keep], scores[keep]), rel=1e-12)


def test_per_class_auc_of_a_class_without_anomalous_frames_is_nan() -> None:
    scores, labels, offsets = _case(4, None)
    robbery = [i for i, c in enumerate(CLASSES) if c == "Robbery"]
    for video in robbery:
        labels[offsets[video]:offsets[video + 1]] = 0
    result = per_class_auc(scores, labels, offsets, CLASSES)
    assert math.isnan(result["Robbery"])
    assert not math.isnan(result["Abuse"])


def _plain_ranking(scores: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """The per-frame computation (one stable sort of every frame), as the metrics were first written."""
    order = np.argsort(scores, kind="mergesort")[::-1]
    last = np.r_[np.flatnonzero(np.diff(scores[order])), scores.size - 1]
    tps = np.cumsum(labels[order], dtype=np.float64)[last]
    fps = 1.0 + last - tps
    n_pos, n_neg = int(labels.sum()), labels.size - int(labels.sum())
    recall, precision = np.r_[0.0, tps / n_pos], np.r_[1.0, tps / (tps + fps)]
    fpr = np.r_[0.0, fps / n_neg]

    def trapezoid(y: np.ndarray, x: np.ndarray) -> float:
        return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2.0))

    return {"auc": trapezoid(recall, fpr), "ap": float(np.sum(np.diff(recall) * precision[1:])),
            "pr_auc": trapezoid(precision, recall)}


@pytest.mark.parametrize("levels", [None, 50, 4])
def test_frame_ranking_metrics_equal_the_per_frame_computation(levels: int | None) -> None:
    rng = np.random.default_rng(5)
    snippets = [rng.random(int(n)) for n in rng.integers(3, 40, 30)]
    if levels is not None:
        snippets = [np.round(s * levels) / levels for s in snippets]
    frame_lengths = [16 * len(s) + int(rng.integers(-19, 20)) for s in snippets]  # trimmed and padded videos
    scores = expand_to_frames(snippets, frame_lengths)
    labels = (rng.random(scores.size) < 0.3).astype(float)  # labels change inside a snippet's run of frames
    ours = frame_metrics(scores, labels)
    for key, value in _plain_ranking(scores, labels).items():
        assert ours[key] == value, key
    assert ours["auc"] == pytest.approx(skm.roc_auc_score(labels, scores), rel=1e-12)
    assert ours["ap"] == pytest.approx(skm.average_precision_score(labels, scores), rel=1e-12)
    video = video_metrics(scores[:200:7], labels[:200:7])
    assert video["video_auc"] == _plain_ranking(scores[:200:7], labels[:200:7])["auc"]
