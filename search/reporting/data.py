"""A sweep as MLflow holds it, read back for reports (nothing outside MLflow is read). The only module that reads
MLflow (:mod:`search.sweep.tracking` is the only one that writes it).

``load_sweep`` finds the sweep's experiment (named after the sweep, or given by name or id), its parent run
(``run_type=sweep``), its own trial runs (child runs without a ``group`` tag, or ``group=search``) and the seed
groups logged under the same parent (``group=retrain``: the seeds of ``search.retrain``, one group per ``retrain``
tag; ``group=confirm``: the seed confirmation, one group per confirmed configuration). An experiment without a
parent run is read as a flat list of trial runs. Metric histories and artifacts are fetched when asked for.

Which data chose what is read from the tags ``search.run`` writes (``checkpoint_chosen_by``, ``trial_chosen_by``
on child runs, ``protocol=test-selected`` on a diagnostic sweep's parent) and, for runs logged before those tags,
from the catalogue's source of the metric named by ``train.selection`` / ``search.metric``
(:func:`uses_test_data`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from search.sweep.tracking import GROUP, RUN_TYPE, find_parent_run
from vad.metrics.catalogue import get_metric

RETRAIN = "retrain"
"""Value of the ``group`` tag of retrained seeds; their ``retrain`` tag names the retrain."""
CONFIRM = "confirm"
"""Value of the ``group`` tag of the seed confirmation's runs (one seed group per confirmed configuration)."""
SEARCH = "search"
"""Value of the ``group`` tag of a sweep's own trials (older sweeps leave them untagged)."""
SEED_GROUPS = (RETRAIN, CONFIRM)
CONFIRM_KEYS = ("confirm_of_trial", "confirm_rank", "confirm_of")
"""Tags that may name a confirmed configuration (the first present one is used)."""
ALIASES = {"val_ref_loss": "val_loss"}
"""Per-epoch metrics older runs lack, and the one that equals them there (``val_ref_loss`` before it was logged)."""
TEST_SELECTED = "test-selected"
"""Value of a diagnostic sweep's parent tag ``protocol``, and the label of every row chosen with test data."""


def uses_test_data(metric: str | None) -> bool:
    """Whether choosing with ``metric`` uses the test set (its catalogue source; an uncatalogued ``test_*`` or
    ``selected_*`` name counts as test data too)."""
    if not metric:
        return False
    try:
        return get_metric(metric).uses_test_data
    except KeyError:
        return metric.startswith(("test_", "selected_"))


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
        if self.tags.get(GROUP) in SEED_GROUPS and "seed" in self.tags:
            return f"seed={self.tags['seed']}"
        return f"t{self.number:03d}" if self.number else self.name

    def history(self, key: str) -> dict[int, float]:
        """``{epoch: value}`` of a per-epoch metric (the last value logged at each step; empty when never
        logged). ``val_ref_loss`` falls back to ``val_loss`` for runs logged without it (runs of `vad.train` alone,
        or of sweeps that predate it), where the run's own loss is the reference."""
        if key in ALIASES and key not in self.metrics and key not in self._histories:
            return self.history(ALIASES[key])
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

    @property
    def test_steered(self) -> str | None:
        """Why the sweep's own search (sampler, ASHA, ranking) used test data, or ``None`` when it did not: the
        parent's ``protocol=test-selected`` tag, or (older sweeps) a ``search.metric`` computed on the test set."""
        if self.parent is None:
            return None
        if self.parent.tags.get("protocol") == TEST_SELECTED:
            return "the sweep is tagged protocol=test-selected"
        metric = self.parent.params.get("search.metric")
        return f"the sweep ranked its trials on {metric}" if uses_test_data(metric) else None


def _first_of(tag: str, param: str, parent: TrackedRun | None, runs: list[TrackedRun]) -> str | None:
    if parent is not None and parent.tags.get(tag):
        return parent.tags[tag]
    for run in runs:
        if run.tags.get(tag):
            return run.tags[tag]
        if run.params.get(param):
            return run.params[param]
    return None


def open_client(tracking_uri: str) -> MlflowClient:
    """A client that reads the tracking store at ``tracking_uri`` (writes go through :mod:`search.sweep.tracking`)."""
    return MlflowClient(tracking_uri=tracking_uri)


def find_sweep_parent(client: MlflowClient, experiment_id: str) -> TrackedRun | None:
    """The sweep's parent run (``run_type=sweep``) in the experiment, or ``None``."""
    run = find_parent_run(client, experiment_id)
    return TrackedRun.from_run(run, client) if run is not None else None


def find_trial(client: MlflowClient, experiment_id: str, parent_run_id: str, trial_id: str) -> TrackedRun | None:
    """The sweep's own child run (``group=search``, or no ``group`` tag) of Tune trial ``trial_id``, or ``None``."""
    runs = client.search_runs(
        [experiment_id], filter_string=f"tags.trial_id = '{trial_id}' and tags.mlflow.parentRunId = '{parent_run_id}'")
    runs = [TrackedRun.from_run(run, client) for run in runs if run.data.tags.get(GROUP, SEARCH) == SEARCH]
    return runs[0] if runs else None


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
        group = run.tags.get(GROUP)
        if group in SEED_GROUPS:
            groups.setdefault(_group_name(run, group), []).append(run)
        elif group is None or group == SEARCH:
            trials.append(run)
    if not trials:
        raise ReportError(f"experiment {experiment.name!r} in {client.tracking_uri} holds no trial runs")
    metric = metric or (parent.params.get("search.metric") if parent else None) or "val_loss"
    mode = _mode(metric) or (parent.params.get("search.mode") if parent else None) or "min"
    return TrackedSweep(experiment.name, experiment.experiment_id, client.tracking_uri, parent,
                        sorted(trials, key=lambda run: (run.number, run.name)),
                        {name: sorted(runs, key=_seed_order) for name, runs in sorted(groups.items())}, metric, mode)


def _mode(metric: str) -> str | None:
    try:
        return get_metric(metric).mode
    except KeyError:
        return None


def _group_name(run: TrackedRun, group: str) -> str:
    """A retrain's name (its ``retrain`` tag), or ``confirm <config>`` for a confirmed configuration."""
    if group == RETRAIN:
        return run.tags.get(RETRAIN, RETRAIN)
    key = next((run.tags[tag] for tag in CONFIRM_KEYS if run.tags.get(tag)), "")
    return f"{CONFIRM} {key}".strip()


def _seed_order(run: TrackedRun) -> tuple[int, str]:
    seed = run.tags.get("seed", "")
    return (int(seed) if seed.lstrip("-").isdigit() else 0, run.name)
