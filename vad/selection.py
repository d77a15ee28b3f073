"""Model selection and early stopping on one metric, as a small pure state machine (checkpointable).

A selection *rule* turns the metric's per-epoch values into the curve the checkpoint is chosen on:

- ``min``: the raw values (the lowest loss, the highest AUC: today's rule);
- ``moving_average``: the mean of the last ``window`` epochs' values (fewer at the start);
- ``ema``: ``s_e = alpha * x_e + (1 - alpha) * s_(e-1)``, ``s_1 = x_1``.

The checkpoint is the epoch where the rule's value is best, by more than ``min_delta`` over the best so far;
``patience`` counts epochs without such an improvement. Non-finite values are left out of the smoothing and
never selected. Direction and the allowed metrics come from :mod:`vad.metrics.catalogue`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from vad.metrics.catalogue import get_metric, selectable_metrics

RULES = ("min", "moving_average", "ema")


@dataclass
class Selector:
    """Tracks the best epoch of ``metric`` under ``rule`` and when to stop.

    ``update(epoch, metrics)`` returns True when this epoch is the new best; afterwards ``selection_value`` is the
    rule's value at this epoch and ``selected_value`` (= ``best_value``) the value at the selected epoch (``nan``
    while nothing is selected). ``should_stop`` turns True after ``patience`` epochs without improvement.
    """

    metric: str = "val_loss"
    patience: int | None = None
    min_delta: float = 0.0
    rule: str = "min"
    window: int = 3
    alpha: float = 0.5
    best_value: float | None = None
    best_epoch: int | None = None
    epochs_without_improvement: int = 0
    recent: list[float] = field(default_factory=list)
    """The last ``window`` raw values (``moving_average``)."""
    smoothed: float | None = None
    """The running EMA (``ema``)."""
    current: float | None = None
    """The rule's value at the last updated epoch."""

    def __post_init__(self) -> None:
        allowed = selectable_metrics()
        if self.metric not in allowed:
            raise ValueError(f"selection: unknown metric {self.metric!r}; choose one of {', '.join(allowed)}")
        if self.rule not in RULES:
            raise ValueError(f"selection: unknown rule {self.rule!r}; choose one of {', '.join(RULES)}")
        if self.window < 1:
            raise ValueError(f"selection: window must be at least 1, got {self.window}")
        if not 0.0 < self.alpha <= 1.0:
            raise ValueError(f"selection: the EMA's alpha must lie in (0, 1], got {self.alpha}")
        if self.min_delta < 0:
            raise ValueError(f"selection: min_delta must not be negative, got {self.min_delta}")

    @property
    def mode(self) -> str:
        """``min`` or ``max``."""
        return get_metric(self.metric).mode

    @property
    def chosen_by(self) -> str:
        """``test`` when the metric comes from the test set (the papers' protocol), else ``val``."""
        return "test" if get_metric(self.metric).uses_test_data else "val"

    @property
    def selection_value(self) -> float:
        """The rule's value at the last updated epoch (``nan`` before any or when undefined)."""
        return float("nan") if self.current is None else self.current

    @property
    def selected_value(self) -> float:
        """The rule's value at the selected epoch (``nan`` while nothing is selected)."""
        return float("nan") if self.best_value is None else self.best_value

    def is_better(self, value: float | None) -> bool:
        """Whether ``value`` beats the best so far by more than ``min_delta``."""
        if value is None or not math.isfinite(value):
            return False
        if self.best_value is None:
            return True
        if self.mode == "min":
            return value < self.best_value - self.min_delta
        return value > self.best_value + self.min_delta

    def smooth(self, value: float) -> float:
        """Feed one raw value to the rule; returns the rule's value at this epoch (``nan`` when undefined)."""
        finite = math.isfinite(value)
        if self.rule == "min":
            return value if finite else float("nan")
        if self.rule == "moving_average":
            self.recent = [*self.recent, value][-self.window:]
            kept = [v for v in self.recent if math.isfinite(v)]
            return sum(kept) / len(kept) if finite and kept else float("nan")
        if finite:
            self.smoothed = value if self.smoothed is None else self.alpha * value + (1 - self.alpha) * self.smoothed
            return self.smoothed
        return float("nan")

    def update(self, epoch: int, metrics: dict[str, float]) -> bool:
        """Record ``metrics`` of ``epoch``; True when it is the new best."""
        if self.metric not in metrics:
            raise KeyError(f"selection metric {self.metric!r} was not computed this epoch")
        value = self.smooth(float(metrics[self.metric]))
        self.current = value
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
        """Inverse of :meth:`state_dict` (a checkpoint written before the rules existed loads as ``min``)."""
        return cls(**state)


def select_epoch(values: list[float], metric: str, *, rule: str = "min", window: int = 3, alpha: float = 0.5,
                 min_delta: float = 0.0) -> int | None:
    """The epoch (1-based) a :class:`Selector` picks from a whole history of ``metric`` values (offline)."""
    selector = Selector(metric, None, min_delta, rule, window, alpha)
    for epoch, value in enumerate(values, start=1):
        selector.update(epoch, {metric: value})
    return selector.best_epoch
