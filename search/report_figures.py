"""The figures of a sweep report, from MLflow runs and the dataset's test ground truth: per-video scores over time
against the ground truth (the study's qualitative figure), ROC and precision-recall curves, learning curves."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from search.report_data import TrackedRun
from vad.data import DatasetConfig, FeatureDataset, GroundTruth, load_dataset, load_ground_truth, load_test_features
from vad.evaluate import plot_scores
from vad.evaluation import TestScores
from vad.metrics import expand_to_frames
from vad.plots import plot_learning_curves, plot_roc_pr
from vad.prepare import resolve_dataset

SCORES_ARTIFACT = "scores/scores.npz"


@dataclass(frozen=True)
class TestTruth:
    """A dataset's test videos and frame ground truth (the two attributes of ``PreparedData`` that
    :func:`vad.evaluate.plot_scores` reads), without the training cache a full preparation builds."""

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


def panel_title(run: TrackedRun, marks: dict[str, str]) -> str:
    """``t006 (val pick)`` over ``lr=0.001 wd=0.006``: the trial, its marks and its searched values (the run
    name's tail)."""
    values = run.name.partition(" ")[2]
    suffix = f" ({marks[run.run_id]})" if run.run_id in marks else ""
    stopped = " [ASHA]" if run.tags.get("stopped_by") == "asha" else ""
    selected = f", selected epoch {run.tags['selected_epoch']}" if run.tags.get("selected_epoch") else ""
    head = f"{run.label}{stopped}{suffix}"
    return head + selected if values == run.label else f"{head}\n{values}"


def learning_curves_figure(path: Path, runs: Sequence[TrackedRun], marks: dict[str, str],
                           series: Sequence[str] = ("train_loss", "val_loss")) -> Path | None:
    """Train against validation loss per epoch, one panel per run (``None`` when no run logged them)."""
    panels = {}
    for run in runs:
        curves = {}
        for key in series:
            history = run.history(key)
            if history:
                curves[key] = (list(history), list(history.values()))
        if curves:
            panels[panel_title(run, marks)] = curves
    if not panels:
        return None
    return plot_learning_curves(path, panels, columns=4)
