"""Model selection and early stopping on one metric, as a small pure state machine (checkpointable)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

#: Which direction is better for each selection metric.
MODES = {"val_loss": "min", "val_video_auc": "max", "test_auc": "max", "test_ap": "max"}


@dataclass
class Selector:
    """Tracks the best epoch of ``metric`` and when to stop.

    ``update(epoch, metrics)`` returns True when this epoch is the new best (strictly better by more than
    ``min_delta``); ``should_stop`` turns True after ``patience`` epochs without improvement. A non-finite metric
    never counts as an improvement.
    """

    metric: str = "val_loss"
    patience: int | None = None
    min_delta: float = 0.0
    best_value: float | None = None
    best_epoch: int | None = None
    epochs_without_improvement: int = 0

    def __post_init__(self) -> None:
        if self.metric not in MODES:
            raise ValueError(f"selection: unknown metric {self.metric!r}; choose one of {', '.join(MODES)}")

    @property
    def mode(self) -> str:
        """``min`` or ``max``."""
        return MODES[self.metric]

    def is_better(self, value: float) -> bool:
        """Whether ``value`` beats the best so far by more than ``min_delta``."""
        if value is None or not math.isfinite(value):
            return False
        if self.best_value is None:
            return True
        if self.mode == "min":
            return value < self.best_value - self.min_delta
        return value > self.best_value + self.min_delta

    def update(self, epoch: int, metrics: dict[str, float]) -> bool:
        """Record ``metrics`` of ``epoch``; True when it is the new best."""
        if self.metric not in metrics:
            raise KeyError(f"selection metric {self.metric!r} was not computed this epoch")
        value = float(metrics[self.metric])
        if self.is_better(value):
            self.best_value, self.best_epoch = value, epoch
            self.epochs_without_improvement = 0
            return True
        self.epochs_without_improvement += 1
        return False

    @property
    def should_stop(self) -> bool:
        """True once ``patience`` epochs passed without improvement."""
        return self.patience is not None and self.epochs_without_improvement >= self.patience

    def state_dict(self) -> dict:
        """Plain values for checkpoints."""
        return asdict(self)

    @classmethod
    def from_state_dict(cls, state: dict) -> Selector:
        """Inverse of :meth:`state_dict`."""
        return cls(**state)
