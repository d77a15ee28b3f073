"""The function trainable: one Tune trial = one ``vad.train.train`` run, reported every epoch.

This is the only module that calls Tune's reporting and checkpoint API (``tune.report``, ``tune.get_checkpoint``,
``tune.Checkpoint``). A trial trains into ``<experiment dir>/trial_<trial id>/run/`` (``last.pt``, ``best.pt``,
``scores.npz``, ``result.json``), hands Tune the epoch's metrics with a checkpoint directory holding ``last.pt``
(every ``checkpoint_every`` epochs and at the last one) and, restored after an interruption, continues exactly
from the ``last.pt`` of its latest Tune checkpoint.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ray import tune

from search.sweep.space import SearchSpace

STATE_FILE = "search_state.json"
"""Beside ``last.pt`` in each Tune checkpoint: the trial's ranked value and selected epoch so far."""


class TrialDiverged(RuntimeError):
    """The training loss became non-finite; raised so that Tune marks the trial ERROR (and MLflow FAILED)."""


@dataclass(frozen=True)
class TrialSetup:
    """What every trial of a sweep shares (handed to the trainable through ``tune.with_parameters``)."""

    space: SearchSpace
    experiment_dir: str
    """Absolute ``<storage>/<sweep name>``: trials write into ``trial_dir(experiment_dir, trial_id)``."""

    @property
    def objective(self) -> str:
        """The key Tune, ASHA and Optuna optimise: the space's metric at the trial's selected checkpoint."""
        return objective_key(self.space.search.metric)


def objective_key(metric: str) -> str:
    """``best_<metric>``: the value of ``metric`` at the trial's selected checkpoint so far (the engine's
    ``selected_value``: under the checkpoint selector's rule and ``min_delta``, so the ranked value is always the
    selected checkpoint's, never a lower point the selector ignored)."""
    return f"best_{metric}"


def added_keys(metric: str) -> tuple[str, str]:
    """The keys a trial reports beyond the training engine's: ``best_<metric>`` and ``selection_epoch`` (the
    epoch of the selected checkpoint so far, 0 before any)."""
    return objective_key(metric), "selection_epoch"


def selected_value(metrics: dict[str, Any], metric: str, previous: float | None) -> float | None:
    """The ranked value after one epoch's ``metrics``: the engine's ``selected_value`` (the selection rule's value
    at the selected checkpoint) when it reports one; else, for an engine without selection rules, ``metric`` at
    the epoch flagged ``is_best`` (the checkpoint selector's choice, ``min_delta`` included) or ``previous``."""
    value = metrics.get("selected_value")
    if value is None and metrics.get("is_best"):
        value = metrics.get(metric)
    if isinstance(value, (int, float)) and math.isfinite(value):
        return float(value)
    return previous


def trial_dir(experiment_dir: str | Path, trial_id: str) -> Path:
    """A trial's folder inside the experiment (see the sweep's ``trial_dirname_creator``)."""
    return Path(experiment_dir) / trial_dirname(trial_id)


def trial_dirname(trial_id: str) -> str:
    return f"trial_{trial_id}"


def run_dir(experiment_dir: str | Path, trial_id: str) -> Path:
    """Where ``vad.train.train`` writes a trial's checkpoints, scores and result."""
    return trial_dir(experiment_dir, trial_id) / "run"


def run_trial(params: dict[str, Any], setup: TrialSetup) -> None:
    """Train one configuration, reporting every epoch to Tune; a diverged run raises :class:`TrialDiverged`.

    The data comes from the manifest of the sweep's one-off preparation (:func:`vad.prepare.open_prepared`):
    the trial parses no list, stats no feature file and rebuilds no ground truth."""
    from vad.prepare import open_prepared  # imported here: the driver only pickles this function
    from vad.training import train

    space = setup.space
    config = space.trial_config(params)  # train.selection = the space's metric, train.reference_loss = base loss
    out = run_dir(setup.experiment_dir, tune.get_context().get_trial_id())
    out.mkdir(parents=True, exist_ok=True)
    resume, state = _restore(out)
    reporter = _Reporter(space.search.metric, space.search.checkpoint_every, space.search.epochs, state)
    result = train(config, reporter, out_dir=out, resume=resume, prepared=open_prepared(config))
    if result.status == "diverged":
        raise TrialDiverged(f"{result.message} (params {params})")


def _restore(out: Path) -> tuple[Path | None, dict[str, Any]]:
    """The ``last.pt`` to resume from (copied out of Tune's latest checkpoint) and the saved reporter state."""
    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        return None, {}
    try:
        with checkpoint.as_directory() as folder:
            return _read_checkpoint(Path(folder), out)
    except FileNotFoundError:
        # The experiment's last snapshot named a checkpoint that ``num_to_keep`` deleted before the driver was
        # killed: continue from the newest checkpoint this trial still has (later epochs, never earlier ones).
        siblings = sorted(Path(checkpoint.path).parent.glob("checkpoint_*"), reverse=True)
        newest = next((folder for folder in siblings if (folder / "last.pt").is_file()), None)
        return _read_checkpoint(newest, out) if newest is not None else (None, {})


def _read_checkpoint(folder: Path, out: Path) -> tuple[Path, dict[str, Any]]:
    resume = out / "resume.pt"
    shutil.copyfile(folder / "last.pt", resume)
    state_file = folder / STATE_FILE
    state = json.loads(state_file.read_text()) if state_file.is_file() else {}
    return resume, state


class _Reporter:
    """``report(metrics, out_dir)`` for ``vad.train.train``: adds the sweep metric's value at the selected
    checkpoint and the selected epoch (see :func:`added_keys`), and hands everything to ``tune.report``."""

    def __init__(self, metric: str, every: int, epochs: int, state: dict[str, Any]) -> None:
        self.metric, self.every, self.epochs = metric, every, epochs
        self.best: float | None = state.get("best")
        self.selection_epoch: int | None = state.get("selection_epoch")

    def __call__(self, metrics: dict[str, Any], out_dir: Path) -> None:
        epoch = int(metrics["epoch"])
        self.best = selected_value(metrics, self.metric, self.best)
        if metrics.get("is_best"):
            self.selection_epoch = epoch
        best_key, epoch_key = added_keys(self.metric)
        payload = {**metrics, best_key: self.best if self.best is not None else math.nan,
                   epoch_key: self.selection_epoch or 0}
        if epoch % self.every and epoch < self.epochs:
            tune.report(payload)
            return
        with tempfile.TemporaryDirectory(dir=out_dir, prefix=".checkpoint-") as folder:
            _link_or_copy(Path(out_dir) / "last.pt", Path(folder) / "last.pt")
            (Path(folder) / STATE_FILE).write_text(json.dumps({"best": self.best,
                                                               "selection_epoch": self.selection_epoch}))
            tune.report(payload, checkpoint=tune.Checkpoint.from_directory(folder))


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)  # same folder tree: no copy (Tune copies it into its checkpoint folder)
    except OSError:
        shutil.copyfile(source, target)
