"""A sweep as MLflow holds it, read back for reports (nothing outside MLflow is read).

``load_sweep`` finds the sweep's experiment (named after the sweep, or given by name or id), its parent run
(``run_type=sweep``), its own trial runs (child runs without a ``group`` tag) and the groups logged under the same
parent (``group=retrain``: the seeds of ``search.retrain``, one group per ``retrain`` tag). An experiment without
a parent run is read as a flat list of trial runs. Metric histories and artifacts are fetched when asked for.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from search.space import METRIC_MODES
from search.tracking import GROUP, RUN_TYPE

RETRAIN = "retrain"
"""Value of the ``group`` tag of retrained seeds; their ``retrain`` tag names the retrain."""


class ReportError(RuntimeError):
    """A sweep or experiment that cannot be reported (not found, no runs)."""


@dataclass
class TrackedRun:
    """One MLflow run: tags, params (text, as MLflow holds them), latest metric values; histories on demand."""

    run_id: str
    name: str
    status: str
    tags: dict[str, str]
    params: dict[str, str]
    metrics: dict[str, float]
    client: MlflowClient = field(repr=False, compare=False)
    _histories: dict[str, dict[int, float]] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_run(cls, run: Any, client: MlflowClient) -> TrackedRun:
        return cls(run.info.run_id, run.info.run_name or run.info.run_id, run.info.status, dict(run.data.tags),
                   dict(run.data.params), dict(run.data.metrics), client)

    @property
    def number(self) -> int:
        """The trial number (``trial_number`` tag; 0 when absent)."""
        value = self.tags.get("trial_number", "")
        return int(value) if value.isdigit() else 0

    @property
    def label(self) -> str:
        """``t003`` for a sweep trial, ``seed=2`` for a retrained seed, else the run name."""
        if self.tags.get(GROUP) == RETRAIN and "seed" in self.tags:
            return f"seed={self.tags['seed']}"
        return f"t{self.number:03d}" if self.number else self.name

    def history(self, key: str) -> dict[int, float]:
        """``{epoch: value}`` of a per-epoch metric (the last value logged at each step; empty when never
        logged)."""
        if key not in self._histories:
            points: dict[int, tuple[int, float]] = {}
            if key in self.metrics:
                for metric in self.client.get_metric_history(self.run_id, key):
                    if metric.step not in points or metric.timestamp >= points[metric.step][0]:
                        points[metric.step] = (metric.timestamp, metric.value)
            self._histories[key] = {step: value for step, (_, value) in sorted(points.items())}
        return self._histories[key]

    def best(self, key: str, mode: str) -> float | None:
        """The best finite value of ``key`` over the epochs (``None`` when there is none)."""
        values = [v for v in self.history(key).values() if math.isfinite(v)]
        if not values:
            return None
        return min(values) if mode == "min" else max(values)

    def download(self, artifact_path: str, folder: Path) -> Path | None:
        """The artifact downloaded into ``folder`` (``None`` when the run has no such artifact)."""
        folder.mkdir(parents=True, exist_ok=True)
        try:
            return Path(self.client.download_artifacts(self.run_id, artifact_path, str(folder)))
        except (MlflowException, OSError):
            return None


@dataclass
class TrackedSweep:
    """A sweep's parent run, its trials and its retrained seed groups."""

    name: str
    experiment_id: str
    tracking_uri: str
    parent: TrackedRun | None
    trials: list[TrackedRun]
    groups: dict[str, list[TrackedRun]]
    metric: str
    mode: str

    @property
    def model(self) -> str:
        return _first_of("model", "model.name", self.parent, self.trials) or "model"

    @property
    def dataset(self) -> str:
        return _first_of("dataset", "data.dataset", self.parent, self.trials) or "dataset"

    @property
    def dataset_spec(self) -> str | None:
        """``data.dataset`` of the trials (``synthetic:<preset>`` or the absolute ``dataset.yaml`` path)."""
        for run in self.trials + [r for runs in self.groups.values() for r in runs]:
            if run.params.get("data.dataset"):
                return run.params["data.dataset"]
        return None


def _first_of(tag: str, param: str, parent: TrackedRun | None, runs: list[TrackedRun]) -> str | None:
    if parent is not None and parent.tags.get(tag):
        return parent.tags[tag]
    for run in runs:
        if run.tags.get(tag):
            return run.tags[tag]
        if run.params.get(param):
            return run.params[param]
    return None


def find_experiment(client: MlflowClient, name: str, *, by_id: bool = False) -> Any:
    """The experiment named ``name`` (or, ``by_id``, with that id or name); a clear error when there is none."""
    experiment = client.get_experiment_by_name(name)
    if experiment is None and by_id:
        try:
            experiment = client.get_experiment(name)
        except MlflowException:
            experiment = None
    if experiment is None:
        known = sorted(e.name for e in client.search_experiments())
        raise ReportError(f"no MLflow experiment {name!r} in {client.tracking_uri} (known: "
                          f"{', '.join(known[:20]) or 'none'}); pass --tracking-uri as for search.run")
    return experiment


def load_sweep(client: MlflowClient, name: str, *, by_id: bool = False, metric: str | None = None) -> TrackedSweep:
    """Read a sweep (``name`` = its experiment name, or an experiment id with ``by_id``). ``metric`` overrides the
    selection metric (default: the sweep's ``search.metric``; ``val_loss`` for an experiment without a parent)."""
    experiment = find_experiment(client, name, by_id=by_id)
    runs = [TrackedRun.from_run(run, client)
            for run in client.search_runs([experiment.experiment_id], max_results=50000)]
    parents = [run for run in runs if run.tags.get(RUN_TYPE) == "sweep"]
    parent = parents[0] if parents else None
    if len(parents) > 1:
        raise ReportError(f"experiment {experiment.name!r} holds {len(parents)} sweep parent runs; expected one")
    trials, groups = [], {}
    for run in runs:
        if run is parent or (parent is not None and run.tags.get("mlflow.parentRunId") != parent.run_id):
            continue
        if run.tags.get(GROUP) == RETRAIN:
            groups.setdefault(run.tags.get(RETRAIN, RETRAIN), []).append(run)
        elif GROUP not in run.tags:
            trials.append(run)
    if not trials:
        raise ReportError(f"experiment {experiment.name!r} in {client.tracking_uri} holds no trial runs")
    metric = metric or (parent.params.get("search.metric") if parent else None) or "val_loss"
    mode = METRIC_MODES.get(metric) or (parent.params.get("search.mode") if parent else None) or "min"
    return TrackedSweep(experiment.name, experiment.experiment_id, client.tracking_uri, parent,
                        sorted(trials, key=lambda run: (run.number, run.name)),
                        {name: sorted(runs, key=_seed_order) for name, runs in sorted(groups.items())}, metric, mode)


def _seed_order(run: TrackedRun) -> tuple[int, str]:
    seed = run.tags.get("seed", "")
    return (int(seed) if seed.lstrip("-").isdigit() else 0, run.name)
