"""Ray internals, in one place: the rung history and trial bookkeeping of Tune's ``AsyncHyperBandScheduler``, the
switch that makes a local Ray listen on 127.0.0.1 only (:func:`loopback_only`), and what makes a local Ray start and
stop fast: no autoscaler monitor (``ray.shutdown`` waited a second for it) and no unused log monitor
(:func:`lean_local_node`), and Tune's trial actors on the workers Ray prestarts (:func:`plain_trial_actors`).

:class:`search.sweep.scheduler.PersistentASHA` saves and restores ASHA's rungs (Tune pickles the scheduler only when a
sweep starts) and needs the scheduler's own settings and trial table; Tune has no public accessor for any of them.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Iterator, Mapping
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


@contextlib.contextmanager
def lean_local_node(*, log_monitor: bool) -> Iterator[None]:
    """A local Ray started in the block runs without the autoscaler monitor (a one-node Ray started for one sweep
    has nothing to scale) and, unless ``log_monitor``, without the log monitor (which only forwards the workers'
    output to a driver that asked for it, ``log_to_driver``): two Python processes fewer to start, on CPUs the
    sweep's first trials are waiting for. Ray 2.60's ``ray.init`` does not expose the node's ``no_monitor`` and
    ``include_log_monitor``: they are set on the ``RayParams`` the private ``Node`` receives, for the start only."""
    from ray._private import node as node_module

    original = node_module.Node.__init__

    def init(self: Any, ray_params: Any, *args: Any, **kwargs: Any) -> None:
        if kwargs.get("head") and not kwargs.get("connect_only"):
            ray_params.no_monitor = True
            if not log_monitor:
                ray_params.include_log_monitor = False
        original(self, ray_params, *args, **kwargs)

    node_module.Node.__init__ = init
    try:
        yield
    finally:
        node_module.Node.__init__ = original


def plain_trial_actors(environ: Mapping[str, str] | None) -> None:
    """Tune's trial actors get no runtime environment of their own where the variables Tune would give them
    (``PL_DISABLE_FORK=1`` and the ones it propagates from the driver) already hold in ``environ``: the environment a
    local Ray's raylet inherited from the driver, which its workers inherit too. Ray 2.60 runs an actor with a
    runtime environment only on a worker started for that environment, never on the workers the raylet prestarts
    (one per CPU, with its ``preload_python_modules`` already imported): with none, the first trials land on them.
    Installed on Tune's private ``_ActorClassCache`` (the check is made per trainable); ``None`` restores Tune's own
    (for a joined cluster, whose workers do not inherit this process's environment)."""
    from ray.tune.execution import class_cache

    cache_class = class_cache._ActorClassCache
    original = getattr(cache_class, "_wsvad_original_get", cache_class.get)
    if environ is None:
        cache_class.get = original
        return
    snapshot = dict(environ)

    def get(self: Any, trainable_cls: type) -> Any:
        remote = original(self, trainable_cls)
        runtime_env = remote._default_options.get("runtime_env") or {}
        if set(runtime_env) <= {"env_vars"} and all(snapshot.get(key) == value
                                                    for key, value in (runtime_env.get("env_vars") or {}).items()):
            remote = self._cache[trainable_cls] = ray.remote(trainable_cls)
        return remote

    cache_class._wsvad_original_get = original
    cache_class.get = get


def tune_actor_env_vars() -> dict[str, str]:
    """The variables Tune sets in its trial actors' runtime environment (``PL_DISABLE_FORK=1``)."""
    from ray.tune.execution import class_cache

    return dict(class_cache.DEFAULT_ENV_VARS)


def check() -> None:
    """Verify on a real ``AsyncHyperBandScheduler`` of the installed Ray that every internal above exists with the
    shape this module expects; :class:`search.adapters.AdapterError` otherwise."""
    scheduler = AsyncHyperBandScheduler(time_attr="epoch", metric="m", mode="min", max_t=4, grace_period=1,
                                        reduction_factor=2, brackets=1)

    def need(path: str, kind: type | tuple[type, ...]) -> Any:
        return require("ray[tune]", ray.__version__, ADAPTER, scheduler, path, kind)

    from ray._private import ray_constants

    require("ray", ray.__version__, ADAPTER, ray_constants, "ENABLE_RAY_CLUSTER", bool)
    require("ray", ray.__version__, ADAPTER, ray_constants, "PROCESS_TYPE_MONITOR", str)
    from ray._private import node as node_module
    from ray._private.parameter import RayParams

    params = RayParams()
    for name in ("no_monitor", "include_log_monitor"):
        if name not in vars(params):
            raise AdapterError(f"ray {ray.__version__}: RayParams.{name} is missing ({ADAPTER} relies on it)")
    signature = inspect.signature(node_module.Node.__init__).parameters
    if list(signature)[:2] != ["self", "ray_params"] or not {"head", "connect_only"} <= set(signature):
        raise AdapterError(f"ray {ray.__version__}: Node.__init__ no longer takes (ray_params, head=, connect_only=) "
                           f"({ADAPTER} relies on it)")
    require("ray", ray.__version__, ADAPTER, ray._private.worker, "_global_node", object)
    from ray.tune.execution import class_cache

    require("ray[tune]", ray.__version__, ADAPTER, class_cache, "DEFAULT_ENV_VARS", dict)
    cache = require("ray[tune]", ray.__version__, ADAPTER, class_cache, "_ActorClassCache", type)()
    remote = cache.get(_Trial)
    if not isinstance(getattr(remote, "_default_options", None), dict) or not isinstance(cache._cache, dict):
        raise AdapterError(f"ray[tune] {ray.__version__}: _ActorClassCache.get no longer returns a remote class with "
                           f"_default_options, or keeps no _cache dict ({ADAPTER} relies on them)")
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
