"""The figures of a sweep report, from MLflow runs and the dataset's test ground truth: per-video scores over time
against the ground truth (the study's qualitative figure), ROC and precision-recall curves, learning curves of the
top trials; each a 300 dpi PNG with a PDF beside it (:func:`vad.plots.save_figure`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from search.reporting.data import TrackedRun
from vad.data import DatasetConfig, FeatureDataset, GroundTruth, load_dataset, load_ground_truth, load_test_features
from vad.metrics import expand_to_frames
from vad.plots import Curves, plot_learning_curves, plot_roc_pr, plot_scores
from vad.prepare import resolve_dataset
from vad.scoring import TestScores

SCORES_ARTIFACT = "scores/scores.npz"
CURVES_TOP = 6
"""Trials in the learning-curves figure by default (the best by the sweep metric), plus the paper defaults."""
LOSS_SERIES = ("train_loss", "val_loss")


@dataclass(frozen=True)
class TestTruth:
    """A dataset's test videos and frame ground truth (the two attributes of ``PreparedData`` that
    :func:`vad.plots.plot_scores` reads), without the training cache a full preparation builds."""

    dataset: FeatureDataset
    ground_truth: GroundTruth

    @property
    def layout(self) -> str:
        return self.dataset.config.layout


def dataset_layout(spec: str) -> str:
    """``ucf`` or ``xd``: the layout of ``data.dataset`` (read from its ``dataset.yaml``)."""
    return DatasetConfig.from_yaml(resolve_dataset(spec)).layout


def load_truth(spec: str) -> TestTruth:
    """The test ground truth of ``data.dataset`` (``synthetic:<preset>`` or a ``dataset.yaml`` path)."""
    dataset = load_dataset(resolve_dataset(spec))
    test = load_test_features(dataset)
    return TestTruth(dataset, load_ground_truth(dataset, test.lengths))


def run_scores(run: TrackedRun, folder: Path) -> TestScores | None:
    """The per-video test scores of the run's selected checkpoint (its ``scores/scores.npz`` artifact)."""
    path = run.download(SCORES_ARTIFACT, folder / run.run_id)
    return TestScores.load(path) if path is not None else None


def frame_scores(scores: TestScores, truth: TestTruth, source: str) -> np.ndarray:
    """``(F,)`` frame scores aligned with ``truth.ground_truth.labels``; the videos must be the test list's."""
    if list(scores.video_ids) != list(truth.ground_truth.video_ids):
        raise ValueError(f"{source}: its {len(scores.video_ids)} videos are not the test list of "
                         f"{truth.dataset.config.name} ({len(truth.ground_truth.video_ids)} videos, in order)")
    return expand_to_frames(scores.scores, truth.ground_truth.frame_lengths,
                            truth.dataset.config.frames_per_snippet)


def threshold_of(run: TrackedRun) -> float:
    try:
        return float(run.params.get("train.threshold", 0.5))
    except ValueError:
        return 0.5


def scores_figure(path: Path, run: TrackedRun, scores: TestScores, truth: TestTruth, count: int) -> Path:
    """``count`` test videos (abnormal and normal alternately): predicted frame scores against the ground truth."""
    frame_scores(scores, truth, f"{run.name}: {SCORES_ARTIFACT}")  # same videos, same order
    return plot_scores(path, scores, truth, count=count, threshold=threshold_of(run))  # type: ignore[arg-type]


def roc_pr_figure(path: Path, curves: dict[str, TestScores], truth: TestTruth) -> Path:
    """Frame-level ROC and precision-recall curves of each named checkpoint's test scores."""
    labels = truth.ground_truth.labels
    return plot_roc_pr(path, {name: (frame_scores(scores, truth, name), labels) for name, scores in curves.items()})


def curve_label(run: TrackedRun, marks: dict[str, str]) -> str:
    """``t006 (val pick)``: the trial and its marks (``paper defaults``, ``test-selected pick``, ...)."""
    suffix = f" ({marks[run.run_id]})" if run.run_id in marks else ""
    return f"{run.label}{suffix}"


def epoch_budget(runs: Sequence[TrackedRun]) -> int | None:
    """The runs' ``train.epochs`` (the largest; ``None`` when none logged it)."""
    budgets = [int(float(run.params["train.epochs"])) for run in runs
               if run.params.get("train.epochs", "").replace(".", "", 1).isdigit()]
    return max(budgets, default=None)


def top_runs(runs: Sequence[TrackedRun], metric: str, mode: str, top: int) -> list[TrackedRun]:
    """The ``top`` runs by their best value of ``metric`` over the epochs, best first (failed runs after the
    others: like the val protocol, which never picks them), and the paper defaults' run (tag ``baseline=true``)
    after them when it is not among them; at most ``top + 1`` runs."""
    scored = [(value, i, run) for i, run in enumerate(runs) if (value := run.best(metric, mode)) is not None]
    scored.sort(key=lambda item: (item[2].status == "FAILED", item[0] if mode == "min" else -item[0], item[1]))
    chosen = [run for _, _, run in scored[:max(top, 0)]]
    baseline = next((run for run in runs if run.tags.get("baseline") == "true"), None)
    if baseline is not None and all(run.run_id != baseline.run_id for run in chosen):
        chosen.append(baseline)
    return chosen


def learning_curves_figure(path: Path, runs: Sequence[TrackedRun], marks: dict[str, str], *, metric: str,
                           mode: str, top: int = CURVES_TOP, title: str | None = None) -> Path | None:
    """Train and validation loss (one row, shared y axis) and, when the ranking ``metric`` is not one of them, its
    values in a second row, of the ``top`` runs by ``metric`` plus the paper defaults, over the full epoch budget
    with each run's selected epoch marked (``None`` when no run logged a loss)."""
    rows = [LOSS_SERIES] + ([] if metric in LOSS_SERIES else [(metric,)])
    curves = []
    for run in top_runs(runs, metric, mode, top):
        series = {}
        for key in [name for row in rows for name in row]:
            history = run.history(key)
            if history:
                series[key] = (list(history), list(history.values()))
        selected = run.tags.get("selected_epoch", "")
        curves.append(Curves(curve_label(run, marks), series, int(selected) if selected.isdigit() else None,
                             stopped=run.tags.get("stopped_by") == "asha"))
    if not any(key in c.series for c in curves for key in LOSS_SERIES):
        return None
    return plot_learning_curves(path, curves, rows=rows, epochs=epoch_budget(runs), title=title,
                                ylabels=["loss", metric])
