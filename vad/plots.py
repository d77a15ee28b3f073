"""Figures as PNG files (matplotlib, headless): predicted scores over time against the ground truth, ROC and
precision-recall curves, learning curves."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402


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
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


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
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_learning_curves(
    path: str | Path,
    panels: Mapping[str, Mapping[str, tuple[Sequence[float], Sequence[float]]]],
    *,
    columns: int = 4,
    ylabel: str = "loss",
) -> Path:
    """Small multiples, one panel per run (``title -> {series name -> (epochs (E,), values (E,))}``), e.g.
    ``train_loss`` against ``val_loss``; every panel uses the same colour per series name."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    count = max(len(panels), 1)
    columns = max(1, min(columns, count))
    rows = math.ceil(count / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.3 * columns, 2.6 * rows), squeeze=False)
    names = list(dict.fromkeys(name for series in panels.values() for name in series))
    colours = {name: f"C{i}" for i, name in enumerate(names)}
    for ax, (title, series) in zip(axes.flat, panels.items()):
        for name, (epochs, values) in series.items():
            ax.plot(epochs, values, marker=".", markersize=3, linewidth=1.2, color=colours[name], label=name)
        ax.set_title(title, fontsize=8)
        ax.set_xlabel("epoch", fontsize=8)
        ax.set_ylabel(ylabel, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    if names:
        handles = [plt.Line2D([], [], color=colours[name], marker=".", label=name) for name in names]
        fig.legend(handles=handles, loc="upper right", fontsize=8, ncols=len(names))
    fig.tight_layout(rect=(0, 0, 1, 0.94 if rows == 1 else 0.97))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
