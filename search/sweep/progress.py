"""What a sweep prints while it runs: one progress bar and one line per finished trial, instead of Ray's tables.

:class:`SweepProgress` is a Tune callback (``search.sweep.tuner`` adds it unless ``--verbose`` asks for Ray's own status
table). The bar shows trials done / total, how many run, elapsed time and ETA, and the best ranking value so far
with its trial (``t003``); each finished trial adds one line above it. The lines a user cannot act on are silenced
by :func:`search.sweep.session.quiet_loggers` and ``quiet_optuna``.
"""

from __future__ import annotations

import math
import sys
from typing import Any

from ray.tune import Callback

from search.sweep.naming import trial_number

FINISHED = ("TERMINATED", "ERROR")


def format_value(value: float | None) -> str:
    """``0.123456`` -> ``0.1235``; ``-`` for none."""
    return "-" if value is None else f"{value:.4g}"


class SweepProgress(Callback):
    """A tqdm bar over a Tune experiment's trials and one line per finished trial.

    ``total`` is the number of trials the sweep will run, ``objective`` the reported key it ranks on
    (``best_<metric>``), ``mode`` ``min`` or ``max``, ``epochs`` each trial's budget (a trial that ends earlier
    was stopped by the scheduler). Only these settings are pickled with the Tuner; a restored sweep counts the
    trials that had already ended from Tune's trial list.
    """

    def __init__(self, total: int, objective: str, mode: str, epochs: int, *, label: str = "trials",
                 file: Any = None) -> None:
        self.total, self.objective, self.mode, self.epochs, self.label = total, objective, mode, epochs, label
        self.file = file
        self._bar: Any = None
        self._ended: set[str] = set()

    def __getstate__(self) -> dict[str, Any]:
        return {"total": self.total, "objective": self.objective, "mode": self.mode, "epochs": self.epochs,
                "label": self.label}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["total"], state["objective"], state["mode"], state["epochs"], label=state["label"])

    # ------------------------------------------------------------------ what the bar shows
    def name(self, number: int) -> str:
        """``t003`` for a search trial; ``run 3`` for the runs of a seed group (their numbers are not the search's)."""
        return f"t{number:03d}" if self.label == "trials" else f"run {number}"

    @property
    def shown(self) -> str:
        """The ranking metric as people name it (``val_loss``, not the reported key ``best_val_loss``)."""
        return self.objective.removeprefix("best_")

    def best(self, trials: list) -> tuple[float, int] | None:
        """The best ranking value so far over ``trials`` (their latest results) and its trial number."""
        found = None
        for trial in trials:
            value = (getattr(trial, "last_result", None) or {}).get(self.objective)
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                continue
            better = found is None or (value < found[0] if self.mode == "min" else value > found[0])
            if better:
                found = (float(value), trial_number(trial))
        return found

    def counts(self, trials: list) -> tuple[int, int]:
        """``(done, running)`` among ``trials``."""
        done = {t.trial_id for t in trials if t.status in FINISHED} | self._ended
        running = sum(1 for t in trials if t.status == "RUNNING" and t.trial_id not in done)
        return len(done), running

    def postfix(self, trials: list) -> str:
        done, running = self.counts(trials)
        best = self.best(trials)
        text = f"{running} running"
        if best is not None:
            text += f", best {self.shown} {format_value(best[0])} ({self.name(best[1])})"
        return text

    def finished_line(self, trial: Any, failed: bool) -> str:
        """``t003 finished: 8/8 epochs, best_val_loss 0.1234`` (``stopped at epoch 2``, ``FAILED: ...``)."""
        result = getattr(trial, "last_result", None) or {}
        epochs = int(result.get("epoch", 0) or result.get("training_iteration", 0) or 0)
        value = result.get(self.objective)
        value = float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None
        head = self.name(trial_number(trial))
        if failed:
            return f"{head} FAILED after {epochs} epoch(s) (see its MLflow run or error.txt)"
        how = "finished" if epochs >= self.epochs else f"stopped early at epoch {epochs}/{self.epochs}"
        return f"{head} {how}: {self.shown} {format_value(value)}"

    # ------------------------------------------------------------------ Tune hooks
    def _update(self, trials: list) -> None:
        bar = self._open()
        done, _ = self.counts(trials)
        bar.n = min(done, bar.total) if bar.total else done
        bar.set_postfix_str(self.postfix(trials), refresh=False)
        bar.refresh()

    def _open(self) -> Any:
        if self._bar is None:
            from tqdm import tqdm

            self._bar = tqdm(total=self.total, desc=self.label, unit="trial", file=self.file or sys.stderr,
                             dynamic_ncols=True, mininterval=1.0, smoothing=0.0,
                             bar_format="{desc}: {n_fmt}/{total_fmt} |{bar:20}| [{elapsed}<{remaining}{postfix}]")
        return self._bar

    def on_step_begin(self, iteration: int, trials: list, **info: Any) -> None:
        if self._bar is None:
            self._update(trials)

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._update(trials)

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        self._update(trials)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._end(trials, trial, failed=False)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._end(trials, trial, failed=True)

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        if self._bar is not None:
            self._update(trials)
            self._bar.close()
            self._bar = None

    def _end(self, trials: list, trial: Any, *, failed: bool) -> None:
        if trial.trial_id in self._ended:
            return
        self._ended.add(trial.trial_id)
        bar = self._open()
        bar.write(self.finished_line(trial, failed), file=self.file or sys.stderr)
        self._update(trials)
