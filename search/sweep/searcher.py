"""The Optuna searcher of a space: TPE (default), random, or a grid through Optuna's ``GridSampler``; the paper
defaults first.

The space is handed to ``OptunaSearch`` as a dict of Optuna distributions (picklable, so Tune can save and restore
the study with the experiment); list-valued candidates travel as JSON strings (see :class:`search.sweep.space.Param`).
"""

from __future__ import annotations

import itertools
import logging
import random
from pathlib import Path
from typing import Any

import optuna
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from search.adapters import optuna as ot_adapter
from search.sweep.space import Param, SearchSpace


class BaselineFirstGridSampler(optuna.samplers.GridSampler):
    """Optuna's grid sampler with the baseline point moved to the front of its (shuffled) grid, so that trial 0
    is the paper defaults and the grid still runs every point exactly once."""

    def __init__(self, grid: dict[str, list[Any]], baseline: dict[str, Any], seed: int | None = None) -> None:
        super().__init__(grid, seed=seed)
        ot_adapter.move_grid_point_first(self, baseline)


logger = logging.getLogger(__name__)

REDRAWS = 32  # sampler draws per trial before a finite space's unseen point is picked at random
ENUMERABLE = 100_000  # finite spaces up to this size are enumerated for that fallback


class DistinctPointSearch(OptunaSearch):
    """``OptunaSearch`` that never runs a point of a finite space twice.

    In a space whose every key is a ``choice`` or an ``int``, TPE and random sampling repeat points (16 trials over
    a 4 x 4 space visit 10-13 distinct cells), and each repeat costs a trial's epochs for no information. A
    suggestion equal to a point already running or told is told back to the study as FAIL (TPE ignores failed
    trials; the Optuna trial keeps the user attribute ``duplicate_redrawn``) and the sampler draws again; after
    :data:`REDRAWS` draws an unseen point is taken at random. When every point has been run the sweep ends: the
    searcher returns ``Searcher.FINISHED``. Spaces with a continuous key behave exactly as ``OptunaSearch``.
    """

    def __init__(self, *args: Any, finite_size: int | None = None, seed: int | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._finite_size = finite_size
        self._rng = random.Random(seed)

    def suggest(self, trial_id: str) -> dict | str | None:
        config = super().suggest(trial_id)
        if self._finite_size is None or not isinstance(config, dict):
            return config
        for draw in range(REDRAWS + 1):
            asked = ot_adapter.asked_trial(self, trial_id)
            seen = self._seen_points(exclude=asked.number)
            if self._point(asked.params) not in seen:
                return config
            if len(seen) >= self._finite_size:
                self._discard(trial_id)
                logger.info("All %d points of the finite space have been run: the sweep ends.", self._finite_size)
                return Searcher.FINISHED
            self._discard(trial_id)
            if draw == REDRAWS - 1:
                ot_adapter.study(self).enqueue_trial(self._random_unseen(seen))
            config = super().suggest(trial_id)
        return config

    def _point(self, params: dict[str, Any]) -> tuple:
        return tuple(params.get(name) for name in ot_adapter.search_space(self))

    def _seen_points(self, exclude: int) -> set[tuple]:
        """Points of the study's trials that ran (failed ones too: a diverged point diverges again), run or wait
        to run; not the redrawn duplicates."""
        return {self._point(t.params) for t in ot_adapter.study(self).get_trials(deepcopy=False)
                if t.number != exclude and not t.user_attrs.get("duplicate_redrawn")}

    def _discard(self, trial_id: str) -> None:
        asked = ot_adapter.pop_asked_trial(self, trial_id)
        asked.set_user_attr("duplicate_redrawn", True)
        ot_adapter.study(self).tell(asked, state=optuna.trial.TrialState.FAIL)

    def _random_unseen(self, seen: set[tuple]) -> dict[str, Any]:
        space = ot_adapter.search_space(self)
        values = [_finite_values(d) for d in space.values()]
        if self._finite_size <= ENUMERABLE:
            unseen = [point for point in itertools.product(*values) if point not in seen]
            point = self._rng.choice(unseen)
        else:  # too many points to list: a uniform draw is almost surely unseen
            point = tuple(self._rng.choice(v) for v in values)
        return dict(zip(space, point))


def _finite_values(dist: optuna.distributions.BaseDistribution) -> list[Any]:
    if isinstance(dist, optuna.distributions.CategoricalDistribution):
        return list(dist.choices)
    return list(range(dist.low, dist.high + 1, dist.step))


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


def make_searcher(space: SearchSpace, metric: str, *, storage: str | None = None,
                  study_name: str | None = None) -> OptunaSearch:
    """The Optuna searcher of the space; ``metric`` is the reported key it optimises. The grid sampler orders the
    baseline itself; the other samplers get it through ``points_to_evaluate`` and, in a finite space, never repeat
    a point (:class:`DistinctPointSearch`). With ``storage`` (an Optuna storage URL) the study ``study_name`` lives
    there (``optuna.load_study`` opens it); else in memory."""
    grid = space.search.sampler == "grid"
    if storage and storage.startswith("sqlite:///"):
        Path(storage[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    return DistinctPointSearch(
        space={name: distribution(p) for name, p in space.params.items()},
        metric=metric,
        mode=space.search.mode,
        points_to_evaluate=None if grid else [space.baseline_point()],
        sampler=make_sampler(space),
        finite_size=None if grid else space.finite_size,
        seed=space.search.seed,
        study_name=study_name,
        storage=optuna.storages.RDBStorage(storage) if storage else None,
    )
