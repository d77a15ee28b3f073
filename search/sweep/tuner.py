"""The Ray Tune machinery shared by ``search.run`` (a sweep, then its confirmation) and ``search.retrain`` (a best
config, several seeds): joining Ray, preparing the data once, checking the trial resources, building the ``Tuner``
over the function trainable (Optuna's proposals, or a fixed list of points), and fitting it so that every MLflow run
ends FINISHED, FAILED or KILLED whatever happens. Joining or starting Ray itself: :mod:`search.sweep.session`.
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass
from typing import Any

from search.sweep.naming import trial_number
from search.sweep.record import SweepPaths
from search.sweep.resources import ResourcePlan, cluster_nodes, plan_resources
from search.sweep.space import SearchSpace
from search.sweep.tracking import SweepFacts, TrackingTarget, TrialLogger
from search.sweep.trainable import TrialSetup, run_trial, trial_dirname


class DataError(ValueError):
    """The space's dataset cannot be prepared (missing files, ``$VAD_DATA`` unset, malformed lists)."""


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
    in ``paths.search_dir / "asha.json"``), what the MLflow trial logger knows, and the resource plan. With
    ``points`` the Tuner runs exactly these searcher points (encoded values of every key of the space), FIFO, in
    order: a group of child runs such as the confirmation's seeds."""

    space: SearchSpace
    paths: SweepPaths
    facts: SweepFacts
    plan: ResourcePlan
    points: tuple[dict[str, Any], ...] | None = None
    verbose: bool = False
    """Ray's status table (``--verbose``) instead of the toolkit's progress bar (:mod:`search.sweep.progress`)."""
    optuna_storage: str | None = None
    """Where Optuna keeps the study (a URL); ``None``: :func:`optuna_storage_url`'s SQLite file in the sweep folder."""


def make_tuner(spec: TunerSpec, *, resume: bool) -> Any:
    """A ``Tuner`` over :func:`search.sweep.trainable.run_trial`: Optuna proposes (the baseline first), ASHA or FIFO
    schedules, the :class:`search.sweep.tracking.TrialLogger` mirrors every trial into MLflow; ``resume`` restores the
    experiment in ``spec.paths`` instead (unfinished trials continue, errored ones stay failed)."""
    from ray import tune
    from ray.tune.logger import JsonLoggerCallback

    from search.sweep.scheduler import PersistentASHA
    from search.sweep.searcher import make_searcher

    space, paths, plan = spec.space, spec.paths, spec.plan
    setup = TrialSetup(space, str(paths.experiment_dir))
    trainable = tune.with_resources(tune.with_parameters(run_trial, setup=setup),
                                    {"cpu": plan.resources.cpus_per_trial, "gpu": plan.resources.gpus_per_trial})
    if resume:
        refuse_restart(paths)
        return tune.Tuner.restore(str(paths.experiment_dir), trainable=trainable, resume_unfinished=True,
                                  resume_errored=stopped_by_full_disk(paths), restart_errored=False)
    scheduler, num_samples, param_space = None, space.search.num_samples, None
    if spec.points is not None:  # every key preset by a point: Tune only checks it against its choices
        from ray.tune.search import BasicVariantGenerator

        search_alg = BasicVariantGenerator(points_to_evaluate=[dict(p) for p in spec.points],
                                           max_concurrent=plan.concurrent)  # it ignores max_concurrent_trials
        num_samples = len(spec.points)
        param_space = {key: tune.choice(list(dict.fromkeys(p[key] for p in spec.points))) for key in spec.points[0]}
    else:
        search_alg = make_searcher(space, setup.objective, storage=optuna_storage_url(paths, spec.optuna_storage),
                                   study_name=paths.name)
    if space.scheduler.name == "asha" and spec.points is None:
        scheduler = PersistentASHA(paths.search_dir / "asha.json", metric=setup.objective,
                                   mode=space.search.mode, max_t=space.search.epochs,
                                   grace_period=space.scheduler.grace_period,
                                   reduction_factor=space.scheduler.reduction_factor)
    from search.sweep.progress import SweepProgress

    shown: list[Any] = [] if spec.verbose else [SweepProgress(
        num_samples if spec.points is not None else space.trials_to_run, setup.objective, space.search.mode,
        space.search.epochs, label="seeds" if spec.points is not None else "trials")]
    return tune.Tuner(
        trainable,
        param_space=param_space,
        tune_config=tune.TuneConfig(
            search_alg=search_alg,
            scheduler=scheduler, num_samples=num_samples,
            max_concurrent_trials=None if spec.points is not None else plan.concurrent,
            reuse_actors=True, trial_name_creator=_trial_name, trial_dirname_creator=_trial_dirname),
        run_config=tune.RunConfig(
            name=paths.name, storage_path=str(paths.storage), callbacks=[JsonLoggerCallback(), TrialLogger(spec.facts),
                                                                        *shown],
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
            failure_config=tune.FailureConfig(max_failures=0), verbose=1 if spec.verbose else 0,
            progress_reporter=tune.CLIReporter(metric_columns=["epoch", setup.objective, "val_loss"],
                                               max_report_frequency=30) if spec.verbose else None),
    )


DISK_FULL = ("No space left on device", "unexpected pos")
"""What a trial's error says when the disk filled up (``unexpected pos``: torch.save's zip writer on a full disk)."""


def stopped_by_full_disk(paths: SweepPaths, trials: list | None = None) -> bool:
    """Whether a trial of the experiment (or of ``trials``) errored because the disk was full: a resume then
    continues the errored trials from their checkpoints (a full disk is an interruption, not a trial's failure)."""
    from search.sweep.outcome import error_text

    for trial in trials or []:
        if trial.status == "ERROR" and any(marker in error_text(trial) for marker in DISK_FULL):
            return True
    for error in paths.experiment_dir.glob("trial_*/error.txt"):
        try:
            text = error.read_text(errors="replace")
        except OSError:
            continue
        if any(marker in text for marker in DISK_FULL):
            return True
    return False


class _RefuseRestart(logging.Filter):
    """Turns Tune's "Failed to restore the run state ... Restarting experiment" (a resume that would silently
    start the sweep over) into a refusal."""

    def __init__(self, paths: SweepPaths) -> None:
        super().__init__()
        self.paths = paths

    def filter(self, record: logging.LogRecord) -> bool:
        if str(record.msg).startswith("Failed to restore the run state"):
            from search.sweep.record import SweepStateError

            cause = record.exc_info[1] if record.exc_info else None
            raise SweepStateError(f"sweep {self.paths.name!r}: Tune could not restore its experiment state in "
                                  f"{self.paths.experiment_dir} ({type(cause).__name__ if cause else 'unknown'}: "
                                  f"{str(cause)[:200]}); refusing to restart it from scratch. Nothing was deleted")
        return True


def refuse_restart(paths: SweepPaths) -> None:
    """Install :class:`_RefuseRestart` on Tune's controller logger (once per process)."""
    tune_logger = logging.getLogger("ray.tune.execution.tune_controller")
    for old in [f for f in tune_logger.filters if isinstance(f, _RefuseRestart)]:
        tune_logger.removeFilter(old)
    tune_logger.addFilter(_RefuseRestart(paths))


def optuna_storage_url(paths: SweepPaths, url: str | None = None) -> str:
    """The Optuna storage of a sweep's study (named after the sweep): ``url``, else
    ``sqlite:///<storage>/<name>/search/optuna.db``, which ``optuna.load_study`` and ``optuna-dashboard`` open."""
    return url or f"sqlite:///{(paths.search_dir / 'optuna.db').resolve().as_posix()}"


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


def run_group(spec: TunerSpec, target: TrackingTarget, *, resume: bool) -> list:
    """A group of child runs under an existing parent run (``target``): the seeds of ``search.retrain``, the
    confirmation of ``search.run``. Fits ``spec``'s Tuner (restored when ``resume`` and Tune saved the experiment:
    finished trials are not rerun) and returns its saved trials."""
    from ray import tune

    target.save(spec.paths.search_dir)  # where the trial logger looks for its parent run
    restore = resume and tune.Tuner.can_restore(str(spec.paths.experiment_dir))
    return fit(make_tuner(spec, resume=restore), spec.paths, spec.facts)


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
