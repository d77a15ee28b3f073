"""The Ray Tune machinery shared by ``search.run`` (a sweep) and ``search.retrain`` (a best config, several seeds):
joining Ray, preparing the data once, checking the trial resources, building the ``Tuner`` over the function
trainable, and fitting it so that every MLflow run ends FINISHED, FAILED or KILLED whatever happens.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from search.naming import trial_number
from search.resources import ResourcePlan, cluster_nodes, plan_resources
from search.space import SearchSpace
from search.sweep import SweepPaths
from search.tracking import SweepFacts, TrialLogger
from search.trainable import TrialSetup, run_trial, trial_dirname

TUNE_DEFAULTS = {
    "TUNE_GLOBAL_CHECKPOINT_S": "20",  # experiment snapshots every 20 s: cheap, and a resume replays little
    "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",
    "RAY_AIR_NEW_OUTPUT": "0",  # the classic status table, which honours the reporter's metric columns
    # Tune's own per-trial loggers: only the JSON one is kept (passed explicitly: search.tracking reads its
    # result.json to backfill MLflow after a crash); the CSV and TensorBoard copies of every result cost the
    # driver CPU that the trials need, and MLflow already holds every epoch.
    "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",
}
LOCAL_RAY_DEFAULTS = {
    # A local Ray started for one sweep has no dashboard to feed: its agent's per-process statistics (psutil over
    # every worker, every 5 s by default) only take CPU from the trials.
    "REPORTER_UPDATE_INTERVAL_MS": "60000",
    "RAY_USAGE_STATS_ENABLED": "0",
}


class ClusterError(RuntimeError):
    """The Ray cluster given by ``--address`` cannot be joined."""


class DataError(RuntimeError):
    """The space's dataset cannot be prepared (missing files, ``$VAD_DATA`` unset, malformed lists)."""


def set_tune_defaults() -> None:
    """Tune's environment settings the toolkit relies on (unless the user set them)."""
    for key, value in TUNE_DEFAULTS.items():
        os.environ.setdefault(key, value)


def connect(address: str | None, log_to_driver: bool) -> bool:
    """Join ``address`` (or ``$RAY_ADDRESS``), else start a new local Ray (no dashboard); returns whether this call
    connected. Trials on a joined cluster get the cache folder (and ``$VAD_DATA``) as absolute paths."""
    import ray

    if ray.is_initialized():
        return False
    from vad.paths import cache_root

    env = {"VAD_CACHE_DIR": str(cache_root())}
    if os.environ.get("VAD_DATA"):
        env["VAD_DATA"] = str(Path(os.environ["VAD_DATA"]).expanduser().resolve())
    address = address or os.environ.get("RAY_ADDRESS")
    if not address:
        for key, value in LOCAL_RAY_DEFAULTS.items():
            os.environ.setdefault(key, value)
    try:  # "local": a new instance, never a cluster some earlier `ray start` left registered on this machine
        ray.init(address=address or "local", include_dashboard=False, log_to_driver=log_to_driver,
                 runtime_env={"env_vars": env} if address else None)
    except ConnectionError as exc:
        hint = ("" if os.environ.get("RAY_AUTH_MODE") == "token" else
                "; a cluster started with token authentication (Ray's default when ~/.ray/auth_token exists) "
                "needs RAY_AUTH_MODE=token in the driver's environment")
        raise ClusterError(f"--address {address}: {exc}{hint}") from None
    return True


def prepare(space: SearchSpace) -> Any:
    """The data, prepared once before any trial (feature cache, split, S3R dictionary): the trials then only open
    the cached files. A dataset that cannot be read is an error naming it."""
    from vad.prepare import prepare_data

    started = time.perf_counter()
    try:
        prepared = prepare_data(space.sweep_config())
    except (ValueError, OSError) as exc:
        raise DataError(f"{space.path}: data.dataset {space.base.data.dataset!r}: {exc}") from None
    print(f"Data prepared in {time.perf_counter() - started:.1f}s: {prepared.describe()['dataset']} "
          f"({len(prepared.train_rows)} train / {len(prepared.val_rows)} validation / "
          f"{len(prepared.test.lengths)} test videos)", flush=True)
    return prepared


def plan_trials(space: SearchSpace) -> tuple[SearchSpace, ResourcePlan]:
    """The trial resources checked against the connected cluster (printed); the space with the GPUs trials get."""
    plan = plan_resources(space.resources, cluster_nodes())
    for message in plan.messages:
        print(message, flush=True)
    return space.with_settings(gpus_per_trial=plan.resources.gpus_per_trial), plan


@dataclass(frozen=True)
class TunerSpec:
    """Everything :func:`make_tuner` needs: the (planned) space, where the experiment lives (ASHA's rungs persist
    in ``paths.search_dir / "asha.json"``), what the MLflow trial logger knows, and the resource plan."""

    space: SearchSpace
    paths: SweepPaths
    facts: SweepFacts
    plan: ResourcePlan


def make_tuner(spec: TunerSpec, *, resume: bool) -> Any:
    """A ``Tuner`` over :func:`search.trainable.run_trial`: Optuna proposes (the baseline first), ASHA or FIFO
    schedules, the :class:`search.tracking.TrialLogger` mirrors every trial into MLflow; ``resume`` restores the
    experiment in ``spec.paths`` instead (unfinished trials continue, errored ones stay failed)."""
    from ray import tune
    from ray.tune.logger import JsonLoggerCallback

    from search.scheduler import PersistentASHA
    from search.searcher import make_searcher

    space, paths, plan = spec.space, spec.paths, spec.plan
    setup = TrialSetup(space, str(paths.experiment_dir))
    trainable = tune.with_resources(tune.with_parameters(run_trial, setup=setup),
                                    {"cpu": plan.resources.cpus_per_trial, "gpu": plan.resources.gpus_per_trial})
    if resume:
        return tune.Tuner.restore(str(paths.experiment_dir), trainable=trainable, resume_unfinished=True,
                                  resume_errored=False, restart_errored=False)
    scheduler = None
    if space.scheduler.name == "asha":
        scheduler = PersistentASHA(paths.search_dir / "asha.json", metric=setup.objective,
                                   mode=space.search.mode, max_t=space.search.epochs,
                                   grace_period=space.scheduler.grace_period,
                                   reduction_factor=space.scheduler.reduction_factor)
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=make_searcher(space, setup.objective),
            scheduler=scheduler, num_samples=space.search.num_samples, max_concurrent_trials=plan.concurrent,
            reuse_actors=True, trial_name_creator=_trial_name, trial_dirname_creator=_trial_dirname),
        run_config=tune.RunConfig(
            name=paths.name, storage_path=str(paths.storage), callbacks=[JsonLoggerCallback(), TrialLogger(spec.facts)],
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
            failure_config=tune.FailureConfig(max_failures=0), verbose=1,
            progress_reporter=tune.CLIReporter(metric_columns=["epoch", setup.objective, "val_loss"],
                                               max_report_frequency=30)),
    )


def fit(tuner: Any, paths: SweepPaths, facts: SweepFacts) -> list:
    """``tuner.fit()``, then the experiment's saved trials with every MLflow run brought in line with them. On an
    exception (a second Ctrl-C, an error) the runs are closed all the same and the exception goes on."""
    try:
        tuner.fit()
    except BaseException:
        try:
            reconcile(paths, facts)
        except Exception as cleanup:  # the original error matters more
            print(f"(could not close the MLflow runs: {cleanup})", file=sys.stderr)
        raise
    return reconcile(paths, facts)


def reconcile(paths: SweepPaths, facts: SweepFacts) -> list:
    """The experiment's saved trials (``ExperimentAnalysis``), every MLflow run of them made to agree."""
    from ray.tune import ExperimentAnalysis

    trials = ExperimentAnalysis(str(paths.experiment_dir)).trials
    TrialLogger(facts).reconcile(trials)
    return trials


def _trial_dirname(trial: Any) -> str:
    return trial_dirname(trial.trial_id)


def _trial_name(trial: Any) -> str:
    """``t003_<trial id>`` in Tune's tables (``t003`` as in the MLflow run names)."""
    return f"t{trial_number(trial):03d}_{trial.trial_id}"
