"""ASHA whose rungs survive a driver restart.

``Tuner.restore`` brings the searcher back but not the scheduler's rung history (it restores the scheduler as it
was pickled when the sweep started, i.e. empty). :class:`PersistentASHA` writes its rungs and its stop decisions to
a JSON file after every decision and reloads them when a resumed sweep first uses it, so a resumed sweep cuts
trials against the same history and a trial that was stopped before the restart is stopped again when it replays
the epochs after its last checkpoint.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from ray.tune.schedulers import AsyncHyperBandScheduler, TrialScheduler

from search.adapters import tune as tune_adapter
from vad.atomic import atomic_write_json

logger = logging.getLogger(__name__)


class PersistentASHA(AsyncHyperBandScheduler):
    """``AsyncHyperBandScheduler`` (one bracket, ``time_attr="epoch"``) persisted to ``state_path``.

    A trial that reaches ``max_t`` is never stopped (``stop_last_trials`` off, and no cut at a rung placed at
    ``max_t``): it ends by itself, so the trainable finishes its run and writes its result.
    """

    def __init__(self, state_path: str | Path, *, metric: str, mode: str, max_t: int, grace_period: int,
                 reduction_factor: float) -> None:
        super().__init__(time_attr="epoch", metric=metric, mode=mode, max_t=max_t, grace_period=grace_period,
                         reduction_factor=reduction_factor, brackets=1, stop_last_trials=False)
        self.state_path = str(Path(state_path).resolve())
        self.stopped: dict[str, float] = {}
        """Trials stopped by ASHA -> the epoch at which they were stopped."""
        self._loaded = False
        self._added: set[str] = set()
        self._pruned = False

    # ---------------------------------------------------------------------------------------------- Tune hooks
    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        self._load()
        self._added.add(trial.trial_id)
        super().on_trial_add(tune_controller, trial)

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        self._prune_unknown()
        epoch = result.get(tune_adapter.time_attr(self))
        stopped_at = self.stopped.get(trial.trial_id)
        if stopped_at is not None and epoch is not None and epoch >= stopped_at:
            return TrialScheduler.STOP  # a replay after a restart: the decision was taken already
        action = super().on_trial_result(tune_controller, trial, result)  # records the rung value
        if epoch is not None and epoch >= tune_adapter.max_t(self):
            action = TrialScheduler.CONTINUE  # its last epoch: let the run finish (final evaluation, result.json)
        if action == TrialScheduler.STOP and epoch is not None:
            self.stopped[trial.trial_id] = float(epoch)
        self._save()
        return action

    def on_trial_complete(self, tune_controller: Any, trial: Any, result: dict) -> None:
        if tune_adapter.knows_trial(self, trial.trial_id):
            super().on_trial_complete(tune_controller, trial, result)
            self._save()

    def on_trial_remove(self, tune_controller: Any, trial: Any) -> None:
        tune_adapter.forget_trial(self, trial.trial_id)

    # ---------------------------------------------------------------------------------------------- persistence
    def rungs(self) -> list[dict[str, Any]]:
        """``[{"milestone": m, "recorded": {trial_id: signed metric}}]`` of the bracket (highest milestone first)."""
        return [{"milestone": milestone, "recorded": dict(recorded)}
                for milestone, recorded in tune_adapter.rungs(self)]

    def _save(self) -> None:
        state = {"rungs": self.rungs(), "stopped": self.stopped, "num_stopped": tune_adapter.num_stopped(self)}
        atomic_write_json(Path(self.state_path), state, indent=1)

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        path = Path(self.state_path)
        if not path.is_file():
            return
        state = json.loads(path.read_text())
        saved = {float(rung["milestone"]): rung["recorded"] for rung in state["rungs"]}
        for milestone, recorded in tune_adapter.rungs(self):
            recorded.update(saved.get(float(milestone), {}))
        self.stopped = {k: float(v) for k, v in state.get("stopped", {}).items()}
        tune_adapter.set_num_stopped(self, int(state.get("num_stopped", len(self.stopped))))
        logger.info("ASHA: reloaded %d rung entries from %s", sum(len(r) for r in saved.values()), path)

    def _prune_unknown(self) -> None:
        """Once every restored trial was added, forget rung entries of trials the experiment does not know (a
        trial started after the last experiment snapshot of a killed driver, which the searcher never saw)."""
        if self._pruned:
            return
        self._pruned = True
        for _, recorded in tune_adapter.rungs(self):
            for trial_id in [t for t in recorded if t not in self._added]:
                del recorded[trial_id]
        self.stopped = {t: e for t, e in self.stopped.items() if t in self._added}
