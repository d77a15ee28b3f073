"""Figures ready for a paper (matplotlib, headless): each saved as a 300 dpi PNG and, beside it, a PDF (vector,
what ``report.tex`` includes): predicted scores over time against the ground truth, ROC and precision-recall curves,
learning curves."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from vad.metrics import expand_to_frames  # noqa: E402

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from vad.prepare import PreparedData
    from vad.scoring import TestScores

DPI = 300
"""Resolution of every PNG (print quality); the PDF beside it is vector."""


def save_figure(fig: Figure, path: str | Path) -> Path:
    """``fig`` as ``path`` (a PNG at :data:`DPI`) and as the PDF beside it (same name, ``.pdf``); closes ``fig``
    and returns the PNG's path."""
    path = Path(path).with_suffix(".png")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    fig.savefig(path.with_suffix(".pdf"))
    plt.close(fig)
    return path


def pick_videos(video_ids: Sequence[str], labels: Sequence[int], count: int) -> list[int]:
    """Indices of ``count`` videos to show: abnormal and normal alternately, in list order."""
    abnormal = [i for i, y in enumerate(labels) if y == 1]
    normal = [i for i, y in enumerate(labels) if y == 0]
    chosen: list[int] = []
    while len(chosen) < count and (abnormal or normal):
        for pool in (abnormal, normal):
            if pool and len(chosen) < count:
                chosen.append(pool.pop(0))
    return chosen


def plot_video_scores(
    path: str | Path,
    titles: Sequence[str],
    frame_scores: Sequence[np.ndarray],
    frame_labels: Sequence[np.ndarray],
    *,
    threshold: float | None = 0.5,
) -> Path:
    """The study's qualitative figure: per video, predicted frame scores ``(F_i,)`` over time with the
    ground-truth anomalous frames ``(F_i,)`` shaded; one row per video."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = max(len(titles), 1)
    fig, axes = plt.subplots(rows, 1, figsize=(9, 2.2 * rows), squeeze=False)
    for ax, title, scores, labels in zip(axes[:, 0], titles, frame_scores, frame_labels):
        frames = np.arange(len(scores))
        ax.fill_between(frames, 0, 1, where=np.asarray(labels) > 0, color="tab:red", alpha=0.2, step="mid",
                        label="ground truth anomaly")
        ax.plot(frames, scores, color="tab:blue", linewidth=1.2, label="predicted score")
        if threshold is not None:
            ax.axhline(threshold, color="grey", linestyle=":", linewidth=0.8)
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlim(0, max(len(scores) - 1, 1))
        ax.set_title(title, fontsize=9)
        ax.set_ylabel("score")
    axes[-1, 0].set_xlabel("frame")
    axes[0, 0].legend(loc="upper right", fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path)


def _thin(x: np.ndarray, y: np.ndarray, points: int = 4000) -> tuple[np.ndarray, np.ndarray]:
    """At most ``points`` evenly spread points of a curve (a million-frame PR curve draws the same)."""
    if len(x) <= points:
        return x, y
    keep = np.unique(np.linspace(0, len(x) - 1, points).round().astype(int))
    return x[keep], y[keep]


def plot_roc_pr(path: str | Path, curves: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> Path:
    """ROC (left) and precision-recall (right) curves, one line per entry ``label -> (frame scores (F,), 0/1
    frame labels (F,))``; the legend gives each curve's AUC and AP."""
    from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score, roc_curve

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, (roc_ax, pr_ax) = plt.subplots(1, 2, figsize=(10, 4.2))
    for label, (scores, labels) in curves.items():
        scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels).astype(int)
        if len(scores) != len(labels):
            raise ValueError(f"plot_roc_pr: {label}: {len(scores)} scores but {len(labels)} labels")
        if labels.min(initial=1) == labels.max(initial=0):
            raise ValueError(f"plot_roc_pr: {label}: the labels hold one class only; no curve is defined")
        fpr, tpr, _ = roc_curve(labels, scores)
        roc_ax.plot(*_thin(fpr, tpr), linewidth=1.3, label=f"{label} (AUC {100 * roc_auc_score(labels, scores):.1f})")
        precision, recall, _ = precision_recall_curve(labels, scores)
        pr_ax.plot(*_thin(recall, precision), linewidth=1.3,
                   label=f"{label} (AP {100 * average_precision_score(labels, scores):.1f})")
        prevalence = labels.mean()
    roc_ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=0.8)
    roc_ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC (frame level)",
               xlim=(0, 1), ylim=(0, 1.01))
    if curves:
        pr_ax.axhline(prevalence, color="grey", linestyle=":", linewidth=0.8)
    pr_ax.set(xlabel="recall", ylabel="precision", title="Precision-recall (frame level)", xlim=(0, 1),
              ylim=(0, 1.01))
    for ax in (roc_ax, pr_ax):
        ax.legend(loc="lower right" if ax is roc_ax else "upper right", fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return save_figure(fig, path)


@dataclass(frozen=True)
class Curves:
    """One run's per-epoch series for :func:`plot_learning_curves`."""

    label: str
    """Legend entry, e.g. ``t006 (val pick)`` or ``t001 (paper defaults)``."""
    series: Mapping[str, tuple[Sequence[float], Sequence[float]]] = field(default_factory=dict)
    """``series name -> (epochs (E,), values (E,))``."""
    selected_epoch: int | None = None
    """The epoch of the run's selected checkpoint: marked with a star on every panel."""
    stopped: bool = False
    """Stopped before the budget (e.g. by ASHA): its last point is marked with a cross."""


def plot_learning_curves(
    path: str | Path,
    runs: Sequence[Curves],
    *,
    rows: Sequence[Sequence[str]] = (("train_loss", "val_loss"),),
    epochs: int | None = None,
    ylabels: Sequence[str] | None = None,
    title: str | None = None,
) -> Path:
    """Learning curves of a few runs, one panel per series (``rows``: the series of each row of panels; the panels
    of a row share their y axis), every run a line of the same colour in every panel, over the whole epoch budget
    ``epochs`` (default: the longest run) so that runs stopped early show where they were cut; each run's selected
    epoch is a star, the last epoch of a stopped run a cross. Saved as PNG and PDF (:func:`save_figure`)."""
    rows = [list(row) for row in rows if row]
    if not rows:
        raise ValueError("plot_learning_curves: no series to draw")
    longest = max((max(e) for run in runs for e, _ in run.series.values() if len(e)), default=1)
    budget = max(int(epochs or 0), int(longest))
    columns = max(len(row) for row in rows)
    fig, axes = plt.subplots(len(rows), columns, figsize=(4.2 * columns, 3.0 * len(rows) + 0.9), squeeze=False,
                             sharey="row")
    for r, row in enumerate(rows):
        for c in range(columns):
            ax = axes[r, c]
            if c >= len(row):
                ax.set_visible(False)
                continue
            name = row[c]
            for i, run in enumerate(runs):
                if name not in run.series:
                    continue
                xs, ys = (np.asarray(v, dtype=float) for v in run.series[name])
                ax.plot(xs, ys, color=f"C{i % 10}", linewidth=1.3, marker=".", markersize=3)
                if run.selected_epoch is not None and run.selected_epoch in xs:
                    at = int(np.flatnonzero(xs == run.selected_epoch)[0])
                    ax.plot(xs[at], ys[at], marker="*", markersize=10, color=f"C{i % 10}", markeredgecolor="black",
                            markeredgewidth=0.5, linestyle="none")
                if run.stopped and len(xs) and xs[-1] < budget:
                    ax.plot(xs[-1], ys[-1], marker="x", markersize=7, color=f"C{i % 10}", linestyle="none")
            ax.set_title(name, fontsize=9)
            ax.set_xlim(0.5, budget + 0.5)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
            if r == len(rows) - 1:
                ax.set_xlabel("epoch", fontsize=8)
            if c == 0:
                ax.set_ylabel(ylabels[r] if ylabels and r < len(ylabels) else ", ".join(row), fontsize=8)
    handles = [plt.Line2D([], [], color=f"C{i % 10}", marker=".", label=run.label) for i, run in enumerate(runs)]
    handles += [plt.Line2D([], [], color="grey", marker="*", markersize=9, linestyle="none", label="selected epoch"),
                plt.Line2D([], [], color="grey", marker="x", linestyle="none", label="stopped early")]
    fig.legend(handles=handles, loc="lower center", fontsize=7, ncols=min(len(handles), 4), frameon=False)
    if title:
        fig.suptitle(title, fontsize=10)
    legend_inches = 0.2 * -(-len(handles) // 4) + 0.1
    height = fig.get_size_inches()[1]
    fig.tight_layout(rect=(0, min(0.45, legend_inches / height), 1, 1 - 0.35 / height if title else 1))
    return save_figure(fig, path)


def plot_scores(path: Path, scores: TestScores, prepared: PreparedData, *, videos: list[str] | None = None,
                count: int = 2, threshold: float = 0.5) -> Path:
    """Plot chosen test videos (by id; default: ``count`` videos, abnormal and normal alternately).

    ``prepared`` needs only ``ground_truth`` and ``dataset`` (a :class:`~vad.prepare.PreparedData` or anything
    with those two attributes)."""
    if videos:
        unknown = sorted(set(videos) - set(scores.video_ids))
        if unknown:
            raise ValueError(f"--videos: not in the test set: {', '.join(unknown)}")
        chosen = [scores.video_ids.index(v) for v in videos]
    else:
        chosen = pick_videos(scores.video_ids, list(scores.labels), count)
    gt = prepared.ground_truth
    per_snippet = prepared.dataset.config.frames_per_snippet
    frames = [expand_to_frames([scores.scores[i]], [gt.frame_lengths[i]], per_snippet) for i in chosen]
    titles = [f"{scores.video_ids[i]} ({'abnormal' if scores.labels[i] else 'normal'})" for i in chosen]
    return plot_video_scores(path, titles, frames, [gt.video(i) for i in chosen], threshold=threshold)
