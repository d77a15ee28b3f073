"""Ray internals, in one place: the rung history and trial bookkeeping of Tune's ``AsyncHyperBandScheduler``, the
switch that makes a local Ray listen on 127.0.0.1 only (:func:`loopback_only`), and what makes a local Ray start and
stop fast: no autoscaler monitor (``ray.shutdown`` waited a second for it), no dashboard API server and no unused
log monitor (:func:`lean_local_node`), and Tune's trial actors on the workers Ray prestarts
(:func:`plain_trial_actors`). Importing this module imports Ray but not Tune, so a start can begin before Tune is
imported (:class:`search.sweep.session.RayStart`).

:class:`search.sweep.scheduler.PersistentASHA` saves and restores ASHA's rungs (Tune pickles the scheduler only when a
sweep starts) and needs the scheduler's own settings and trial table; Tune has no public accessor for any of them.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import ray

from search.adapters import AdapterError, require

if TYPE_CHECKING:
    from ray.tune.schedulers import AsyncHyperBandScheduler

ADAPTER = "search/adapters/tune.py"
RAY_INIT_IMPORTS = ("ray._common.usage.usage_lib", "ray._private.runtime_env.uv_runtime_env_hook",
                    "ray._private.thirdparty.pynvml", "ray.dashboard")
"""The Ray modules Ray 2.60's ``ray.init`` imports on its first call (beyond ``import ray``), imported before
:class:`search.sweep.session.RayStart`'s thread calls it (two of them are in Tune's import tree too)."""
TUNE_ACTOR_ENV = {"PL_DISABLE_FORK": "1"}
"""The variables Tune 2.60 sets in its trial actors' runtime environment (its private ``DEFAULT_ENV_VARS``, read
without importing Tune; :func:`check` compares them)."""


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
    has nothing to scale), without the dashboard's API server (which Ray 2.60 starts even with
    ``include_dashboard=False``; a sweep uses neither the dashboard nor the job and state APIs it serves) and, unless
    ``log_monitor``, without the log monitor (which only forwards the workers' output to a driver that asked for it,
    ``log_to_driver``): three Python processes fewer to start, on CPUs the sweep's first trials are waiting for.
    Ray 2.60's ``ray.init`` does not expose the node's ``no_monitor`` and ``include_log_monitor``: they are set on the
    ``RayParams`` the private ``Node`` receives, and its ``start_api_server`` is skipped, for the start only."""
    from ray._private import node as node_module

    original_init, original_api_server = node_module.Node.__init__, node_module.Node.start_api_server

    def init(self: Any, ray_params: Any, *args: Any, **kwargs: Any) -> None:
        if kwargs.get("head") and not kwargs.get("connect_only"):
            ray_params.no_monitor = True
            if not log_monitor:
                ray_params.include_log_monitor = False
        original_init(self, ray_params, *args, **kwargs)

    def no_api_server(self: Any, *, include_dashboard: bool | None, raise_on_failure: bool) -> None:
        if include_dashboard:
            original_api_server(self, include_dashboard=include_dashboard, raise_on_failure=raise_on_failure)
        else:
            self._webui_url = None

    node_module.Node.__init__, node_module.Node.start_api_server = init, no_api_server
    try:
        yield
    finally:
        node_module.Node.__init__, node_module.Node.start_api_server = original_init, original_api_server


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


def check() -> None:
    """Verify on a real ``AsyncHyperBandScheduler`` of the installed Ray that every internal above exists with the
    shape this module expects; :class:`search.adapters.AdapterError` otherwise."""
    from ray.tune.schedulers import AsyncHyperBandScheduler

    scheduler = AsyncHyperBandScheduler(time_attr="epoch", metric="m", mode="min", max_t=4, grace_period=1,
                                        reduction_factor=2, brackets=1)

    def need(path: str, kind: type | tuple[type, ...]) -> Any:
        return require("ray[tune]", ray.__version__, ADAPTER, scheduler, path, kind)

    from ray._private import ray_constants

    for name in RAY_INIT_IMPORTS:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise AdapterError(f"ray {ray.__version__}: {name} cannot be imported ({ADAPTER} relies on it): "
                               f"{exc}") from None
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
    api_server = inspect.signature(node_module.Node.start_api_server).parameters
    if list(api_server) != ["self", "include_dashboard", "raise_on_failure"] or "_webui_url" not in \
            inspect.getsource(node_module.Node.start_api_server):
        raise AdapterError(f"ray {ray.__version__}: Node.start_api_server(include_dashboard=, raise_on_failure=) no "
                           f"longer sets _webui_url ({ADAPTER} relies on it)")
    require("ray", ray.__version__, ADAPTER, ray._private.worker, "_global_node", object)
    from ray.tune.execution import class_cache

    if require("ray[tune]", ray.__version__, ADAPTER, class_cache, "DEFAULT_ENV_VARS", dict) != TUNE_ACTOR_ENV:
        raise AdapterError(f"ray[tune] {ray.__version__}: Tune's trial actors get {class_cache.DEFAULT_ENV_VARS}, not "
                           f"TUNE_ACTOR_ENV {TUNE_ACTOR_ENV} ({ADAPTER} relies on it)")
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
