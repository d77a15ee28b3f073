"""What the commands that run Tune share (``search.run``, ``search.retrain``): the Ray and MLflow options, the
errors that refuse a run (exit status 2), and the session: the data prepared, then Ray."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable, Iterator
from typing import Any

from search.resources import ResourceError
from search.space import SearchSpace, SpaceError
from search.sweep import SweepStateError
from search.tuner import ClusterError, DataError, connect, prepare, set_tune_defaults
from vad.config import ConfigError

TUNE_ERRORS = (SpaceError, ConfigError, SweepStateError, ResourceError, ClusterError, DataError)
"""What refuses a run before or while Tune starts: printed as ``error: ...``, exit status 2."""
TRACKING_URI_HELP = "MLflow tracking URI (default: sqlite:///<cwd>/mlruns/mlflow.db)"


def add_cluster_args(parser: argparse.ArgumentParser, unit: str) -> None:
    """``--tracking-uri``, ``--address``, ``--cpus-per-trial``, ``--gpus-per-trial``, ``--log-to-driver``;
    ``unit`` is what one Tune trial runs ("trial", "seed")."""
    parser.add_argument("--tracking-uri", help=TRACKING_URI_HELP)
    parser.add_argument("--address", help="join a running Ray cluster (e.g. auto or <head ip>:6379)")
    parser.add_argument("--cpus-per-trial", type=float, help=f"CPUs (and torch threads) per {unit}")
    parser.add_argument("--gpus-per-trial", type=float,
                        help=f"GPUs per {unit}; fractions pack {unit}s (0.25: 4/GPU)")
    parser.add_argument("--log-to-driver", action="store_true", help="show the trials' own output")


def run_command(command: Callable[[argparse.Namespace], int], args: argparse.Namespace,
                errors: tuple[type[Exception], ...]) -> int:
    """``command(args)``'s exit status; one of ``errors`` is printed as ``error: ...`` and gives 2."""
    try:
        return command(args)
    except errors as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


@contextlib.contextmanager
def tune_session(space: SearchSpace, args: argparse.Namespace) -> Iterator[Any]:
    """Tune's defaults, the space's data prepared once (yielded), and Ray joined or started for the block (with
    ``--address`` and ``--log-to-driver``), shut down afterwards when this call started it."""
    set_tune_defaults()
    prepared = prepare(space)
    started = connect(args.address, args.log_to_driver)
    try:
        yield prepared
    finally:
        if started:
            import ray

            ray.shutdown()
