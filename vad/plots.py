"""Figures as PNG files (matplotlib, headless): predicted scores over time against the ground truth."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


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
