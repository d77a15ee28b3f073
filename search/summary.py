"""The end of a sweep: the results table (terminal and Markdown), ``summary.json`` and the best config as a YAML
that ``python -m vad.train --config`` runs directly."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from search.naming import short_value, trial_number
from search.outcome import TrialOutcome, error_text, trial_outcome
from search.space import SearchSpace
from search.trainable import objective_key, run_dir
from vad.prepare import SYNTHETIC_PREFIX, resolve_dataset

TEST_COLUMNS = ("auc", "ap", "pr_auc", "f1")
"""Test metrics of the selected checkpoint shown in the table (``selected_<name>`` in the trial's results)."""


@dataclass(frozen=True)
class TrialRow:
    trial_id: str
    number: int
    params: dict[str, Any]
    outcome: TrialOutcome
    objective: float | None
    """The best value of the sweep metric over the trial's epochs (``None`` when none was finite)."""
    selected_test: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "outcome": asdict(self.outcome)}


def collect_rows(trials: list[Any], space: SearchSpace, experiment_dir: str | Path) -> list[TrialRow]:
    """One row per Tune trial (``ExperimentAnalysis(...).trials``)."""
    key = objective_key(space.search.metric)
    rows = []
    for trial in trials:
        last = dict(trial.last_result or {})
        error = None
        if trial.status == "ERROR":
            error = error_text(trial)
        outcome = trial_outcome(run_dir(experiment_dir, trial.trial_id), last, epochs=space.search.epochs,
                                error=error, interrupted=trial.status not in ("TERMINATED", "ERROR"))
        value = last.get(key)
        objective = float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None
        selected = {name: float(last[f"selected_{name}"]) for name in TEST_COLUMNS
                    if isinstance(last.get(f"selected_{name}"), (int, float))}
        params = space.decode({k: trial.config[k] for k in space.params if k in trial.config})
        rows.append(TrialRow(trial.trial_id, trial_number(trial), params, outcome, objective, selected))
    return sorted(rows, key=lambda row: row.number)


def ranked(rows: list[TrialRow], mode: str) -> list[TrialRow]:
    """Rows with a finite objective, best first (ties: earlier trial first), then the others by number."""
    scored = [r for r in rows if r.objective is not None]
    scored.sort(key=lambda r: (r.objective if mode == "min" else -r.objective, r.number))
    return scored + [r for r in rows if r.objective is None]


def results_table(rows: list[TrialRow], space: SearchSpace, *, top: int | None = 10, markdown: bool = False) -> str:
    """The top trials: rank, trial, status, epochs, searched values, best metric, selected test metrics."""
    best = objective_key(space.search.metric)
    header = ["#", "trial", "status", "epochs", *space.params, best, *(f"test {name}" for name in TEST_COLUMNS)]
    lines = []
    ordered = ranked(rows, space.search.mode)
    for rank, row in enumerate(ordered[:top] if top else ordered, start=1):
        status = row.outcome.status + (f" ({row.outcome.stopped_by})" if row.outcome.stopped_by else "")
        lines.append([str(rank), f"t{row.number:03d}", status, str(row.outcome.epochs_run),
                      *(short_value(row.params.get(name)) for name in space.params),
                      _number(row.objective), *(_number(row.selected_test.get(name)) for name in TEST_COLUMNS)])
    if markdown:
        return "\n".join(["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
                         + ["| " + " | ".join(line) + " |" for line in lines])
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *lines)]
    return "\n".join("  ".join(str(cell).ljust(width) for cell, width in zip(line, widths)).rstrip()
                     for line in [header, *lines])


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def counts(rows: list[TrialRow]) -> dict[str, int]:
    """Trials per outcome status."""
    out: dict[str, int] = {}
    for row in rows:
        out[row.outcome.status] = out.get(row.outcome.status, 0) + 1
    return out


def best_config(space: SearchSpace, row: TrialRow) -> dict[str, Any]:
    """The best trial's config for ``python -m vad.train``: the space's base config with the trial's values and
    the sweep's epochs; the dataset as an absolute path (or ``synthetic:<preset>``)."""
    config = space.base.with_overrides({**row.params, "train.epochs": space.search.epochs}).to_dict()
    dataset = config["data"]["dataset"]
    if not dataset.startswith(SYNTHETIC_PREFIX):
        config["data"]["dataset"] = str(resolve_dataset(dataset, space.base.source))
    return config


def write_summary(folder: Path, rows: list[TrialRow], space: SearchSpace, sweep_name: str) -> dict[str, Path]:
    """``summary.md``, ``summary.json`` and (when a trial has a finite metric) ``best_config.yaml`` in
    ``folder``; returns ``{name: path}`` of what was written."""
    folder.mkdir(parents=True, exist_ok=True)
    ordered = ranked(rows, space.search.mode)
    best = ordered[0] if ordered and ordered[0].objective is not None else None
    files = {}
    metric = space.search.metric
    lines = [f"# Sweep {sweep_name}", "", f"Space: `{space.path}`; {len(rows)} trials "
             f"({', '.join(f'{n} {s}' for s, n in sorted(counts(rows).items()))}); metric: best {metric} "
             f"({space.search.mode}); test metrics of each trial's selected checkpoint.", "",
             results_table(rows, space, top=None, markdown=True), ""]
    if best is not None:
        path = folder / "best_config.yaml"
        header = (f"# Best trial of sweep {sweep_name}: t{best.number:03d} (trial {best.trial_id}), "
                  f"best {metric} = {best.objective:.6g}.\n# Run it: python -m vad.train --config {path}\n")
        path.write_text(header + yaml.safe_dump(best_config(space, best), sort_keys=False))
        files["best_config.yaml"] = path
        lines += [f"Best: t{best.number:03d} (trial {best.trial_id}); config: `{path}`", ""]
    (folder / "summary.md").write_text("\n".join(lines))
    files["summary.md"] = folder / "summary.md"
    summary = {"sweep": sweep_name, "space": str(space.path), "metric": metric, "mode": space.search.mode,
               "best_trial_id": best.trial_id if best else None, "counts": counts(rows),
               "trials": [row.to_dict() for row in ordered]}
    (folder / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    files["summary.json"] = folder / "summary.json"
    return files
