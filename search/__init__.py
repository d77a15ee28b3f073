"""Hyperparameter sweeps: Ray Tune + Optuna + ASHA over ``vad.training``, logged to MLflow (``python -m search.run``).

From Python: ``from search import run_sweep`` (see :mod:`search.api`). The names are loaded on first use, so that
``python -m search.run --help`` imports nothing heavy.
"""

from typing import Any

__all__ = ["SweepError", "SweepResult", "load_result", "run_sweep"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from search import api

        return getattr(api, name)
    raise AttributeError(f"module 'search' has no attribute {name!r}")
