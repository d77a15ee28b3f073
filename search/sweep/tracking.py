"""MLflow, written by the sweep driver only (one writer for the sqlite store).

Layout: one experiment per sweep (named after the sweep); in it one parent run (``run_type=sweep``) and one child
run per Tune trial (``run_type=trial``, ``mlflow.parentRunId``, ``trial_id``). Child runs are found again by their
``trial_id`` tag, so a resumed sweep continues them instead of adding duplicates; every run ends FINISHED, FAILED
or KILLED. Artifacts are read from the trial's folder on the sweep's storage.
"""

from __future__ import annotations

import errno
import json
import math
import re
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.utils.validation import MAX_METRICS_PER_BATCH, MAX_PARAMS_TAGS_PER_BATCH
from ray.tune import Callback
from ray.tune.result import AUTO_RESULT_KEYS

from search.sweep.naming import run_name, trial_number
from search.sweep.outcome import error_text, trial_outcome
from search.sweep.space import SearchSpace, protocol_tags
from search.sweep.trainable import added_keys, objective_key, run_dir
from vad.config import TrainConfig
from vad.metrics.catalogue import CATALOGUE, frame_metric_names, table_columns

TRACKING_FILE = "tracking.json"
RUN_TYPE = "run_type"
GROUP = "group"
"""Tag of child runs that are not the sweep's own trials (``group=retrain``: seeds of ``search.retrain``;
``group=confirm``: the confirmation seeds of ``search.run``)."""
NOTE_TAG = "mlflow.note.content"
"""The run description the MLflow UI shows (the parent run gets the sweep's summary)."""
PARENT_PREFIX = "sweep."
"""Prefix of the parent run's metrics (``sweep.best_val_loss``), so they do not sort among the trials' columns."""
TUNE_KEYS = {*AUTO_RESULT_KEYS, "trial_id", "experiment_tag", "done", "should_checkpoint", "timestamp"}


class SweepExistsError(ValueError):
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


def ui_url(tracking_uri: str, experiment_id: str, metric: str, mode: str) -> str:
    """The MLflow UI's run list of an experiment sorted by ``metric`` (best first), in the classic machine-learning
    view (MLflow 3 otherwise opens a new experiment on its GenAI overview): ``mlflow ui``'s default address for a
    sqlite store, the server's own for a tracking server."""
    from urllib.parse import quote

    base = "http://127.0.0.1:5000" if not tracking_uri.startswith(("http://", "https://")) else tracking_uri
    order = quote(f"metrics.`{metric}`", safe="")
    return (f"{base.rstrip('/')}/#/experiments/{experiment_id}?orderByKey={order}"
            f"&orderByAsc={'true' if mode == 'min' else 'false'}&workflowType=machine_learning")


HTTP_DEFAULTS = {
    # A tracking server that goes away must not freeze a sweep for minutes (MLflow's defaults: 120 s a request,
    # 7 retries with exponential backoff): a refused request fails within seconds, and the trial logger queues.
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
}


def check_tracking(tracking_uri: str, timeout: float = 5.0) -> None:
    """Bound MLflow's HTTP timeouts and retries (unless set) and, for an ``http(s)`` tracking URI, refuse within
    seconds when its server does not answer (``TrackingError``)."""
    import os

    for key, value in HTTP_DEFAULTS.items():
        os.environ.setdefault(key, value)
    if not tracking_uri.startswith(("http://", "https://")):
        return
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(tracking_uri.rstrip("/") + "/health", timeout=timeout) as response:
            response.read(64)
    except urllib.error.HTTPError:
        return  # it answers (a proxy, an older server without /health): reachable
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise TrackingError(f"the MLflow tracking server at {tracking_uri} is not reachable ({reason}); start it, "
                            f"or pass another --tracking-uri") from None


STORE_WAIT_SECONDS = 300.0
"""How long the driver waits, at the end of a Tune experiment, for a tracking server that went away to answer
again before it stops (resumably); ``$VAD_TRACKING_WAIT_S`` overrides it."""


def wait_for_store(tracking_uri: str) -> None:
    """Return once an ``http(s)`` tracking server answers (at once when it does, or for any other store); after
    :data:`STORE_WAIT_SECONDS` without an answer, :class:`TrackingError` saying that the sweep is resumable."""
    import os

    if not tracking_uri.startswith(("http://", "https://")):
        return
    limit = float(os.environ.get("VAD_TRACKING_WAIT_S", STORE_WAIT_SECONDS))
    started, said = time.monotonic(), False
    while True:
        try:
            check_tracking(tracking_uri, timeout=5.0)
            return
        except TrackingError:
            if time.monotonic() - started >= limit:
                raise TrackingError(f"the MLflow tracking server at {tracking_uri} did not answer for {limit:.0f}s; "
                                    f"the sweep stopped and is resumable: start the server, then run the same "
                                    f"command with --resume") from None
            if not said:
                print(f"Waiting up to {limit:.0f}s for the MLflow tracking server at {tracking_uri} to answer "
                      f"again (the trials' records are kept)", file=sys.stderr, flush=True)
                said = True
            time.sleep(2.0)


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
        from search.sweep.record import save_record  # atomic, the previous copy kept as tracking.json.prev

        save_record(Path(folder) / TRACKING_FILE, asdict(self))

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
    taken = (f"MLflow experiment {name!r} in {tracking_uri} already holds sweep {name!r} (another driver, maybe "
             f"with another --storage); continue it with --resume or choose another --name")
    if experiment is None:
        try:
            experiment_id = client.create_experiment(name, artifact_location=artifact_location(tracking_uri, name))
        except MlflowException:  # another driver created it between the look-up and now (UNIQUE constraint)
            if client.get_experiment_by_name(name) is None:
                raise
            raise SweepExistsError(taken) from None
    else:
        experiment_id = experiment.experiment_id
    parent = find_parent_run(client, experiment_id)
    if parent is not None and not resume:
        raise SweepExistsError(taken)
    if parent is None:
        parent = client.create_run(experiment_id, run_name=name, tags={
            RUN_TYPE: "sweep", "sweep": name, "mlflow.source.name": source_command(), "mlflow.source.type": "LOCAL"})
        parents = client.search_runs([experiment_id], filter_string=f"tags.{RUN_TYPE} = 'sweep'")
        first = min(parents, key=lambda run: (run.info.start_time, run.info.run_id))
        if first.info.run_id != parent.info.run_id:  # two drivers raced to one store: the later one steps back
            client.delete_run(parent.info.run_id)
            raise SweepExistsError(taken)
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


def describe_experiment(target: TrackingTarget, description: str, tags: dict[str, Any]) -> None:
    """The experiment's description (what the MLflow UI shows above its runs) and tags."""
    client = MlflowClient(tracking_uri=target.tracking_uri)
    client.set_experiment_tag(target.experiment_id, NOTE_TAG, description)
    for key, value in tags.items():
        client.set_experiment_tag(target.experiment_id, key, as_text(value))


class TrackingError(ValueError):
    """A write the tracking store refused (e.g. a read-only tracking server), or a server that does not answer."""


def log_files(tracking_uri: str, run_id: str, paths: list[Path], *, artifact_path: str | None = None) -> None:
    """Files, and folders (their content), as artifacts of run ``run_id`` under ``artifact_path``; a refused write
    raises :class:`TrackingError`."""
    client = MlflowClient(tracking_uri=tracking_uri)
    try:
        for path in paths:
            if Path(path).is_dir():
                client.log_artifacts(run_id, str(path), artifact_path=artifact_path)
            else:
                client.log_artifact(run_id, str(path), artifact_path=artifact_path)
    except MlflowException as exc:
        raise TrackingError(f"{tracking_uri}: run {run_id}: {exc}") from exc


def finish_parent(target: TrackingTarget, status: str, *, tags: dict[str, Any] | None = None,
                  metrics: dict[str, float] | None = None, files: list[Path] | None = None) -> None:
    """Close the parent run (FINISHED, or KILLED for an interrupted sweep) after logging the sweep summary
    (``files`` go to the root of its artifacts; ``metrics`` under ``sweep.``, apart from the trials' own in the run
    list)."""
    client = MlflowClient(tracking_uri=target.tracking_uri)
    metrics = {key if key.startswith(PARENT_PREFIX) else PARENT_PREFIX + key: v for key, v in (metrics or {}).items()}
    _log_batch(client, target.parent_run_id, tags=tags or {}, metrics=metrics, step=0)
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


PER_CLASS = re.compile(r"^(?:selected_|test_)?auc_(?P<label>.+)$")
"""Per-class AUCs (``selected_auc_Abuse``): one table artifact per run (:data:`PER_CLASS_FILE`), not 13 series."""
PER_CLASS_FILE = "per_class_auc.json"
EPOCHS_FILE = "epochs.csv"
"""Every number the engine reported, one row per epoch: what is not a metric of the run (loss components, lr,
timing) is still there."""


def logged_metrics(numbers: dict[str, float], metric: str, settings: dict[str, Any]) -> dict[str, float]:
    """The per-epoch metrics a child run logs out of the engine's ``numbers`` (:func:`engine_metrics`): the losses
    people plot (``train_loss``, ``train_eval_loss``, the validation metrics), the test metrics of the epoch
    (``test_<name>``), those of the selected checkpoint (``selected_<table column>``, what ``search.report``
    reads) and, only where they say something, ``lr`` (a scheduler changes it) and ``selection_value`` (a
    smoothing rule). ``val_ref_loss``, the comparable objective, is always logged (equal to ``val_loss`` when the
    run trains with the reference loss, as the baseline does). Not ``epoch`` (the step is the epoch), ``is_best``
    (the ``selected_epoch`` tag), duplicates of the ranking value, the per-epoch test loss (the selected
    checkpoint's is ``selected_test_loss``), per-class AUCs or loss components: those go to :data:`EPOCHS_FILE`
    and :data:`PER_CLASS_FILE`.
    ``settings`` are the trial's flat config."""
    keep = {"train_loss", "train_eval_loss",
            *(name for name, entry in CATALOGUE.items() if entry.source == "val"),
            *(f"test_{name}" for name in frame_metric_names()), *(f"selected_{name}" for name in table_columns())}
    if settings.get("optim.scheduler", "none") not in (None, "none"):
        keep.add("lr")
    if settings.get("train.selection_rule", "min") != "min":
        keep.add("selection_value")
    return {key: value for key, value in numbers.items() if key in keep}


def error_text_of(exc: BaseException) -> str:
    """The first line of an MLflow or connection error (MLflow's are long), shortened."""
    text = str(getattr(exc, "message", None) or exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]


def source_command() -> str:
    """The command line that runs this process (``python -m search.run --space ...``), for ``mlflow.source.name``."""
    main = sys.modules.get("__main__")
    module = getattr(getattr(main, "__spec__", None), "name", None)
    head = f"python -m {module.removesuffix('.__main__')}" if module else Path(sys.argv[0]).name
    return " ".join([head, *sys.argv[1:]])[:500]


# ----------------------------------------------------------------------------------------------- trial logger

def point_key(searched: dict[str, Any]) -> str:
    """A configuration's identity: its searched values but ``train.seed``, as sorted JSON."""
    return json.dumps({k: v for k, v in searched.items() if k != "train.seed"}, sort_keys=True, default=str)


FLUSH_SECONDS = 10.0
"""How often the driver writes queued per-epoch metrics to MLflow (and always when a trial ends)."""
RETRY_SECONDS = 15.0
"""While the tracking store does not answer, how often the trial logger tries again (training goes on meanwhile;
per-epoch metrics stay queued, runs are created and closed once it answers, or by the driver's reconcile)."""
UNREACHABLE = (MlflowException, OSError)
"""What a tracking store that went away raises (MLflow's HTTP errors after its retries; connection errors)."""

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
    ``{"group": "retrain", "retrain": <name>}``); the sweep's own trials are tagged ``group=search``. The logger only
    finds, reconciles and deletes runs of its own group."""
    run_label: str | None = None
    """Replaces ``t<NNN>`` in the run names (``rtfm-demo-t003-retrain seed=1``)."""
    point_tags: dict[str, dict[str, str]] = field(default_factory=dict)
    """Extra tags per configuration, keyed by :func:`point_key` of its searched values (``train.seed`` left out):
    the confirmation's ``confirm_rank``, ``confirm_of`` (source trial) and ``baseline``."""

    def tags_of(self, searched: dict[str, Any]) -> dict[str, str]:
        """The :attr:`point_tags` of a trial's searched values (none when not listed)."""
        return self.point_tags.get(point_key(searched), {}) if self.point_tags else {}

    def owns(self, run: Any) -> bool:
        """Whether a child run of the parent belongs to this experiment's group."""
        tags = run.data.tags
        if not self.child_tags:
            return tags.get(GROUP, "search") == "search"
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
        self._flat: dict[str, dict[str, Any]] = {}
        self._last_flush = time.monotonic()
        self._offline_since: float | None = None
        self._last_try = 0.0

    def __getstate__(self) -> dict[str, Any]:
        return {"facts": self.facts}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["facts"])

    # ------------------------------------------------------------------ Tune hooks
    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._tolerant(lambda: self._run_of(trial, reopen=True))

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        run_id = self._runs.get(trial.trial_id) or self._tolerant(lambda: self._run_of(trial, reopen=True))
        if run_id is not None:  # else: back-filled from Tune's result.json once the store answers
            self._log_epoch(trial.trial_id, run_id, result)
        self._tolerant(self._flush_if_due)

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        self._tolerant(self._flush_if_due)

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self._tolerant(self._flush, force=True)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._tolerant(lambda: self._close(trial, "FINISHED"))

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._tolerant(lambda: self._close(trial, "FAILED"))

    def _tolerant(self, action: Any, *, force: bool = False) -> Any:
        """``action()``, unless the tracking store does not answer: then one warning line, training goes on, and
        the store is tried again every :data:`RETRY_SECONDS` (queued metrics are written when it answers; runs it
        could not close are closed by the driver's :meth:`reconcile`). ``None`` when skipped or failed."""
        now = time.monotonic()
        if self._offline_since is not None and not force and now - self._last_try < RETRY_SECONDS:
            return None
        self._last_try = now
        try:
            value = action()
        except UNREACHABLE as exc:
            if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
                raise  # a full disk stops the sweep (resumably); it is not the tracking store going away
            if self._offline_since is None:
                self._offline_since = now
                print(f"warning: the MLflow tracking store {self.target_uri()} does not answer "
                      f"({error_text_of(exc)}); training goes on, its records are queued and written when it answers",
                      file=sys.stderr, flush=True)
            return None
        if self._offline_since is not None:
            print(f"The MLflow tracking store answers again after {now - self._offline_since:.0f}s; the queued "
                  f"records are written", file=sys.stderr, flush=True)
            self._offline_since = None
            self._flush()
        return value

    def target_uri(self) -> str:
        return self._target.tracking_uri if self._target is not None else "(not yet opened)"

    # ------------------------------------------------------------------ the driver, after fit
    def reconcile(self, trials: list) -> None:
        """Make every run agree with the experiment's saved state (``ExperimentAnalysis(...).trials``, what a
        resume continues from): TERMINATED -> FINISHED, ERROR -> FAILED, unfinished -> KILLED (a resume reopens
        them); runs of trials the experiment does not know (started after the last snapshot of a killed driver,
        then forgotten) are closed, tagged ``orphaned`` and deleted. Tune's in-memory statuses at the end of an
        interrupted fit say TERMINATED for trials it merely stopped, hence the saved state."""
        wait_for_store(self.target.tracking_uri)  # a server that went away mid-sweep: its records are replayed now
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
            history = self.client.get_metric_history(run_id, "train_loss")  # logged every epoch, step = epoch
            self._logged_epoch[trial_id] = int(max((m.step for m in history), default=0))
        else:
            run_id = self._create_run(trial)
            self._logged_epoch[trial_id] = 0
        self._runs[trial_id] = run_id
        self._closed.discard(trial_id)
        # epochs Tune recorded that a killed driver never wrote to MLflow, or that came while the store was down
        self._backfill(trial, run_id)
        return run_id

    def _log_epoch(self, trial_id: str, run_id: str, result: dict[str, Any]) -> None:
        """Queue one epoch's metrics (``step=epoch``); :meth:`_flush` writes them in batches, so the driver's
        per-epoch cost stays small next to packed trials. Queued epochs a killed driver never wrote are
        back-filled from Tune's results when a resumed sweep finds the run again (see :meth:`_backfill`)."""
        epoch = int(result.get("epoch", 0) or 0)
        if epoch <= self._logged_epoch.get(trial_id, 0):
            return  # an epoch replayed after a restart (same values: the run resumes exactly)
        now = int(time.time() * 1000)
        metrics = logged_metrics(engine_metrics(result, self.facts.space.search.metric),
                                 self.facts.space.search.metric, self._settings(trial_id, result.get("config")))
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
                try:
                    _log_batch(self.client, key, metric_list=metrics)
                except UNREACHABLE:
                    self._pending[key] = metrics + self._pending.get(key, [])  # kept for the next flush
                    raise
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

    def _settings(self, trial_id: str, config: dict[str, Any] | None) -> dict[str, Any]:
        """A trial's flat config (the sweep's resolved config with its searched values), cached per trial."""
        if trial_id not in self._flat:
            space = self.facts.space
            searched = space.decode({k: v for k, v in (config or {}).items() if k in space.params})
            self._flat[trial_id] = self.facts.resolved.with_overrides(searched).flat()
        return self._flat[trial_id]

    def _write_tables(self, trial: Any, folder: Path) -> None:
        """:data:`PER_CLASS_FILE` (the selected checkpoint's per-class AUCs) and :data:`EPOCHS_FILE` (every number
        of every epoch, from Tune's ``result.json``) in the trial's run folder, when there is something to write."""
        last = getattr(trial, "last_result", None) or {}
        per_class = {match["label"]: float(value) for key, value in last.items()
                     if key.startswith("selected_") and (match := PER_CLASS.match(key))
                     and isinstance(value, (int, float))}
        rows = []
        for source in (getattr(trial, "local_path", None), getattr(trial, "path", None)):
            results = Path(source or "") / "result.json"
            if source and results.is_file():
                rows = [engine_metrics(json.loads(line), self.facts.space.search.metric)
                        for line in results.read_text().splitlines() if line.strip()]
                break
        if not folder.is_dir() or not (per_class or rows):
            return
        if per_class:
            (folder / PER_CLASS_FILE).write_text(json.dumps(per_class, indent=2, sort_keys=True))
        if rows:
            columns = list(dict.fromkeys(key for row in rows for key in row if not PER_CLASS.match(key)))
            lines = [",".join(columns)] + [",".join(repr(row[c]) if c in row else "" for c in columns) for row in rows]
            (folder / EPOCHS_FILE).write_text("\n".join(lines) + "\n")

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
            "mlflow.source.name": source_command(), "mlflow.source.type": "LOCAL",
            "trial_id": trial.trial_id, "trial_number": number, "searched": ",".join(searched),
            "baseline": str(searched == space.baseline).lower(), "trial_dir": trial.path,
            "model": facts.model, "dataset": facts.dataset, "seed": params["train.seed"], GROUP: "search",
            **protocol_tags(params["train.selection"], space.search.metric), **facts.child_tags,
            **facts.tags_of(searched),
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
        self._write_tables(trial, folder)
        for artifact_folder, name in (("checkpoint", "best.pt"), ("scores", "scores.npz"), ("", "result.json"),
                                      ("", PER_CLASS_FILE), ("", EPOCHS_FILE)):
            if (folder / name).is_file():
                self.client.log_artifact(run_id, str(folder / name), artifact_path=artifact_folder or None)
        self.client.set_terminated(run_id, status=status)
        self._closed.add(trial.trial_id)
        self._runs.pop(trial.trial_id, None)

