"""The Optuna searcher of a space: TPE (default), random, or a grid through Optuna's ``GridSampler``; the paper
defaults first.

The space is handed to ``OptunaSearch`` as a dict of Optuna distributions (picklable, so Tune can save and restore
the study with the experiment); list-valued candidates travel as JSON strings (see :class:`search.space.Param`).
"""

from __future__ import annotations

from typing import Any

import optuna
from ray.tune.search.optuna import OptunaSearch

from search.space import Param, SearchSpace


class BaselineFirstGridSampler(optuna.samplers.GridSampler):
    """Optuna's grid sampler with the baseline point moved to the front of its (shuffled) grid, so that trial 0
    is the paper defaults and the grid still runs every point exactly once."""

    def __init__(self, grid: dict[str, list[Any]], baseline: dict[str, Any], seed: int | None = None) -> None:
        super().__init__(grid, seed=seed)
        point = tuple(baseline[name] for name in self._param_names)
        if point in self._all_grids:  # GridSampler gives trial number i the i-th point of this list
            self._all_grids.remove(point)
            self._all_grids.insert(0, point)


def distribution(param: Param) -> optuna.distributions.BaseDistribution:
    """The Optuna distribution of one searched key."""
    if param.kind in ("choice", "grid"):
        return optuna.distributions.CategoricalDistribution(param.candidates())
    lo, hi = param.values
    if param.kind == "int":
        return optuna.distributions.IntDistribution(int(lo), int(hi))
    return optuna.distributions.FloatDistribution(float(lo), float(hi), log=param.kind == "loguniform")


def make_sampler(space: SearchSpace) -> optuna.samplers.BaseSampler:
    """TPE, random or the baseline-first grid, seeded by ``search.seed``."""
    seed = space.search.seed
    if space.search.sampler == "grid":
        grid = {name: p.candidates() for name, p in space.params.items()}
        return BaselineFirstGridSampler(grid, space.baseline_point(), seed=seed)
    if space.search.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def make_searcher(space: SearchSpace, metric: str) -> OptunaSearch:
    """``OptunaSearch`` over the space; ``metric`` is the reported key it optimises. The grid sampler orders the
    baseline itself; the other samplers get it through ``points_to_evaluate``."""
    grid = space.search.sampler == "grid"
    return OptunaSearch(
        space={name: distribution(p) for name, p in space.params.items()},
        metric=metric,
        mode=space.search.mode,
        points_to_evaluate=None if grid else [space.baseline_point()],
        sampler=make_sampler(space),
    )
