"""MLflow, written by the sweep driver only (one writer for the sqlite store).

Layout: one experiment per sweep (named after the sweep); in it one parent run (``run_type=sweep``) and one child
run per Tune trial (``run_type=trial``, ``mlflow.parentRunId``, ``trial_id``). Child runs are found again by their
``trial_id`` tag, so a resumed sweep continues them instead of adding duplicates; every run ends FINISHED, FAILED
or KILLED. Artifacts are read from the trial's folder on the sweep's storage.
"""

from __future__ import annotations

import json
import math
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from mlflow.utils.validation import MAX_METRICS_PER_BATCH, MAX_PARAMS_TAGS_PER_BATCH
from ray.tune import Callback
from ray.tune.result import AUTO_RESULT_KEYS

from search.naming import run_name, trial_number
from search.outcome import error_text, trial_outcome
from search.space import SearchSpace
from search.trainable import added_keys, objective_key, run_dir
from vad.config import TrainConfig

TRACKING_FILE = "tracking.json"
RUN_TYPE = "run_type"
GROUP = "group"
"""Tag of child runs that are not the sweep's own trials (``group=retrain``: seeds of ``search.retrain``)."""
NOTE_TAG = "mlflow.note.content"
"""The run description the MLflow UI shows (the parent run gets the sweep's summary)."""
TUNE_KEYS = {*AUTO_RESULT_KEYS, "trial_id", "experiment_tag", "done", "should_checkpoint", "timestamp"}


class SweepExistsError(RuntimeError):
    """A sweep of that name is already tracked (start it with ``--resume`` or choose another ``--name``)."""


# ----------------------------------------------------------------------------------------------- the store

def default_tracking_uri(root: str | Path) -> str:
    """``sqlite:///<abs root>/mlruns/mlflow.db`` (MLflow 3 refuses the plain file store by default)."""
    return f"sqlite:///{(Path(root).expanduser().resolve() / 'mlruns' / 'mlflow.db').as_posix()}"


def artifact_location(tracking_uri: str, name: str) -> str | None:
    """Artifacts of a sqlite store go to ``<db folder>/artifacts/<sweep>``; a tracking server decides itself."""
    if not tracking_uri.startswith("sqlite:///"):
        return None
    database = Path(tracking_uri[len("sqlite:///"):])
    return (database.parent / "artifacts" / name).resolve().as_uri()


def ui_command(tracking_uri: str) -> str:
    """The ``mlflow ui`` command that opens this store (a tracking server has its own UI)."""
    if not tracking_uri.startswith("sqlite:///"):
        return f"open {tracking_uri} in a browser"
    artifacts = Path(tracking_uri[len("sqlite:///"):]).parent / "artifacts"
    return f"mlflow ui --backend-store-uri {tracking_uri} --default-artifact-root {artifacts} --host 127.0.0.1"


def prepare_store(tracking_uri: str) -> None:
    """Create the folder of a sqlite store (MLflow creates the database, not its folder)."""
    if tracking_uri.startswith("sqlite:///"):
        Path(tracking_uri[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)


@dataclass(frozen=True)
class TrackingTarget:
    """Where a sweep's runs go; saved beside the Tune experiment so the trial logger of a resumed sweep reads the
    current target (Tune restores callbacks as they were pickled when the sweep started)."""

    tracking_uri: str
    experiment_id: str
    parent_run_id: str

    def save(self, folder: str | Path) -> None:
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / TRACKING_FILE).write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, folder: str | Path) -> TrackingTarget:
        return cls(**json.loads((Path(folder) / TRACKING_FILE).read_text()))


def find_parent_run(client: MlflowClient, experiment_id: str) -> Any | None:
    runs = client.search_runs([experiment_id], filter_string=f"tags.{RUN_TYPE} = 'sweep'")
    return runs[0] if runs else None


def open_sweep(tracking_uri: str, name: str, *, resume: bool) -> TrackingTarget:
    """The sweep's experiment and parent run: created for a new sweep (refused when the experiment already holds
    a sweep), found again and set RUNNING for a resumed one."""
    prepare_store(tracking_uri)
    client = MlflowClient(tracking_uri=tracking_uri)
    experiment = client.get_experiment_by_name(name)
    if experiment is not None and experiment.lifecycle_stage == "deleted":
        raise SweepExistsError(f"MLflow experiment {name!r} was deleted but still holds the name in "
                               f"{tracking_uri}; choose another --name (or `mlflow gc` the store)")
    if experiment is None:
        experiment_id = client.create_experiment(name, artifact_location=artifact_location(tracking_uri, name))
    else:
        experiment_id = experiment.experiment_id
    parent = find_parent_run(client, experiment_id)
    if parent is not None and not resume:
        raise SweepExistsError(f"MLflow experiment {name!r} in {tracking_uri} already holds sweep {name!r}; "
                               f"continue it with --resume or choose another --name")
    if parent is None:
        parent = client.create_run(experiment_id, run_name=name, tags={RUN_TYPE: "sweep", "sweep": name})
    elif parent.info.status != "RUNNING":
        client.update_run(parent.info.run_id, status="RUNNING")
    return TrackingTarget(tracking_uri, experiment_id, parent.info.run_id)


def git_commit(folder: str | Path) -> str:
    """``<sha>`` of the repository holding ``folder`` (``-dirty`` with uncommitted changes), or ``unknown``."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True,
                             check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=folder,
                               capture_output=True, text=True, check=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{sha}-dirty" if dirty else sha


def log_parent(target: TrackingTarget, *, tags: dict[str, Any], params: dict[str, Any],
               files: dict[str, Path]) -> None:
    """Tags, params and artifacts (``{artifact folder: file}``) of the sweep's parent run."""
    client = MlflowClient(tracking_uri=target.tracking_uri)
    _log_batch(client, target.parent_run_id, params=params, tags=tags)
    for folder, path in files.items():
        client.log_artifact(target.parent_run_id, str(path), artifact_path=folder)


def finish_parent(target: TrackingTarget, status: str, *, tags: dict[str, Any] | None = None,
                  metrics: dict[str, float] | None = None, files: list[Path] | None = None) -> None:
    """Close the parent run (FINISHED, or KILLED for an interrupted sweep) after logging the sweep summary
    (``files`` go to the root of its artifacts)."""
    client = MlflowClient(tracking_uri=target.tracking_uri)
    _log_batch(client, target.parent_run_id, tags=tags or {}, metrics=metrics or {}, step=0)
    for path in files or []:
        client.log_artifact(target.parent_run_id, str(path))
    client.set_terminated(target.parent_run_id, status=status)


def _log_batch(client: MlflowClient, run_id: str, *, params: dict[str, Any] | None = None,
               tags: dict[str, Any] | None = None, metrics: dict[str, float] | None = None,
               step: int = 0, metric_list: list[Metric] | None = None) -> None:
    now = int(time.time() * 1000)
    param_list = [Param(k, as_text(v)) for k, v in (params or {}).items()]
    tag_list = [RunTag(k, as_text(v)) for k, v in (tags or {}).items()]
    metric_list = (metric_list or []) + [Metric(k, float(v), now, step) for k, v in (metrics or {}).items()]
    for start in range(0, max(len(param_list), len(tag_list), 1), MAX_PARAMS_TAGS_PER_BATCH):
        params_part = param_list[start:start + MAX_PARAMS_TAGS_PER_BATCH]
        tags_part = tag_list[start:start + MAX_PARAMS_TAGS_PER_BATCH]
        if params_part or tags_part:
            client.log_batch(run_id, params=params_part, tags=tags_part)
    for start in range(0, len(metric_list), MAX_METRICS_PER_BATCH):
        client.log_batch(run_id, metrics=metric_list[start:start + MAX_METRICS_PER_BATCH])


def as_text(value: Any) -> str:
    """A param/tag value as MLflow stores it: floats as ``repr`` (round-trips), lists and dicts as JSON."""
    if isinstance(value, float):
        return repr(value)
    return value if isinstance(value, str) else json.dumps(value) if isinstance(value, (list, dict)) else str(value)


# ----------------------------------------------------------------------------------------------- metrics

def engine_metrics(result: dict[str, Any], metric: str) -> dict[str, float]:
    """The training engine's per-epoch numbers of a Tune result (Tune's own keys and the trainable's additions
    left out); booleans as 0/1."""
    skip = TUNE_KEYS | set(added_keys(metric))
    out = {}
    for key, value in result.items():
        if key in skip or isinstance(value, dict) or not isinstance(value, (int, float)):
            continue
        out[key] = float(value)
    return out


# ----------------------------------------------------------------------------------------------- trial logger

FLUSH_SECONDS = 10.0
"""How often the driver writes queued per-epoch metrics to MLflow (and always when a trial ends)."""

@dataclass(frozen=True)
class SweepFacts:
    """What the trial logger needs to know about a sweep (pickled with the Tuner)."""

    name: str
    experiment_dir: str
    model: str
    dataset: str
    resolved: TrainConfig
    """The sweep config with every default filled in; a trial's params are this plus its searched values."""
    space: SearchSpace
    child_tags: dict[str, str] = field(default_factory=dict)
    """Tags of every child run of this Tune experiment that set it apart from the sweep's own trials (e.g.
    ``{"group": "retrain", "retrain": <name>}``); the sweep's own trials carry no ``group`` tag. The logger only
    finds, reconciles and deletes runs of its own group."""
    run_label: str | None = None
    """Replaces ``t<NNN>`` in the run names (``rtfm-demo-t003-retrain seed=1``)."""

    def owns(self, run: Any) -> bool:
        """Whether a child run of the parent belongs to this experiment's group."""
        tags = run.data.tags
        if not self.child_tags:
            return GROUP not in tags
        return all(tags.get(key) == value for key, value in self.child_tags.items())


class TrialLogger(Callback):
    """A Tune callback that mirrors every trial into an MLflow child run of the sweep's parent run."""

    def __init__(self, facts: SweepFacts) -> None:
        self.facts = facts
        self._client: MlflowClient | None = None
        self._target: TrackingTarget | None = None
        self._runs: dict[str, str] = {}
        self._logged_epoch: dict[str, int] = {}
        self._closed: set[str] = set()
        self._pending: dict[str, list[Metric]] = {}
        self._last_flush = time.monotonic()

    def __getstate__(self) -> dict[str, Any]:
        return {"facts": self.facts}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["facts"])

    # ------------------------------------------------------------------ Tune hooks
    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._run_of(trial, reopen=True)

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        self._log_epoch(trial.trial_id, self._run_of(trial, reopen=True), result)
        self._flush_if_due()

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        self._flush_if_due()

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self._flush()

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._close(trial, "FINISHED")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._close(trial, "FAILED")

    # ------------------------------------------------------------------ the driver, after fit
    def reconcile(self, trials: list) -> None:
        """Make every run agree with the experiment's saved state (``ExperimentAnalysis(...).trials``, what a
        resume continues from): TERMINATED -> FINISHED, ERROR -> FAILED, unfinished -> KILLED (a resume reopens
        them); runs of trials the experiment does not know (started after the last snapshot of a killed driver,
        then forgotten) are closed, tagged ``orphaned`` and deleted. Tune's in-memory statuses at the end of an
        interrupted fit say TERMINATED for trials it merely stopped, hence the saved state."""
        self._flush()
        wanted = {"TERMINATED": "FINISHED", "ERROR": "FAILED"}
        for trial in trials:
            status = wanted.get(trial.status, "KILLED")
            run = self._find_run(trial.trial_id)
            if run is None and status == "KILLED":
                continue  # never started
            if run is not None and run.info.status == status:
                continue
            self._closed.discard(trial.trial_id)
            self._close(trial, status, interrupted=status == "KILLED")
        known = {trial.trial_id for trial in trials}
        for run in self._child_runs():
            if run.data.tags.get("trial_id") not in known:
                if run.info.status == "RUNNING":
                    self.client.set_terminated(run.info.run_id, status="KILLED")
                self.client.set_tag(run.info.run_id, "orphaned", "true")
                self.client.delete_run(run.info.run_id)

    # ------------------------------------------------------------------ runs
    @property
    def client(self) -> MlflowClient:
        if self._client is None:
            self._target = TrackingTarget.load(Path(self.facts.experiment_dir) / "search")
            self._client = MlflowClient(tracking_uri=self._target.tracking_uri)
        return self._client

    @property
    def target(self) -> TrackingTarget:
        _ = self.client
        assert self._target is not None
        return self._target

    def _child_runs(self) -> list:
        """The parent's child runs of this logger's group (see :attr:`SweepFacts.child_tags`)."""
        runs = self.client.search_runs(
            [self.target.experiment_id],
            filter_string=f"tags.mlflow.parentRunId = '{self.target.parent_run_id}'", max_results=50000)
        return [run for run in runs if self.facts.owns(run)]

    def _find_run(self, trial_id: str) -> Any | None:
        runs = self.client.search_runs(
            [self.target.experiment_id],
            filter_string=f"tags.trial_id = '{trial_id}' and tags.mlflow.parentRunId = "
                          f"'{self.target.parent_run_id}'")
        runs = [run for run in runs if self.facts.owns(run)]
        return runs[0] if runs else None

    def _run_of(self, trial: Any, *, reopen: bool) -> str:
        """The child run of ``trial``: cached, found by its ``trial_id`` tag (continued), or created."""
        trial_id = trial.trial_id
        if trial_id in self._runs:
            return self._runs[trial_id]
        run = self._find_run(trial_id)
        if run is not None:
            run_id = run.info.run_id
            if reopen and run.info.status != "RUNNING":
                self.client.update_run(run_id, status="RUNNING")
            history = self.client.get_metric_history(run_id, "epoch")
            self._logged_epoch[trial_id] = int(max((m.value for m in history), default=0))
        else:
            run_id = self._create_run(trial)
            self._logged_epoch[trial_id] = 0
        self._runs[trial_id] = run_id
        self._closed.discard(trial_id)
        if run is not None:
            self._backfill(trial, run_id)  # epochs Tune recorded that a killed driver never wrote to MLflow
        return run_id

    def _log_epoch(self, trial_id: str, run_id: str, result: dict[str, Any]) -> None:
        """Queue one epoch's metrics (``step=epoch``); :meth:`_flush` writes them in batches, so the driver's
        per-epoch cost stays small next to packed trials. Queued epochs a killed driver never wrote are
        back-filled from Tune's results when a resumed sweep finds the run again (see :meth:`_backfill`)."""
        epoch = int(result.get("epoch", 0) or 0)
        if epoch <= self._logged_epoch.get(trial_id, 0):
            return  # an epoch replayed after a restart (same values: the run resumes exactly)
        now = int(time.time() * 1000)
        metrics = engine_metrics(result, self.facts.space.search.metric)
        self._pending.setdefault(run_id, []).extend(Metric(k, v, now, epoch) for k, v in metrics.items())
        self._logged_epoch[trial_id] = epoch

    def _flush_if_due(self) -> None:
        if time.monotonic() - self._last_flush >= FLUSH_SECONDS:
            self._flush()

    def _flush(self, run_id: str | None = None) -> None:
        """Write the queued metrics (of ``run_id``, or of every run)."""
        for key in [run_id] if run_id is not None else list(self._pending):
            metrics = self._pending.pop(key, None)
            if metrics:
                _log_batch(self.client, key, metric_list=metrics)
        if run_id is None:
            self._last_flush = time.monotonic()

    def _backfill(self, trial: Any, run_id: str) -> None:
        """Epochs Tune recorded but this run lacks (a driver killed between the two, or before it flushed its
        queue), from Tune's per-trial ``result.json`` (one JSON result per line)."""
        for folder in (trial.local_path, trial.path):
            results = Path(folder or "") / "result.json"
            if folder and results.is_file():
                for line in results.read_text().splitlines():
                    if line.strip():
                        self._log_epoch(trial.trial_id, run_id, json.loads(line))
                return

    def _best_metric(self, trial: Any) -> dict[str, float]:
        """``best_<sweep metric>``, the value the sweep ranks the trial by (to sort runs in the MLflow UI)."""
        key = objective_key(self.facts.space.search.metric)
        value = (getattr(trial, "last_result", None) or {}).get(key)
        return {key: float(value)} if isinstance(value, (int, float)) and math.isfinite(value) else {}

    def _create_run(self, trial: Any) -> str:
        facts, space = self.facts, self.facts.space
        searched = space.decode({k: trial.config[k] for k in space.params if k in trial.config})
        number = trial_number(trial)
        params = facts.resolved.with_overrides(searched).flat()
        tags = {
            "mlflow.parentRunId": self.target.parent_run_id, RUN_TYPE: "trial", "sweep": facts.name,
            "trial_id": trial.trial_id, "trial_number": number, "searched": ",".join(searched),
            "baseline": str(searched == space.baseline).lower(), "trial_dir": trial.path,
            "model": facts.model, "dataset": facts.dataset, "seed": params["train.seed"], **facts.child_tags,
        }
        name = run_name(facts.model, facts.dataset, number, searched, label=facts.run_label)
        run = self.client.create_run(self.target.experiment_id, tags={k: as_text(v) for k, v in tags.items()},
                                     run_name=name)
        _log_batch(self.client, run.info.run_id, params=params)
        return run.info.run_id

    def _close(self, trial: Any, status: str, *, interrupted: bool = False) -> None:
        """End a trial's run with ``status`` after logging its outcome, scores and selected checkpoint."""
        if trial.trial_id in self._closed:
            return
        run_id = self._run_of(trial, reopen=False)  # a run found again (a resumed sweep) is back-filled there
        self._flush(run_id)
        folder = run_dir(self.facts.experiment_dir, trial.trial_id)
        outcome = trial_outcome(folder, getattr(trial, "last_result", None), epochs=self.facts.space.search.epochs,
                                error=error_text(trial) if status == "FAILED" else None, interrupted=interrupted)
        _log_batch(self.client, run_id, tags=outcome.tags(), metrics=self._best_metric(trial), step=outcome.epochs_run)
        for artifact_folder, name in (("checkpoint", "best.pt"), ("scores", "scores.npz"), ("", "result.json")):
            if (folder / name).is_file():
                self.client.log_artifact(run_id, str(folder / name), artifact_path=artifact_folder or None)
        self.client.set_terminated(run_id, status=status)
        self._closed.add(trial.trial_id)
        self._runs.pop(trial.trial_id, None)

