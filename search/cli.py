"""What the sweep commands share (``search.run``, ``search.retrain``, ``search.report``): their parsers' shape
(a description, usage examples), the Ray and MLflow options, the errors that refuse a run (exit status 2), and the
session: the data prepared, then Ray.

This module imports nothing heavy at module level (no Ray, MLflow, Optuna or torch), so that ``--help`` answers at
once; what a command runs is imported when it runs.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from vad.cli_errors import EXIT_ERROR, add_debug_flag, error_line

if TYPE_CHECKING:
    from search.sweep.session import RayStart
    from search.sweep.space import SearchSpace

TRACKING_URI_HELP = "MLflow tracking URI (default: sqlite:///<cwd>/mlruns/mlflow.db)"


def description(doc: str | None) -> str:
    """The first paragraph of a module docstring as a command's description (whole sentences, one paragraph)."""
    first = (doc or "").strip().split("\n\n", 1)[0]
    return " ".join(first.split()).replace("``", "")


def make_parser(prog: str, doc: str | None, examples: list[str]) -> argparse.ArgumentParser:
    """A parser whose ``--help`` shows the docstring's first paragraph and ``examples`` (one command a line)."""
    epilog = "examples:\n" + "\n".join(f"  {line}" for line in examples)
    parser = argparse.ArgumentParser(prog=prog, description=description(doc), epilog=epilog,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_debug_flag(parser)
    return parser


def add_sweep_name(parser: argparse.ArgumentParser, help_text: str, *aliases: str, required: bool = False) -> None:
    """``--sweep NAME`` (the sweep, in every command), with the command's older spellings as aliases."""
    parser.add_argument("--sweep", *aliases, dest="sweep", metavar="NAME", required=required, help=help_text)


def add_cluster_args(parser: argparse.ArgumentParser, unit: str) -> None:
    """``--tracking-uri``, ``--address``, ``--cpus-per-trial``, ``--gpus-per-trial``, ``--log-to-driver``,
    ``--verbose``; ``unit`` is what one Tune trial runs ("trial", "seed")."""
    parser.add_argument("--tracking-uri", help=TRACKING_URI_HELP)
    parser.add_argument("--address", help="join a running Ray cluster (e.g. auto or <head ip>:6379)")
    parser.add_argument("--cpus-per-trial", type=float, help=f"CPUs (and torch threads) per {unit}")
    parser.add_argument("--gpus-per-trial", type=float,
                        help=f"GPUs per {unit}; fractions pack {unit}s (0.25: 4/GPU)")
    parser.add_argument("--log-to-driver", action="store_true", help="show the trials' own output")
    parser.add_argument("--verbose", action="store_true",
                        help="Ray Tune's status table and log lines instead of the progress bar")


def tune_errors() -> tuple[type[Exception], ...]:
    """What refuses a run before or while Tune starts: printed as ``error: ...``, exit status 2."""
    from search.sweep.record import SweepStateError
    from search.sweep.resources import ResourceError
    from search.sweep.session import ClusterError
    from search.sweep.space import SpaceError
    from search.sweep.tuner import DataError
    from vad.config import ConfigError

    return SpaceError, ConfigError, SweepStateError, ResourceError, ClusterError, DataError


def run_command(command: Callable[[argparse.Namespace], int], args: argparse.Namespace,
                errors: tuple[type[Exception], ...]) -> int:
    """``command(args)``'s exit status; one of ``errors`` is printed as ``error: ...`` and gives 2 (``--debug``:
    the traceback). Anything else reaches the command's ``run_main`` (:mod:`vad.cli_errors`): one line too."""
    try:
        return command(args)
    except errors as exc:
        if getattr(args, "debug", False):
            raise
        print(f"error: {error_line(exc, refusal=True)}", file=sys.stderr)
        return EXIT_ERROR


def start_ray(args: argparse.Namespace) -> RayStart:
    """Ray joined or started for the command (``--address``, ``--log-to-driver``; quiet unless ``--verbose``), begun
    in the background now: :class:`search.sweep.session.RayStart`, handed to :func:`tune_session` later."""
    from search.sweep.session import RayStart

    return RayStart.begin(args.address, args.log_to_driver, quiet=not getattr(args, "verbose", False))


@contextlib.contextmanager
def tune_session(space: SearchSpace, args: argparse.Namespace, ray_start: RayStart | None = None) -> Iterator[Any]:
    """The space's data prepared once (yielded), and Ray joined or started for the block (``ray_start``, begun
    earlier by :func:`start_ray`, else begun here), shut down afterwards when this command started it. Without
    ``--verbose`` the libraries' narrating INFO lines are silenced (:func:`search.sweep.session.quiet_loggers`)."""
    from search.sweep.tuner import prepare

    ray_start = ray_start or start_ray(args)
    try:
        prepared = prepare(space)
        ray_start.wait()
        yield prepared
    finally:
        ray_start.close()
