"""Bootstrap intervals over test videos: exact replicates, determinism, coverage, paired differences."""

import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from vad.metrics.catalogue import frame_metric_names
from vad.metrics.frame import frame_metrics
from vad.metrics.intervals import (
    bootstrap_intervals,
    bootstrap_replicates,
    paired_bootstrap_difference,
    resample_counts,
)


def videos(n_videos: int, seed: int, *, repeat: int = 4, abnormal_share: float = 0.4):
    """Snippet scores repeated ``repeat`` times per frame, abnormal videos with one abnormal run, ties included."""
    rng = np.random.default_rng(seed)
    scores, labels, lengths = [], [], []
    for _ in range(n_videos):
        snippets = int(rng.integers(2, 7))
        frames = snippets * repeat - int(rng.integers(0, repeat))  # trimmed last snippet, as expand_to_frames does
        label = np.zeros(frames)
        if rng.random() < abnormal_share:
            start = int(rng.integers(0, frames))
            label[start:start + int(rng.integers(1, frames - start + 1))] = 1
        snippet_scores = np.round(rng.random(snippets) * 0.6 + 0.35 * label[::repeat][:snippets], 1)  # ties
        scores.append(np.repeat(snippet_scores, repeat)[:frames])
        labels.append(label)
        lengths.append(frames)
    offsets = np.r_[0, np.cumsum(lengths)]
    return np.concatenate(scores), np.concatenate(labels), offsets


def resampled_frames(scores, labels, offsets, videos_drawn):
    pieces = [(scores[offsets[v]:offsets[v + 1]], labels[offsets[v]:offsets[v + 1]]) for v in videos_drawn]
    return np.concatenate([p[0] for p in pieces]), np.concatenate([p[1] for p in pieces])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_each_replicate_equals_frame_metrics_on_the_resampled_frames(seed):
    scores, labels, offsets = videos(9, seed)
    n_boot = 12
    replicates = bootstrap_replicates(scores, labels, offsets, threshold=0.5, n_boot=n_boot, seed=seed)
    assert set(replicates) == set(frame_metric_names())
    draws = np.random.default_rng(seed).integers(0, 9, size=(n_boot, 9))
    checked = 0
    for b in range(n_boot):
        s, y = resampled_frames(scores, labels, offsets, draws[b])
        expected = frame_metrics(s, y, threshold=0.5)
        for name in frame_metric_names():
            got = replicates[name][b]
            if math.isnan(expected[name]):
                assert math.isnan(got), (b, name)
            else:
                assert got == pytest.approx(expected[name], abs=1e-12), (b, name)
                checked += 1
        if 0 < y.sum() < y.size:
            assert replicates["auc"][b] == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert checked > n_boot * 5  # most replicates have both classes, so nearly every value was compared


def test_resample_counts_draw_each_replicate_with_replacement():
    counts = resample_counts(7, 50, seed=3)
    assert counts.shape == (50, 7) and (counts.sum(axis=1) == 7).all()
    draws = np.random.default_rng(3).integers(0, 7, size=(50, 7))
    assert (counts[10] == np.bincount(draws[10], minlength=7)).all()


def test_same_seed_same_intervals_and_another_seed_differs():
    scores, labels, offsets = videos(30, 5)
    a = bootstrap_intervals(scores, labels, offsets, n_boot=200, seed=4)
    b = bootstrap_intervals(scores, labels, offsets, n_boot=200, seed=4)
    c = bootstrap_intervals(scores, labels, offsets, n_boot=200, seed=5)
    assert a == b
    assert a["auc"] != c["auc"]
    assert set(a) == set(frame_metric_names())
    for low, high in a.values():
        assert low <= high


def test_interval_contains_the_point_estimate_and_narrows_with_more_videos():
    small = videos(20, 8)
    large = videos(320, 8)
    widths = []
    for scores, labels, offsets in (small, large):
        point = frame_metrics(scores, labels)
        intervals = bootstrap_intervals(scores, labels, offsets, n_boot=300, seed=0)
        for name in ("auc", "ap", "accuracy"):
            low, high = intervals[name]
            assert low <= point[name] <= high, name
        widths.append(intervals["auc"][1] - intervals["auc"][0])
    # the width shrinks about as 1/sqrt(videos): 16x the videos, roughly a quarter of the width
    assert widths[1] < widths[0] / 2


def test_coverage_of_the_population_auc_is_near_the_nominal_level():
    """Draw 60 test sets from one population; the 80% interval should hold the population AUC in most of them."""
    population = videos(4000, 11)
    truth = frame_metrics(population[0], population[1])["auc"]
    rng = np.random.default_rng(0)
    p_scores, p_labels, p_offsets = population
    hits = 0
    trials = 60
    for _ in range(trials):
        chosen = rng.choice(4000, size=80, replace=False)
        s, y = resampled_frames(p_scores, p_labels, p_offsets, chosen)
        lengths = np.diff(p_offsets)[chosen]
        low, high = bootstrap_intervals(s, y, np.r_[0, np.cumsum(lengths)], n_boot=200, seed=1, level=0.8)["auc"]
        hits += low <= truth <= high
    assert 0.6 <= hits / trials <= 0.97


def test_size_of_the_work_is_bounded_by_chunks(monkeypatch):
    """A timing-free size check: many score levels never allocate more than one chunk of replicates at once."""
    import vad.metrics.intervals as intervals

    scores, labels, offsets = videos(40, 2, repeat=1)
    scores = scores + np.linspace(0, 1e-6, scores.size)  # every frame its own level
    sizes = []
    original = intervals._ranking

    def spy(summary, counts):
        sizes.append(counts.shape[0] * summary.n_levels)
        return original(summary, counts)

    monkeypatch.setattr(intervals, "_CHUNK_ELEMENTS", 20 * scores.size)
    monkeypatch.setattr(intervals, "_ranking", spy)
    result = bootstrap_replicates(scores, labels, offsets, n_boot=101, seed=0)
    assert result["auc"].shape == (101,)
    assert max(sizes) <= 20 * scores.size and len(sizes) == 6


def test_paired_difference_of_identical_scores_is_zero():
    scores, labels, offsets = videos(25, 3)
    assert paired_bootstrap_difference(scores, scores, labels, offsets, metric="auc", n_boot=100, seed=0,
                                       level=0.95) == (0.0, 0.0, 0.0)


def test_paired_difference_sees_a_better_scorer():
    scores, labels, offsets = videos(60, 4)
    better = scores + 0.3 * labels
    difference, low, high = paired_bootstrap_difference(better, scores, labels, offsets, metric="test_auc",
                                                        n_boot=200, seed=0, level=0.95)
    expected = frame_metrics(better, labels)["auc"] - frame_metrics(scores, labels)["auc"]
    assert difference == pytest.approx(expected, abs=1e-12)
    assert 0 < low <= difference <= high


def test_bad_input_is_an_error():
    scores, labels, offsets = videos(5, 0)
    with pytest.raises(ValueError, match="frame_offsets"):
        bootstrap_intervals(scores, labels, offsets[:-1] + 0, n_boot=10)
    with pytest.raises(ValueError, match="unknown frame metric"):
        paired_bootstrap_difference(scores, scores, labels, offsets, metric="val_loss", n_boot=10)
