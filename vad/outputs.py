"""What an evaluation leaves behind: the reference study's table row (Markdown, columns from the metric
catalogue), ``metrics.json``, ``scores.npz`` and a PNG of chosen videos."""

from __future__ import annotations

from pathlib import Path

from vad.atomic import atomic_write_json
from vad.metrics.catalogue import get_metric, table_columns
from vad.plots import plot_scores
from vad.prepare import PreparedData
from vad.scoring import TestScores


def format_table(rows: dict[str, dict[str, float]], intervals: dict[str, dict[str, tuple[float, float]]] | None = None
                 ) -> str:
    """A Markdown table of the study's columns (percent metrics x100), one row per named result; with
    ``intervals[name][column] = (low, high)`` a cell reads ``value [low, high]``."""
    columns = table_columns()
    lines = ["| Model | " + " | ".join(get_metric(c).column() for c in columns) + " |",
             "|---" * (len(columns) + 1) + "|"]
    for name, metrics in rows.items():
        bounds = (intervals or {}).get(name, {})
        cells = []
        for column in columns:
            metric = get_metric(column)
            cell = metric.format(metrics.get(column))
            if column in bounds and cell != "-":
                low, high = bounds[column]
                cell += f" [{metric.format(low)}, {metric.format(high)}]"
            cells.append(cell)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_outputs(out: Path, name: str, metrics: dict[str, float], scores: TestScores, prepared: PreparedData,
                  *, videos: list[str] | None, n_plot: int, threshold: float) -> list[Path]:
    """``metrics.json``, ``scores.npz``, ``scores.png`` and ``scores.pdf`` under ``out``; returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    written = [atomic_write_json(out / "metrics.json", metrics), scores.save(out / "scores.npz")]
    written.append(plot_scores(out / "scores.png", scores, prepared, videos=videos, count=n_plot,
                               threshold=threshold))
    written.append(written[-1].with_suffix(".pdf"))  # the figure's PDF, beside its PNG (vad.plots.save_figure)
    return written
