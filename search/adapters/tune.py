"""Ray internals, in one place: the rung history and trial bookkeeping of Tune's ``AsyncHyperBandScheduler``, and
the switch that makes a local Ray listen on 127.0.0.1 only (:func:`loopback_only`).

:class:`search.sweep.scheduler.PersistentASHA` saves and restores ASHA's rungs (Tune pickles the scheduler only when a
sweep starts) and needs the scheduler's own settings and trial table; Tune has no public accessor for any of them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import ray
from ray.tune.schedulers import AsyncHyperBandScheduler

from search.adapters import AdapterError, require

ADAPTER = "search/adapters/tune.py"


def rungs(scheduler: AsyncHyperBandScheduler) -> list[tuple[float, dict[str, float]]]:
    """The rungs of the scheduler's first bracket, highest milestone first: ``(milestone, {trial_id: signed
    metric})``. The dicts are the scheduler's own (updating them changes its history)."""
    return scheduler._brackets[0]._rungs


def time_attr(scheduler: AsyncHyperBandScheduler) -> str:
    """The result key ASHA counts progress in (``epoch``)."""
    return scheduler._time_attr


def max_t(scheduler: AsyncHyperBandScheduler) -> float:
    """The progress at which a trial ends."""
    return scheduler._max_t


def knows_trial(scheduler: AsyncHyperBandScheduler, trial_id: str) -> bool:
    """Whether the scheduler holds ``trial_id`` in its trial table (added and not yet completed or removed)."""
    return trial_id in scheduler._trial_info


def forget_trial(scheduler: AsyncHyperBandScheduler, trial_id: str) -> None:
    """Drop ``trial_id`` from the scheduler's trial table (a removed trial; nothing when it is not there)."""
    scheduler._trial_info.pop(trial_id, None)


def num_stopped(scheduler: AsyncHyperBandScheduler) -> int:
    """How many trials ASHA has stopped (its own counter)."""
    return scheduler._num_stopped


def set_num_stopped(scheduler: AsyncHyperBandScheduler, count: int) -> None:
    """Restore ASHA's count of stopped trials."""
    scheduler._num_stopped = count


@contextlib.contextmanager
def loopback_only(enabled: bool) -> Iterator[None]:
    """A local Ray started in the block listens on 127.0.0.1 only (its GCS, raylet and workers), not on every
    interface. Ray 2.60 turns ``_node_ip_address="127.0.0.1"`` into the routable address, and binds to loopback only
    where it believes clusters are unsupported: its private ``ray_constants.ENABLE_RAY_CLUSTER`` is switched off
    for the start (read when the node address is chosen), then restored."""
    if not enabled:
        yield
        return
    from ray._private import ray_constants

    kept = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = kept


def check() -> None:
    """Verify on a real ``AsyncHyperBandScheduler`` of the installed Ray that every internal above exists with the
    shape this module expects; :class:`search.adapters.AdapterError` otherwise."""
    scheduler = AsyncHyperBandScheduler(time_attr="epoch", metric="m", mode="min", max_t=4, grace_period=1,
                                        reduction_factor=2, brackets=1)

    def need(path: str, kind: type | tuple[type, ...]) -> Any:
        return require("ray[tune]", ray.__version__, ADAPTER, scheduler, path, kind)

    from ray._private import ray_constants

    require("ray", ray.__version__, ADAPTER, ray_constants, "ENABLE_RAY_CLUSTER", bool)
    need("_brackets", list)
    rung_list = need("_brackets[0]._rungs", list)
    need("_brackets[0]._rungs[0]", tuple)
    need("_brackets[0]._rungs[0][1]", dict)
    if not isinstance(rung_list[0][0], (int, float)):
        raise AdapterError(f"ray[tune] {ray.__version__}: a rung of AsyncHyperBandScheduler._brackets[0]._rungs is "
                           f"no longer (milestone, {{trial_id: value}}) ({ADAPTER} relies on it)")
    need("_time_attr", str)
    need("_max_t", (int, float))
    need("_num_stopped", int)
    need("_trial_info", dict)
    scheduler.on_trial_add(None, _Trial("a"))
    if not knows_trial(scheduler, "a"):
        raise AdapterError(f"ray[tune] {ray.__version__}: AsyncHyperBandScheduler._trial_info is no longer keyed by "
                           f"trial id ({ADAPTER} relies on it)")


class _Trial:
    def __init__(self, trial_id: str) -> None:
        self.trial_id = trial_id
