"""Evaluate any checkpoint: ``python -m vad.evaluate --checkpoint RUN/best.pt --out EVAL``.

Also the authors' released weights (``--original rtfm|mgfn|s3r PATH --dataset DATASET``) and, without any model,
saved per-video scores (``--scores RUN/scores.npz``). Prints the reference study's table row (AP, AUC, F1,
F1-macro, PR-AUC, accuracy, recall, precision, test loss, train loss; columns from ``vad.metrics.catalogue``)
with a 95% bootstrap interval ``value [low, high]`` for every frame metric (test videos resampled with
replacement), writes ``metrics.json`` (with ``<name>_ci_low`` / ``<name>_ci_high``), ``scores.npz`` and a PNG of
predicted scores over time against the ground truth for chosen videos. A thin command line over
:mod:`vad.scoring` and :mod:`vad.outputs`, imported after the arguments are parsed (``--help`` answers at once).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vad.cli_errors import error_line, exit_now, run_main

if TYPE_CHECKING:
    from vad.config import TrainConfig

LEVEL = 0.95


def _help_parser(prog: str, examples: list[str]) -> argparse.ArgumentParser:
    """A parser showing the docstring's first paragraph and usage ``examples``."""
    first = " ".join((__doc__ or "").strip().split("\n\n", 1)[0].split()).replace("``", "")
    return argparse.ArgumentParser(prog=prog, description=first, formatter_class=argparse.RawDescriptionHelpFormatter,
                                   epilog="examples:\n" + "\n".join(f"  {line}" for line in examples))


def main(argv: list[str] | None = None) -> int:
    parser = _help_parser("python -m vad.evaluate", [
        "python -m vad.evaluate --checkpoint runs/demo/best.pt --out eval/demo",
        "python -m vad.evaluate --original rtfm rtfm-ucf.pkl --dataset datasets/ucf-crime.yaml --out eval/rtfm",
        "python -m vad.evaluate --scores runs/demo/scores.npz --dataset synthetic:demo --out eval/scores"])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="a toolkit checkpoint (RUN/best.pt)")
    source.add_argument("--original", nargs=2, metavar=("MODEL", "PATH"), help="the authors' weights, e.g. rtfm x.pkl")
    source.add_argument("--scores", help="re-score saved per-video scores (scores.npz) without a model")
    parser.add_argument("--dataset", help="dataset.yaml or synthetic:<preset> (default: the checkpoint's dataset)")
    parser.add_argument("--config", help="for --original/--scores: a training config supplying loss and batch "
                                         "settings (default: the model's defaults)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides")
    parser.add_argument("--dictionary", help="S3R with --original: the authors' (n_atoms, C) dictionary .npy")
    parser.add_argument("--out", default="eval", help="output folder (default: eval)")
    parser.add_argument("--videos", nargs="*", default=None, help="test video ids to plot")
    parser.add_argument("--plot-count", type=int, default=2, help="videos to plot when --videos is not given")
    parser.add_argument("--threshold", type=float, default=None, help="decision threshold (default: the config's)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--n-boot", type=int, default=1000,
                        help="bootstrap replicates (test videos resampled) for the 95%% intervals; 0: none")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap (default: 0)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    args = parser.parse_args(argv)
    if args.n_boot < 0:
        parser.error(f"--n-boot: expected 0 or more, got {args.n_boot}")
    from vad.config import ConfigError

    try:
        return _run(args)
    except (ConfigError, ValueError, FileNotFoundError, KeyError, OSError) as exc:
        if args.debug:
            raise
        print(f"error: {error_line(exc)}", file=sys.stderr)
        return 2


def _config_for(args: argparse.Namespace, model_name: str | None, saved: dict[str, Any] | None) -> TrainConfig:
    from vad.config import ConfigError, TrainConfig, parse_set_arguments

    overrides = parse_set_arguments(args.set)
    if args.dataset:
        overrides["data.dataset"] = args.dataset
    if args.threshold is not None:
        overrides["train.threshold"] = args.threshold
    if saved is not None:
        return TrainConfig.from_dict(saved).with_overrides(overrides)
    if args.config:
        config = TrainConfig.from_yaml(args.config, overrides)
    else:
        if not args.dataset:
            raise ConfigError("--dataset is required with --original and --scores")
        # --scores needs no model: only the data section (and the threshold) matter there
        config = TrainConfig.from_dict({"model": {"name": model_name or "rtfm"}}).with_overrides(overrides)
    if model_name and config.model_name != model_name:
        raise ConfigError(f"--config is for {config.model_name!r}, but --original names {model_name!r}")
    return config


def _run(args: argparse.Namespace) -> int:
    import numpy as np

    from vad.checkpoint import CheckpointError, load_checkpoint
    from vad.models import read_checkpoint
    from vad.outputs import format_table, write_outputs
    from vad.prepare import prepare_data
    from vad.scoring import TestScores, evaluate_model, frame_level_intervals, frame_level_metrics

    out = Path(args.out)
    if args.checkpoint:
        state = load_checkpoint(args.checkpoint)
        config = _config_for(args, None, state["config"])
        try:
            metrics, scores, prepared = evaluate_model(config, state["model"], device=args.device)
        except CheckpointError as exc:  # the stored config does not fit the stored weights
            raise CheckpointError(f"{args.checkpoint}: {exc}") from None
        name = f"{config.model_name} ({Path(args.checkpoint).name}, epoch {state['epoch']})"
    elif args.original:
        model_name, path = args.original
        config = _config_for(args, model_name, None)
        dictionary = np.load(args.dictionary, allow_pickle=False) if args.dictionary else None
        metrics, scores, prepared = evaluate_model(config, read_checkpoint(path), original=True,
                                                   dictionary=dictionary, device=args.device)
        name = f"{model_name} (authors' weights)"
    else:
        if not Path(args.scores).is_file():
            raise FileNotFoundError(f"--scores: file not found: {args.scores}")
        config = _config_for(args, None, None)
        prepared = prepare_data(config)
        scores = TestScores.load(args.scores)
        if scores.video_ids != list(prepared.test.video_ids):
            raise ValueError(f"{args.scores}: its videos do not match the test list of {config.data.dataset}")
        metrics = frame_level_metrics(scores, prepared, config.train.threshold)
        name = f"scores from {args.scores}"
    intervals: dict[str, tuple[float, float]] = {}
    if args.n_boot:
        intervals = frame_level_intervals(scores, prepared, config.train.threshold, n_boot=args.n_boot,
                                          seed=args.seed, level=LEVEL)
        for metric, (low, high) in intervals.items():
            metrics[f"{metric}_ci_low"], metrics[f"{metric}_ci_high"] = low, high
    written = write_outputs(out, name, metrics, scores, prepared, videos=args.videos, n_plot=args.plot_count,
                            threshold=config.train.threshold)
    print(format_table({name: metrics}, {name: intervals}))
    if intervals:
        print(f"[low, high]: {LEVEL:.0%} bootstrap intervals over the {len(scores.video_ids)} test videos "
              f"({args.n_boot} replicates, seed {args.seed}); losses have none")
    print(f"wrote {', '.join(str(p) for p in written)}")
    return 0


if __name__ == "__main__":
    exit_now(run_main(main))
