"""The end of a sweep: the results table (terminal and Markdown), ``summary.json`` and the best config as a YAML
that ``python -m vad.train --config`` runs directly.

The table shows what chose the trials: the ranking metric (its value at each trial's selected checkpoint) and the
validation metrics of that checkpoint. Test metrics appear only when asked for (``--show-test``), under a caption
saying that they were not used for choosing (or, in a diagnostic sweep ranked on a test metric, that the ranking is
test-selected)."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from search.sweep.naming import short_value, trial_number
from search.sweep.outcome import TrialOutcome, error_text, trial_outcome
from search.sweep.space import SearchSpace
from search.sweep.trainable import objective_key, run_dir
from vad.metrics.catalogue import CATALOGUE, frame_metric_names
from vad.prepare import SYNTHETIC_PREFIX, resolve_dataset

VAL_COLUMNS = tuple(name for name, metric in CATALOGUE.items() if metric.source == "val")
"""Validation metrics of each trial's selected checkpoint (the data that may choose)."""
TEST_COLUMNS = frame_metric_names()
"""Test metrics of the selected checkpoint (``selected_<name>`` in the trial's results), shown with ``show_test``."""


@dataclass(frozen=True)
class TrialRow:
    trial_id: str
    number: int
    params: dict[str, Any]
    outcome: TrialOutcome
    objective: float | None
    """The sweep metric at the trial's selected checkpoint, what it is ranked by (``None`` when none was finite)."""
    selected_test: dict[str, float]
    selected_val: dict[str, float] = field(default_factory=dict)
    """The validation metrics of the epoch of the selected checkpoint."""

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
        chosen = epoch_result(trial, outcome.selected_epoch)
        validation = {name: float(chosen[name]) for name in VAL_COLUMNS if _finite(chosen.get(name))}
        params = space.decode({k: trial.config[k] for k in space.params if k in trial.config})
        rows.append(TrialRow(trial.trial_id, trial_number(trial), params, outcome, objective, selected, validation))
    return sorted(rows, key=lambda row: row.number)


def epoch_result(trial: Any, epoch: int | None) -> dict[str, Any]:
    """The result a trial reported at ``epoch`` (from Tune's per-trial ``result.json``, one JSON result per line;
    its last result when that is the epoch); ``{}`` when unknown."""
    if not epoch:
        return {}
    last = dict(getattr(trial, "last_result", None) or {})
    if last.get("epoch") == epoch:
        return last
    for folder in (getattr(trial, "local_path", None), getattr(trial, "path", None)):
        results = Path(folder or "") / "result.json"
        if folder and results.is_file():
            for line in results.read_text().splitlines():
                if line.strip():
                    result = json.loads(line)
                    if result.get("epoch") == epoch:
                        return result
            return {}
    return {}


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def ranked(rows: list[TrialRow], mode: str) -> list[TrialRow]:
    """Rows with a finite objective, best first (ties: earlier trial first), then the others by number."""
    scored = [r for r in rows if r.objective is not None]
    scored.sort(key=lambda r: (r.objective if mode == "min" else -r.objective, r.number))
    return scored + [r for r in rows if r.objective is None]


def table_caption(space: SearchSpace, *, show_test: bool = False) -> str:
    """What the table ranks by and, with ``show_test``, what its test columns are (and are not)."""
    metric = space.search.metric
    text = (f"ranked by {metric} ({space.search.mode}) at each trial's selected checkpoint (chosen by {metric}); "
            f"validation metrics of that checkpoint")
    if space.search.uses_test_data:
        text += (f". PROTOCOL: TEST-SELECTED: {metric} is measured on the test set, so these trials and "
                 f"checkpoints were chosen with test data (a diagnostic, not an honest estimate)")
    if show_test:
        text += (". Test metrics of the selected checkpoint (test ...): shown for information, NOT used for "
                 "choosing" + (" (except the ranking metric)" if space.search.uses_test_data else ""))
    return text


def results_table(rows: list[TrialRow], space: SearchSpace, *, top: int | None = 10, markdown: bool = False,
                  show_test: bool = False) -> str:
    """The top trials: rank, trial, status, epochs, searched values, the ranking metric, the validation metrics
    of the selected checkpoint and, with ``show_test``, its test metrics (see :func:`table_caption`)."""
    best = objective_key(space.search.metric)
    validation = [name for name in VAL_COLUMNS if name != space.search.metric]
    tests = list(TEST_COLUMNS) if show_test else []
    header = ["#", "trial", "status", "epochs", *space.params, best, *validation,
              *(f"test {name}" for name in tests)]
    lines = []
    ordered = ranked(rows, space.search.mode)
    for rank, row in enumerate(ordered[:top] if top else ordered, start=1):
        status = row.outcome.status + (f" ({row.outcome.stopped_by})" if row.outcome.stopped_by else "")
        lines.append([str(rank), f"t{row.number:03d}", status, str(row.outcome.epochs_run),
                      *(short_value(row.params.get(name)) for name in space.params),
                      _number(row.objective), *(_number(row.selected_val.get(name)) for name in validation),
                      *(_number(row.selected_test.get(name)) for name in tests)])
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
    """The best trial's config for ``python -m vad.train``: the space's base config with the trial's values, the
    sweep's epochs and its selection (metric, rule, reference loss); the dataset as an absolute path (or
    ``synthetic:<preset>``)."""
    config = space.base.with_overrides({**row.params, "train.epochs": space.search.epochs,
                                        **space.selection_overrides()}).to_dict()
    dataset = config["data"]["dataset"]
    if not dataset.startswith(SYNTHETIC_PREFIX):
        config["data"]["dataset"] = str(resolve_dataset(dataset, space.base.source))
    return config


def write_summary(folder: Path, rows: list[TrialRow], space: SearchSpace, sweep_name: str, *,
                  show_test: bool = False) -> dict[str, Path]:
    """``summary.md``, ``summary.json`` and (when a trial has a finite metric) ``best_config.yaml`` in
    ``folder``; returns ``{name: path}`` of what was written. ``show_test`` adds the test columns to the table."""
    folder.mkdir(parents=True, exist_ok=True)
    ordered = ranked(rows, space.search.mode)
    best = ordered[0] if ordered and ordered[0].objective is not None else None
    files = {}
    metric = space.search.metric
    lines = [f"# Sweep {sweep_name}", "", f"Space: `{space.path}`; {len(rows)} trials "
             f"({', '.join(f'{n} {s}' for s, n in sorted(counts(rows).items()))}); "
             f"{table_caption(space, show_test=show_test)}.", "",
             results_table(rows, space, top=None, markdown=True, show_test=show_test), ""]
    if best is not None:
        path = folder / "best_config.yaml"
        header = (f"# Best trial of sweep {sweep_name}: t{best.number:03d} (trial {best.trial_id}), "
                  f"{metric} at its selected checkpoint = {best.objective:.6g}"
                  + (" (PROTOCOL: TEST-SELECTED)" if space.search.uses_test_data else "")
                  + f".\n# Run it: python -m vad.train --config {path}\n")
        path.write_text(header + yaml.safe_dump(best_config(space, best), sort_keys=False))
        files["best_config.yaml"] = path
        lines += [f"Best: t{best.number:03d} (trial {best.trial_id}); config: `{path}`", ""]
    (folder / "summary.md").write_text("\n".join(lines))
    files["summary.md"] = folder / "summary.md"
    summary = {"sweep": sweep_name, "space": str(space.path), "metric": metric, "mode": space.search.mode,
               **space.protocol,
               "best_trial_id": best.trial_id if best else None, "counts": counts(rows),
               "trials": [row.to_dict() for row in ordered]}
    (folder / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    files["summary.json"] = folder / "summary.json"
    return files
