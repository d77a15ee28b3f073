"""How one trial ended, read from its run folder and Tune's view of it (for MLflow tags and the results table)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from search.sweep.trainable import TrialDiverged


@dataclass(frozen=True)
class TrialOutcome:
    status: str
    """``completed`` or ``early_stopped`` (training ran to its end), ``stopped`` (ASHA cut it), ``diverged``
    (non-finite loss), ``failed`` (any other error), ``interrupted`` (the sweep stopped before it finished)."""
    epochs_run: int
    selected_epoch: int | None
    stopped_by: str | None = None
    error: str | None = None

    def tags(self) -> dict[str, Any]:
        """``train_status``, ``epochs_run`` and, when known, ``selected_epoch``, ``stopped_by``, ``error``."""
        tags: dict[str, Any] = {"train_status": self.status, "epochs_run": self.epochs_run}
        for key in ("selected_epoch", "stopped_by"):
            if getattr(self, key) is not None:
                tags[key] = getattr(self, key)
        if self.error:
            tags["error"] = self.error[-4000:]
        return tags


def trial_outcome(run_folder: str | Path, last_result: dict[str, Any] | None, *, epochs: int,
                  error: str | None = None, interrupted: bool = False) -> TrialOutcome:
    """Classify a trial: ``error`` is its error text when Tune marked it ERROR; ``run_folder/result.json`` exists
    when ``vad.train.train`` ran to its end; otherwise ASHA stopped it before ``epochs``."""
    last = dict(last_result or {})
    epochs_run = int(last.get("epoch", 0) or 0)
    selected = int(last["selection_epoch"]) if last.get("selection_epoch") else None
    if error is not None:
        status = "diverged" if TrialDiverged.__name__ in error else "failed"
        return TrialOutcome(status, epochs_run, selected, error=error)
    if interrupted:
        return TrialOutcome("interrupted", epochs_run, selected)
    result_file = Path(run_folder) / "result.json"
    if result_file.is_file():
        result = json.loads(result_file.read_text())
        selected = result.get("selected_epoch", selected)
        return TrialOutcome(result.get("status", "completed"), len(result.get("epochs", [])) or epochs_run,
                            selected)
    return TrialOutcome("stopped", epochs_run, selected, stopped_by="asha" if epochs_run < epochs else "tune")


def error_text(trial: Any) -> str:
    """The error trace of a Tune trial marked ERROR: the driver's copy (written before callbacks run), else the
    one on the storage."""
    local = getattr(trial, "error_file", None)
    if local and Path(local).is_file():
        return Path(local).read_text()
    try:
        error = trial.get_error()
    except OSError:  # no error file on the storage either: the status alone says enough
        error = None
    return str(error or "trial failed (no error file)")
