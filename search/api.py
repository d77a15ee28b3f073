"""A Python API for notebooks: :func:`run_sweep` runs the same sweep as ``python -m search.run`` (the command is a
thin wrapper over the same code) and returns a :class:`SweepResult`.

>>> from search import run_sweep
>>> result = run_sweep("spaces/demo.yaml", sweep="demo", confirm_seeds=2)
>>> result.trials.sort_values("objective").head()       # one row per trial: searched values, ranking value, status
>>> result.best_config                                 # the confirmed winner, as vad.train --config reads it
>>> result.experiment_id, result.tracking_uri          # where MLflow holds the runs
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

OPTIONS = {
    "sweep": "--sweep", "num_samples": "--num-samples", "storage": "--storage", "tracking_uri": "--tracking-uri",
    "optuna_storage": "--optuna-storage", "address": "--address", "cpus_per_trial": "--cpus-per-trial",
    "gpus_per_trial": "--gpus-per-trial", "confirm_top": "--confirm-top", "confirm_seeds": "--confirm-seeds",
}
"""Keyword arguments of :func:`run_sweep` that take a value, and the command-line option each one is."""
FLAGS = {
    "smoke_test": "--smoke-test", "diagnostic": "--diagnostic", "show_test": "--show-test",
    "trust_storage": "--trust-storage", "verbose": "--verbose", "log_to_driver": "--log-to-driver",
}
"""Keyword arguments of :func:`run_sweep` that are on/off, and their command-line flags."""


class SweepError(RuntimeError):
    """A sweep that was refused (bad space, name taken, unreachable tracking server, ...): the message says why."""


@dataclass
class SweepResult:
    """What a sweep left: its status, where its records are, its trials and its (confirmed) best config.

    ``status``: 0 finished, 1 interrupted (resumable with ``resume=True``). ``trials``: a pandas DataFrame with one
    row per trial (``trial``, ``trial_id``, ``status``, ``epochs``, ``objective`` = the ranking value at the trial's
    selected checkpoint, then the searched values, then ``val_*`` metrics at that checkpoint). ``confirmation``: one
    row per confirmed configuration (mean, std and 95% interval of the ranking metric over the fresh seeds), or
    ``None`` when the stage was skipped.
    """

    name: str
    status: int
    experiment_dir: Path
    tracking_uri: str | None
    experiment_id: str | None
    metric: str | None
    mode: str | None
    trials: Any
    best_config: dict[str, Any] | None
    best_config_path: Path | None
    confirmation: Any = None
    summary: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def finished(self) -> bool:
        return self.status == 0


def run_sweep(space: str | Path, *, resume: bool | str = False, **options: Any) -> SweepResult:
    """Run (or with ``resume=True``, continue) the sweep of ``space``; the keyword arguments are the command's
    options with underscores (``sweep``, ``num_samples``, ``storage``, ``tracking_uri``, ``confirm_top``,
    ``confirm_seeds``, ``gpus_per_trial``, ``smoke_test``, ``diagnostic``, ...; see ``python -m search.run
    --help``). ``resume`` may also be a sweep folder. A refusal raises :class:`SweepError` with the command's
    one-line message."""
    from search.cli import tune_errors
    from search.run import parse_args
    from search.run import run_sweep as run_command
    from search.sweep.tracking import SweepExistsError

    args = parse_args(command_line(space, resume=resume, **options))
    try:
        status = run_command(args)
    except (*tune_errors(), SweepExistsError) as exc:
        raise SweepError(str(exc)) from exc
    paths = getattr(args, "sweep_paths", None)
    if paths is None:
        raise SweepError(f"the sweep of {space} did not start")
    return load_result(paths.experiment_dir, status=status)


def command_line(space: str | Path, *, resume: bool | str = False, **options: Any) -> list[str]:
    """The ``search.run`` arguments for :func:`run_sweep`'s keyword arguments (unknown ones are a TypeError)."""
    unknown = sorted(set(options) - set(OPTIONS) - set(FLAGS))
    if unknown:
        raise TypeError(f"run_sweep: unknown option(s) {', '.join(unknown)}; known: "
                        f"{', '.join(sorted([*OPTIONS, *FLAGS, 'resume']))}")
    argv = ["--space", str(space)]
    for key, value in options.items():
        if key in FLAGS and value:
            argv.append(FLAGS[key])
        elif key in OPTIONS and value is not None:
            argv += [OPTIONS[key], str(value)]
    if resume:
        argv += ["--resume"] + ([] if resume is True else [str(resume)])
    return argv


def load_result(experiment_dir: str | Path, *, status: int = 0) -> SweepResult:
    """The :class:`SweepResult` of the sweep in ``experiment_dir`` (``<storage>/<name>``), read from its files."""
    import pandas as pd

    folder = Path(experiment_dir)
    search = folder / "search"
    summary = _json(search / "summary.json")
    tracking = _json(search / "tracking.json")
    rows = [_row(trial) for trial in summary.get("trials", [])]
    best_path = search / "best_config.yaml"
    best = yaml.safe_load(best_path.read_text()) if best_path.is_file() else None
    confirm = _json(search / "confirm.json").get("configurations")
    return SweepResult(
        name=folder.name, status=status, experiment_dir=folder, tracking_uri=tracking.get("tracking_uri"),
        experiment_id=tracking.get("experiment_id"), metric=summary.get("metric"), mode=summary.get("mode"),
        trials=pd.DataFrame(rows), best_config=best, best_config_path=best_path if best is not None else None,
        confirmation=pd.DataFrame(confirm) if confirm else None, summary=summary)


def _row(trial: dict[str, Any]) -> dict[str, Any]:
    outcome = trial.get("outcome") or {}
    return {"trial": f"t{int(trial.get('number', 0)):03d}", "trial_id": trial.get("trial_id"),
            "status": outcome.get("status"), "epochs": outcome.get("epochs_run"), "objective": trial.get("objective"),
            **(trial.get("params") or {}), **(trial.get("selected_val") or {})}


def _json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}
