"""Training from the command line: ``python -m vad.train --config configs/<model>_<dataset>.yaml``.

A thin command line over :mod:`vad.training` (the loop: ``train(config, report)``); it imports torch only after the
arguments are parsed, so ``--help`` answers at once. ``from vad.train import train`` keeps working (a lazy
re-export); library code imports :mod:`vad.training`.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any

from vad.cli_errors import error_line, exit_now, run_main

_LIBRARY = ("train", "TrainResult", "print_report", "evaluate_selected", "Report")


def __getattr__(name: str) -> Any:
    """``train``, ``TrainResult``, ...: the library's names, imported on first use (PEP 562)."""
    if name in _LIBRARY:
        import vad.training

        return getattr(vad.training, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _help_parser(prog: str, examples: list[str]) -> argparse.ArgumentParser:
    """A parser showing the docstring's first paragraph and usage ``examples``."""
    first = " ".join((__doc__ or "").strip().split("\n\n", 1)[0].split()).replace("``", "")
    return argparse.ArgumentParser(prog=prog, description=first, formatter_class=argparse.RawDescriptionHelpFormatter,
                                   epilog="examples:\n" + "\n".join(f"  {line}" for line in examples))


def main(argv: list[str] | None = None) -> int:
    parser = _help_parser("python -m vad.train", [
        "python -m vad.train --config configs/demo.yaml",
        "python -m vad.train --config configs/rtfm_ucf.yaml --set optim.lr=1e-4 train.epochs=50 --out runs/lr1e-4",
        "python -m vad.train --config configs/demo.yaml --resume runs/demo/last.pt"])
    parser.add_argument("--config", required=True, help="a YAML config, e.g. configs/demo.yaml")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override, e.g. optim.lr=1e-4")
    parser.add_argument("--out", default=None, help="output folder (default: runs/<config name>)")
    parser.add_argument("--resume", default=None, help="continue from a last.pt checkpoint")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    args = parser.parse_args(argv)
    from vad.config import ConfigError, TrainConfig, parse_set_arguments
    from vad.metrics.catalogue import frame_metric_names
    from vad.training import train

    try:
        config = TrainConfig.from_yaml(args.config, parse_set_arguments(args.set))
        out = args.out or f"runs/{Path(args.config).stem}"
        started = time.perf_counter()
        result = train(config, out_dir=out, resume=args.resume)
    except (ConfigError, ValueError, OSError) as exc:
        if args.debug:
            raise
        print(f"error: {error_line(exc)}", file=sys.stderr)
        return 2
    print(f"{result.status}: selected epoch {result.selected_epoch} by {result.selection} "
          f"in {time.perf_counter() - started:.1f}s; results in {Path(result.out_dir) / 'result.json'}")
    if result.test:
        print("test: " + "  ".join(f"{k}={result.test[k]:.4f}" for k in frame_metric_names() if k in result.test
                                   and not math.isnan(result.test[k])))
    if result.status == "diverged":
        print(f"error: {result.message}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    exit_now(run_main(main))
