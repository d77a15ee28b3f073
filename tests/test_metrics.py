"""vad.metrics against hand-computed cases and scikit-learn."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from sklearn import metrics as skm

from vad.metrics import expand_to_frames, false_alarm_rate, frame_metrics, per_class_auc, video_metrics


def sklearn_frame_metrics(scores: np.ndarray, labels: np.ndarray, threshold: float, zero_division: float) -> dict:
    predicted = (scores > threshold).astype(int)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        precision, recall, _ = skm.precision_recall_curve(labels, scores)
        return {
            "auc": skm.roc_auc_score(labels, scores),
            "ap": skm.average_precision_score(labels, scores),
            "pr_auc": skm.auc(recall, precision),
            "f1": skm.f1_score(labels, predicted, zero_division=zero_division),
            "f1_macro": skm.f1_score(labels, predicted, average="macro", zero_division=zero_division),
            "precision": skm.precision_score(labels, predicted, zero_division=zero_division),
            "recall": skm.recall_score(labels, predicted, zero_division=zero_division),
            "accuracy": skm.accuracy_score(labels, predicted),
        }


def assert_same(ours: dict, expected: dict) -> None:
    assert set(ours) == set(expected)
    for key, value in expected.items():
        if math.isnan(value):
            assert math.isnan(ours[key]), key
        else:
            assert ours[key] == pytest.approx(value, rel=1e-12, abs=1e-12), key


@pytest.mark.parametrize("case", range(12))
def test_frame_metrics_agree_with_sklearn(case: int) -> None:
    rng = np.random.default_rng(case)
    n = int(rng.integers(5, 3000))
    labels = (rng.random(n) < rng.uniform(0.05, 0.6)).astype(float)
    if case % 3 == 0:  # heavy ties, like scores repeated x16 per snippet
        scores = np.round(rng.random(n) + 0.3 * labels, 1)
    elif case % 3 == 1:
        scores = np.repeat(rng.random(n // 16 + 1), 16)[:n] + labels * rng.random(n) * 0.5
    else:
        scores = rng.normal(size=n) + labels
    if labels.min() == labels.max():
        labels[0] = 1 - labels[0]
    threshold = float(rng.choice([0.5, 0.2, 0.8]))
    for zero_division in (0.0, 1.0):
        assert_same(frame_metrics(scores, labels, threshold, zero_division=zero_division),
                    sklearn_frame_metrics(scores, labels, threshold, zero_division))


def test_frame_metrics_hand_computed() -> None:
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.4, 0.3, 0.2, 0.1])
    labels = np.array([1, 0, 1, 0, 1, 0, 0, 0])
    result = frame_metrics(scores, labels)
    # 3 positives x 5 negatives = 15 pairs; positive 0.9 beats 5, 0.7 beats 4, 0.4 beats 3 -> 12/15
    assert result["auc"] == pytest.approx(12 / 15)
    # precision at each positive: 1/1, 2/3, 3/5
    assert result["ap"] == pytest.approx((1 + 2 / 3 + 3 / 5) / 3)
    # predicted positive: 0.9, 0.8, 0.7, 0.6 -> tp 2, fp 2, fn 1, tn 3
    assert result["precision"] == pytest.approx(0.5)
    assert result["recall"] == pytest.approx(2 / 3)
    assert result["f1"] == pytest.approx(4 / 7)
    assert result["accuracy"] == pytest.approx(5 / 8)
    assert result["f1_macro"] == pytest.approx((4 / 7 + 6 / 9) / 2)  # negative class: tp 3, fp 1, fn 2
    # PR points (recall, precision): (0,1) (1/3,1) (1/3,1/2) (2/3,2/3) (2/3,1/2) (1,3/5) (1,1/2) (1,3/7) (1,3/8)
    points = [(0, 1), (1 / 3, 1), (1 / 3, 1 / 2), (2 / 3, 2 / 3), (2 / 3, 1 / 2), (1, 3 / 5)]
    area = sum((r1 - r0) * (p0 + p1) / 2 for (r0, p0), (r1, p1) in zip(points, points[1:]))
    assert result["pr_auc"] == pytest.approx(area)


def test_threshold_is_strictly_greater() -> None:
    result = frame_metrics([0.5, 0.5, 0.9], [1, 0, 1], threshold=0.5)
    assert result["recall"] == pytest.approx(0.5)
    assert result["precision"] == pytest.approx(1.0)
    assert frame_metrics([0.5, 0.5, 0.9], [1, 0, 1], threshold=0.4)["recall"] == pytest.approx(1.0)


def test_one_class_gives_nan_ranking_metrics_not_a_crash() -> None:
    only_normal = frame_metrics([0.1, 0.7, 0.3], [0, 0, 0])
    assert math.isnan(only_normal["auc"]) and math.isnan(only_normal["ap"]) and math.isnan(only_normal["pr_auc"])
    assert only_normal["accuracy"] == pytest.approx(2 / 3)
    assert only_normal["precision"] == 0.0 and only_normal["f1"] == 0.0  # tp = 0 with fp = 1
    only_abnormal = frame_metrics([0.1, 0.7, 0.3], [1, 1, 1])
    assert math.isnan(only_abnormal["auc"])
    assert only_abnormal["ap"] == pytest.approx(1.0) and only_abnormal["pr_auc"] == pytest.approx(1.0)
    assert only_abnormal["recall"] == pytest.approx(1 / 3)


def test_zero_division() -> None:
    # nothing predicted positive and no positive label: precision, recall and f1 are all 0/0
    scores, labels = np.array([0.1, 0.2]), np.array([0, 0])
    assert frame_metrics(scores, labels)["precision"] == 0.0
    for value in (1.0, float("nan")):
        result = frame_metrics(scores, labels, zero_division=value)
        expected = sklearn_frame_metrics(scores, labels, 0.5, value)
        for key in ("precision", "recall", "f1", "f1_macro", "accuracy"):
            assert (math.isnan(result[key]) and math.isnan(expected[key])) or result[key] == expected[key], key
    assert frame_metrics(scores, labels)["f1_macro"] == 1.0  # sklearn: only the negative class is present
    # a positive label never predicted: precision 0/0, recall and f1 defined (0)
    result = frame_metrics([0.1, 0.2], [1, 0], zero_division=float("nan"))
    assert math.isnan(result["precision"]) and result["recall"] == 0.0 and result["f1"] == 0.0


def test_frame_metrics_accepts_column_vectors_and_bools() -> None:
    scores = np.array([[0.9], [0.2], [0.6]])
    assert frame_metrics(scores, np.array([True, False, False]))["auc"] == pytest.approx(1.0)


@pytest.mark.parametrize(
    "scores, labels, message",
    [
        ([0.1, 0.2], [0, 1, 1], "2 scores but 3 labels"),
        ([0.1, float("nan")], [0, 1], "non-finite"),
        ([0.1, 0.2], [0, 2], "0/1 labels"),
        ([], [], "no scores"),
        (np.zeros((2, 2)), np.zeros((2, 2)), "1-D"),
    ],
)
def test_frame_metrics_bad_input(scores: object, labels: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        frame_metrics(scores, labels)


def test_video_metrics() -> None:
    rng = np.random.default_rng(3)
    labels = np.r_[np.ones(20), np.zeros(30)]
    scores = rng.random(50) + 0.4 * labels
    result = video_metrics(scores, labels)
    assert result["video_auc"] == pytest.approx(skm.roc_auc_score(labels, scores))
    assert result["video_ap"] == pytest.approx(skm.average_precision_score(labels, scores))
    assert math.isnan(video_metrics([0.3, 0.4], [0, 0])["video_auc"])


def test_expand_to_frames_repeats_trims_and_pads() -> None:
    frames = expand_to_frames([np.array([1.0, 2.0]), np.array([3.0]), np.array([4.0, 5.0])], [32, 20, 30], 16)
    expected = np.r_[np.full(16, 1.0), np.full(16, 2.0), np.full(20, 3.0), np.full(16, 4.0), np.full(14, 5.0)]
    np.testing.assert_array_equal(frames, expected)
    np.testing.assert_array_equal(expand_to_frames([np.array([7.0, 8.0])], [3], frames_per_snippet=2), [7, 7, 8])
    with pytest.raises(ValueError, match="2 videos of scores but 1 frame lengths"):
        expand_to_frames([np.ones(2), np.ones(2)], [32])
    with pytest.raises(ValueError, match="video 1 has no scores"):
        expand_to_frames([np.ones(2), np.ones(0)], [32, 16])


def test_false_alarm_rate() -> None:
    # video 0 abnormal (4 frames), video 1 normal (4 frames), video 2 normal (2 frames)
    scores = np.array([0.9, 0.9, 0.9, 0.9, 0.6, 0.1, 0.2, 0.7, 0.8, 0.3])
    labels = np.array([0, 1, 1, 0, 0, 0, 0, 0, 0, 0])
    offsets = [0, 4, 8, 10]
    assert false_alarm_rate(scores, labels, offsets, [1, 0, 0]) == pytest.approx(3 / 6)
    assert false_alarm_rate(scores, labels, offsets, [1, 0, 0], threshold=0.75) == pytest.approx(1 / 6)
    assert math.isnan(false_alarm_rate(scores, labels, offsets, [1, 1, 1]))
    with pytest.raises(ValueError, match="frame_offsets"):
        false_alarm_rate(scores, labels, [0, 4, 9], [1, 0])


def test_per_class_auc() -> None:
    rng = np.random.default_rng(0)
    lengths = [32, 48, 16, 64, 32, 48]
    classes = ["Abuse", "Arson", "Abuse", "Normal", None, "Normal"]
    offsets = np.r_[0, np.cumsum(lengths)]
    labels = np.zeros(offsets[-1])
    for video in (0, 1, 2):
        labels[offsets[video] + 4: offsets[video] + 12] = 1
    scores = rng.random(labels.size) + 0.5 * labels
    result = per_class_auc(scores, labels, offsets, classes)
    assert list(result) == ["Abuse", "Arson"]
    video_of_frame = np.repeat(np.arange(len(lengths)), lengths)
    for name, videos in (("Abuse", [0, 2, 3, 5]), ("Arson", [1, 3, 5])):
        keep = np.isin(video_of_frame, videos)
        assert result[name] == pytest.approx(skm.roc_auc_score(labels[keep], scores[keep]))
    xd = per_class_auc(scores, labels, offsets, ["B1", "G", "B1", "A", "A", "A"])
    keep = np.isin(video_of_frame, [0, 2, 3, 4, 5])
    assert xd["B1"] == pytest.approx(skm.roc_auc_score(labels[keep], scores[keep]))
