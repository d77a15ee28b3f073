"""Optuna internals, and Ray Tune's ``OptunaSearch`` internals around its study, in one place.

:class:`search.sweep.searcher.BaselineFirstGridSampler` reorders ``GridSampler``'s shuffled grid so trial 0 is the
paper defaults; :class:`search.sweep.searcher.DistinctPointSearch` reads the Optuna trial behind a Tune trial id, tells
duplicates back to the study and draws unseen points from the searcher's space. Neither library exposes these.
"""

from __future__ import annotations

from typing import Any

import optuna
from ray.tune.search.optuna import OptunaSearch

from search.adapters import AdapterError, require

ADAPTER = "search/adapters/optuna.py"


def move_grid_point_first(sampler: optuna.samplers.GridSampler, point: dict[str, Any]) -> bool:
    """Put ``point`` (``{param: value}``) at the front of the sampler's grid, so trial number 0 runs it (the
    sampler gives trial number i the i-th point of that list); ``False`` when the point is not on the grid."""
    grid = sampler._all_grids
    values = tuple(point[name] for name in sampler._param_names)
    if values not in grid:
        return False
    grid.remove(values)
    grid.insert(0, values)
    return True


def study(search: OptunaSearch) -> optuna.Study:
    """The Optuna study behind the Tune searcher (``None`` before the searcher has a space)."""
    return search._ot_study


def asked_trial(search: OptunaSearch, trial_id: str) -> optuna.Trial:
    """The Optuna trial the searcher asked for Tune trial ``trial_id`` (still open)."""
    return search._ot_trials[trial_id]


def pop_asked_trial(search: OptunaSearch, trial_id: str) -> optuna.Trial:
    """:func:`asked_trial`, forgotten by the searcher (the caller tells it to the study)."""
    return search._ot_trials.pop(trial_id)


def search_space(search: OptunaSearch) -> dict[str, optuna.distributions.BaseDistribution]:
    """The searcher's space, ``{param: Optuna distribution}``, in the searcher's order."""
    return search._space


def check() -> None:
    """Verify on a real ``GridSampler`` and ``OptunaSearch`` of the installed versions that every internal above
    exists with the shape this module expects; :class:`search.adapters.AdapterError` otherwise."""
    import ray

    sampler = optuna.samplers.GridSampler({"b": [1, 2], "a": ["x", "y"]}, seed=0)
    require("optuna", optuna.__version__, ADAPTER, sampler, "_all_grids", list)
    names = require("optuna", optuna.__version__, ADAPTER, sampler, "_param_names", list)
    moved = move_grid_point_first(sampler, {"a": "y", "b": 2})
    if names != ["a", "b"] or not moved or sampler._all_grids[0] != ("y", 2):
        raise AdapterError(f"optuna {optuna.__version__}: GridSampler._all_grids no longer holds tuples of values "
                           f"in the order of GridSampler._param_names ({ADAPTER} relies on it)")

    space = {"a": optuna.distributions.CategoricalDistribution(["x", "y"])}
    search = OptunaSearch(space=space, metric="m", mode="min", sampler=optuna.samplers.RandomSampler(seed=0))
    version = f"{ray.__version__} (optuna {optuna.__version__})"
    require("ray[tune]", version, ADAPTER, search, "_space", dict)
    require("ray[tune]", version, ADAPTER, search, "_ot_study", optuna.Study)
    trials = require("ray[tune]", version, ADAPTER, search, "_ot_trials", dict)
    search.suggest("t0")
    if not isinstance(trials.get("t0"), optuna.Trial):
        raise AdapterError(f"ray[tune] {version}: OptunaSearch._ot_trials no longer maps a Tune trial id to the "
                           f"asked optuna.Trial ({ADAPTER} relies on it)")
