"""Ray for one command: joined (``--address``) or started locally for it, quietly, and stopped afterwards.

:class:`RayStart` begins ``ray.init`` in a background thread as a command starts, so that Ray's processes and its
prestarted workers (which import torch and the training code) start on the other core while the driver imports
MLflow, Optuna and torch, reads the space and prepares the data; the command waits for it only when it needs Ray.
This module imports nothing heavy (Ray itself only when a start begins), so the thread's ``ray.init`` is not
queued behind the driver's imports.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import signal
import sys
import threading
from pathlib import Path

TUNE_DEFAULTS = {
    "TUNE_GLOBAL_CHECKPOINT_S": "20",  # experiment snapshots every 20 s: cheap, and a resume replays little
    "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",
    "RAY_AIR_NEW_OUTPUT": "0",  # the classic status table, which honours the reporter's metric columns
    # Tune's own per-trial loggers: only the JSON one is kept (passed explicitly: search.sweep.tracking reads its
    # result.json to backfill MLflow after a crash); the CSV and TensorBoard copies of every result cost the
    # driver CPU that the trials need, and MLflow already holds every epoch.
    "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",
}
LOCAL_RAY_DEFAULTS = {
    # A local Ray started for one sweep has no dashboard to feed: its agent's per-process statistics (psutil over
    # every worker, every 5 s by default) only take CPU from the trials.
    "REPORTER_UPDATE_INTERVAL_MS": "60000",
    "RAY_USAGE_STATS_ENABLED": "0",
}
WORKER_PRELOAD = ("torch", "ray.tune", "vad.training", "vad.prepare", "search.sweep.trainable")
"""What every worker of a local Ray started for a sweep imports as it starts (Ray's ``preload_python_modules``):
the raylet prestarts one worker per CPU at ``ray.init``, and they import Tune, torch and the training code while the
driver opens MLflow and Optuna, so the first trials start on ready workers (see
:func:`search.adapters.tune.plain_trial_actors`). A module that fails to import is only logged by the worker."""

QUIET_LOGGERS = ("mlflow.store.db.utils", "alembic", "alembic.runtime.migration", "mlflow.tracking.fluent",
                 "ray.tune.tune", "ray.tune.impl.tuner_internal")
"""Loggers whose INFO lines only narrate internals (database migrations, where Tune keeps its driver files)."""
NOTICES = {
    "ray._private.authentication.authentication_token_setup": "Token authentication is enabled for this Ray cluster",
    "ray.tune.utils.util": "which may be a performance bottleneck",
    "ray._private.worker": "SIGTERM handler is not set because current thread is not the main thread",
}
"""``{logger: text}`` of warnings a sweep's user cannot act on: a new local cluster uses Ray's default (token
authentication); Tune timing its callbacks (the MLflow writes of a busy driver); Ray started from
:class:`RayStart`'s thread (the command handles SIGTERM itself)."""


class ClusterError(ValueError):
    """The Ray cluster given by ``--address`` cannot be joined."""


class _DropNotice(logging.Filter):
    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        return self.text not in str(record.msg)


def quiet_loggers() -> None:
    """Lower the chatty INFO loggers of MLflow, Alembic and Tune to WARNING (their warnings still show) and drop the
    :data:`NOTICES` (a local cluster keeps its token authentication); imports nothing (Optuna's own switch is
    :func:`quiet_optuna`)."""
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    for name, text in NOTICES.items():
        chatty = logging.getLogger(name)
        if not any(isinstance(f, _DropNotice) for f in chatty.filters):
            chatty.addFilter(_DropNotice(text))


def quiet_optuna() -> None:
    """Optuna's "new study" INFO lines off (its warnings stay)."""
    try:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
    except ImportError:  # pragma: no cover - optuna is a dependency
        pass


def set_tune_defaults() -> None:
    """Tune's environment settings the toolkit relies on (unless the user set them)."""
    for key, value in TUNE_DEFAULTS.items():
        os.environ.setdefault(key, value)


def connect(address: str | None, log_to_driver: bool, *, quiet: bool = False) -> bool:
    """Join ``address`` (or ``$RAY_ADDRESS``), else start a new local Ray (no dashboard; ``quiet``: without Ray's
    INFO lines, which stay when joining a cluster); returns whether this call connected. Trials on a joined
    cluster get the cache folder (and ``$VAD_DATA``) as absolute paths. A local Ray starts without the autoscaler,
    the dashboard's API server and (unless ``log_to_driver``) the log monitor, its workers preload
    :data:`WORKER_PRELOAD`, and Tune's trial actors run on them (no per-actor runtime environment): see
    :mod:`search.adapters.tune`."""
    started, address = _ray_init(address, log_to_driver, quiet)
    if started:
        _connected(address)
    return started


def _ray_init(address: str | None, log_to_driver: bool, quiet: bool) -> tuple[bool, str | None]:
    """``ray.init`` as :func:`connect` describes it: ``(whether this call connected, the address joined)``. Imports
    no Ray module that ``import ray`` and :data:`search.adapters.tune.RAY_INIT_IMPORTS` have not (see
    :class:`RayStart`)."""
    import ray

    if ray.is_initialized():
        return False, None
    from vad.paths import cache_root

    env = {"VAD_CACHE_DIR": str(cache_root())}
    if os.environ.get("VAD_DATA"):
        env["VAD_DATA"] = str(Path(os.environ["VAD_DATA"]).expanduser().resolve())
    address = address or os.environ.get("RAY_ADDRESS")
    from search.adapters.tune import TUNE_ACTOR_ENV, lean_local_node, loopback_only

    if not address:  # the workers inherit the raylet's environment, which is this process's at ray.init
        for key, value in {**LOCAL_RAY_DEFAULTS, **TUNE_ACTOR_ENV}.items():
            os.environ.setdefault(key, value)
    try:  # "local": a new instance, never a cluster some earlier `ray start` left registered on this machine
        lean = lean_local_node(log_monitor=log_to_driver) if not address else contextlib.nullcontext()
        with loopback_only(not address), lean:
            ray.init(address=address or "local", include_dashboard=False, log_to_driver=log_to_driver,
                     logging_level=logging.WARNING if quiet and not address else logging.INFO,
                     runtime_env={"env_vars": env} if address else None,
                     _system_config=None if address else {"preload_python_modules": list(WORKER_PRELOAD)})
    except ConnectionError as exc:
        hint = ("" if os.environ.get("RAY_AUTH_MODE") == "token" else
                "; a cluster started with token authentication (Ray's default when ~/.ray/auth_token exists) "
                "needs RAY_AUTH_MODE=token in the driver's environment")
        raise ClusterError(f"--address {address}: {exc}{hint}") from None
    return True, address


def _connected(address: str | None) -> None:
    """After :func:`_ray_init` connected: the token check (a joined cluster), Tune's trial actors on the prestarted
    workers (a local Ray). Imports Tune."""
    from search.adapters.tune import plain_trial_actors

    if address:  # a local Ray listens on 127.0.0.1 only; a cluster's token is what guards it
        warn_token_mode()
    plain_trial_actors(None if address else os.environ)


def shutdown() -> None:
    """``ray.shutdown()``, then Tune's own trial actors again (:func:`search.adapters.tune.plain_trial_actors`
    applies to the local Ray :func:`connect` started only)."""
    import ray

    from search.adapters.tune import plain_trial_actors

    try:
        ray.shutdown()
    finally:
        plain_trial_actors(None)


def warn_token_mode(token: Path | None = None) -> None:
    """One warning line when Ray's token file (``~/.ray/auth_token``) can be read by other local users."""
    token = token or Path.home() / ".ray" / "auth_token"
    try:
        mode = token.stat().st_mode & 0o777
    except OSError:
        return
    if mode & 0o077:
        print(f"warning: {token} (Ray's cluster token) has mode {mode:o}: other local users can read it; "
              f"run chmod 600 {token}", file=sys.stderr, flush=True)


def _exit_on_sigterm(signum: int, frame: object) -> None:
    sys.exit(signum)


class RayStart:
    """:func:`connect` begun in a background thread (``begin``), so a command's own start-up overlaps Ray's.

    >>> start = RayStart.begin(address=None, log_to_driver=False, quiet=True)
    >>> ...                     # imports, the space, the data: Ray and its workers start meanwhile
    >>> started = start.wait()  # connect()'s result, or its error (ClusterError) raised here
    >>> start.close()           # ray.shutdown() if this start connected (also after an error, or never waited)

    The thread lives until :meth:`close` and shuts Ray down itself: Ray starts its local processes with the parent
    death signal (``PR_SET_PDEATHSIG``), which Linux sends when the *thread* that started them ends. The thread
    imports no Ray module while the command's thread imports Tune (whose package has import cycles: two threads
    importing into one cycle see a partially initialised module): the Ray modules ``ray.init`` imports are
    imported before it begins (:data:`search.adapters.tune.RAY_INIT_IMPORTS`), and what needs Tune runs in
    :meth:`wait`, in the caller's thread.
    """

    def __init__(self, address: str | None, log_to_driver: bool, quiet: bool) -> None:
        self.address, self.log_to_driver, self.quiet = address, log_to_driver, quiet
        self.started = False
        self._address: str | None = None
        self._connected = False
        self._error: BaseException | None = None
        self._ready, self._release = threading.Event(), threading.Event()
        self._thread = threading.Thread(target=self._run, name="wsvad-ray-start", daemon=True)

    @classmethod
    def begin(cls, address: str | None, log_to_driver: bool, *, quiet: bool) -> RayStart:
        """Tune's defaults and (``quiet``) the quiet loggers set here, then :func:`connect` in a thread. Called from
        the main thread with SIGTERM at its default, it sets what ``ray.init`` would have set there (``sys.exit``
        on SIGTERM: the ``finally`` blocks and Ray's shutdown run); a handler the command set stays."""
        if threading.current_thread() is threading.main_thread() and \
                signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
            signal.signal(signal.SIGTERM, _exit_on_sigterm)
        set_tune_defaults()
        if quiet:
            quiet_loggers()
        from search.adapters.tune import RAY_INIT_IMPORTS

        for name in RAY_INIT_IMPORTS:
            importlib.import_module(name)
        start = cls(address, log_to_driver, quiet)
        start._thread.start()
        if quiet:
            quiet_optuna()
        return start

    def _run(self) -> None:
        try:
            self.started, self._address = _ray_init(self.address, self.log_to_driver, self.quiet)
        except BaseException as exc:  # raised again in the thread that waits
            self._error = exc
        finally:
            self._ready.set()
        self._release.wait()
        if self.started:
            shutdown()

    def wait(self) -> bool:
        """Whether this start connected (``False``: Ray was already initialised); its error, if it failed."""
        self._ready.wait()
        if self._error is not None:
            raise self._error
        if self.started and not self._connected:
            self._connected = True
            _connected(self._address)
        return self.started

    def close(self) -> None:
        """Shut down the Ray this start connected (once it has started); nothing otherwise. Idempotent."""
        self._release.set()
        if self._thread.ident is not None:
            self._thread.join()
        self.started = False
