"""One way every command ends on a failure: a single ``error: <what, where, what to do>`` line on stderr and exit
status 2; the traceback only with ``--debug``.

Each command's ``__main__`` block is ``exit_now(run_main(main))``; the sweep commands' ``search.cli.run_command``
prints its refusals with :func:`error_line` too. Nothing heavy is imported here (MLflow and Ray errors are
recognised by their class names), so ``--help`` stays instant.
"""

from __future__ import annotations

import argparse
import atexit
import errno
import os
import re
import sys
import threading
from collections.abc import Callable, Sequence
from typing import NoReturn

EXIT_ERROR = 2
"""The exit status of a command that refused or failed (argparse's usage errors use it too)."""
EXIT_INTERRUPTED = 130


def add_debug_flag(parser: argparse.ArgumentParser) -> None:
    """``--debug``: let the traceback through instead of the one ``error:`` line."""
    parser.add_argument("--debug", action="store_true", help="show the traceback of a failure")


def _one_line(text: str) -> str:
    lines = [line.strip() for line in str(text).strip().splitlines() if line.strip()]
    return "; ".join(lines) if len(lines) <= 3 else "; ".join(lines[:3]) + " ..."


def _named(exc: BaseException, *names: str) -> bool:
    return any(cls.__name__ in names for cls in type(exc).__mro__)


def _from_module(exc: BaseException, prefix: str) -> bool:
    return any((cls.__module__ or "").startswith(prefix) for cls in type(exc).__mro__)


def error_line(exc: BaseException, *, refusal: bool = False) -> str:
    """The text after ``error:`` for ``exc``: what failed, where, and what to do, on one line. ``refusal``: ``exc``
    is one of the command's own refusals (its message is the sentence), whatever its type."""
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        named = re.search(r"No space left on device \(([^)]+)\)", str(exc))  # vad.atomic names the path in the text
        where = exc.filename or (named.group(1) if named else None)
        return f"No space left on device{f' ({where})' if where else ''}; free some space and run the command again"
    if isinstance(exc, FileNotFoundError) and exc.filename:
        return f"file not found: {exc.filename}; check the path"
    if isinstance(exc, PermissionError) and exc.filename:
        return f"permission denied: {exc.filename}; check who owns it and its mode"
    if _named(exc, "MlflowException"):
        message = getattr(exc, "message", None) or str(exc)
        return (f"MLflow refused a request: {_one_line(message)}; check --tracking-uri and that the tracking server "
                "is running")
    if _from_module(exc, "ray."):
        return f"Ray failed ({type(exc).__name__}): {_one_line(str(exc))}; rerun with --debug for the traceback"
    if _named(exc, "OutOfMemoryError") or isinstance(exc, MemoryError):
        return (f"out of memory ({_one_line(str(exc)) or type(exc).__name__}); lower train.batch_per_class or "
                "data.n_segments, or use a larger device")
    if (refusal or isinstance(exc, (ValueError, OSError))) and str(exc):
        return _one_line(str(exc))  # the toolkit's own refusals (ConfigError, DataError, ...) name file and key
    return (f"unexpected {type(exc).__name__}: {_one_line(str(exc))}; rerun with --debug for the traceback and "
            "report it")


def run_main(main: Callable[[list[str] | None], int | None], argv: Sequence[str] | None = None) -> int:
    """``main(argv)``'s exit status; any exception it raises becomes one ``error:`` line and status 2
    (``--debug`` in ``argv`` lets it propagate). Default ``argv``: ``sys.argv[1:]``."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        return int(main(args) or 0)
    except SystemExit:
        raise
    except KeyboardInterrupt:
        if "--debug" in args:
            raise
        print("error: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        if "--debug" in args:
            raise
        print(f"error: {error_line(exc)}", file=sys.stderr)
        return EXIT_ERROR


def exit_now(status: int) -> NoReturn:
    """End the process with ``status`` as ``sys.exit(status)`` would, but without the interpreter's teardown of
    every imported module: the other non-daemon threads are joined, the ``atexit`` handlers run (Ray's and MLflow's
    shutdown, logging's flush), the standard streams are flushed, then ``os._exit``. Tearing down torch, Ray, Tune,
    MLflow and Optuna took 1.2-2.1 s after a sweep's last line (measured; see benchmarks/RESULTS.md
    ``sweep_overhead``) and keeps nothing."""
    for thread in threading.enumerate():
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed or broken pipe: nothing more to say
            pass
    os._exit(status)
