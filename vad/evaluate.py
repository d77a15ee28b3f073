"""Evaluate any checkpoint: ``python -m vad.evaluate --checkpoint RUN/best.pt --out EVAL``.

Also the authors' released weights (``--original rtfm|mgfn|s3r PATH --dataset DATASET``) and, without any model,
saved per-video scores (``--scores RUN/scores.npz``). Prints the reference study's table row (AP, AUC, F1,
F1-macro, PR-AUC, accuracy, recall, precision, test loss, train loss), writes ``metrics.json``, ``scores.npz``
and a PNG of predicted scores over time against the ground truth for chosen videos.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vad.checkpoint import load_checkpoint
from vad.config import ConfigError, TrainConfig, parse_set_arguments
from vad.evaluation import TABLE_COLUMNS, TestScores, frame_level_metrics, full_evaluation
from vad.metrics import expand_to_frames
from vad.models import create_loss, load_original_weights, read_checkpoint
from vad.plots import pick_videos, plot_video_scores
from vad.prepare import PreparedData, prepare_data
from vad.train import build_model, pick_device, resolve_config

PERCENT_COLUMNS = {"ap", "auc", "f1", "f1_macro", "pr_auc", "accuracy", "recall", "precision"}
HEADERS = {"ap": "AP", "auc": "AUC", "f1": "F1", "f1_macro": "F1-macro", "pr_auc": "PR-AUC", "accuracy": "Accuracy",
           "recall": "Recall", "precision": "Precision", "test_loss": "Test loss", "train_loss": "Train loss"}


def format_table(rows: dict[str, dict[str, float]]) -> str:
    """A Markdown table of the study's columns (metrics in %), one row per named result."""
    header = "| Model | " + " | ".join(HEADERS[c] + (" (%)" if c in PERCENT_COLUMNS else "") for c in TABLE_COLUMNS)
    lines = [header + " |", "|---" * (len(TABLE_COLUMNS) + 1) + "|"]
    for name, metrics in rows.items():
        cells = []
        for column in TABLE_COLUMNS:
            value = metrics.get(column)
            if value is None or (isinstance(value, float) and math.isnan(value)):
                cells.append("-")
            else:
                cells.append(f"{100 * value:.1f}" if column in PERCENT_COLUMNS else f"{value:.3f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_outputs(out: Path, name: str, metrics: dict[str, float], scores: TestScores, prepared: PreparedData,
                  *, videos: list[str] | None, n_plot: int, threshold: float) -> None:
    """``metrics.json``, ``scores.npz`` and ``scores.png`` under ``out``; prints the table."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    scores.save(out / "scores.npz")
    plot_scores(out / "scores.png", scores, prepared, videos=videos, count=n_plot, threshold=threshold)
    print(format_table({name: metrics}))
    print(f"wrote {out / 'metrics.json'}, {out / 'scores.npz'}, {out / 'scores.png'}")


def plot_scores(path: Path, scores: TestScores, prepared: PreparedData, *, videos: list[str] | None = None,
                count: int = 2, threshold: float = 0.5) -> Path:
    """Plot chosen test videos (by id; default: ``count`` videos, abnormal and normal alternately)."""
    if videos:
        unknown = sorted(set(videos) - set(scores.video_ids))
        if unknown:
            raise ValueError(f"--videos: not in the test set: {', '.join(unknown)}")
        chosen = [scores.video_ids.index(v) for v in videos]
    else:
        chosen = pick_videos(scores.video_ids, list(scores.labels), count)
    gt = prepared.ground_truth
    per_snippet = prepared.dataset.config.frames_per_snippet
    frames = [expand_to_frames([scores.scores[i]], [gt.frame_lengths[i]], per_snippet) for i in chosen]
    titles = [f"{scores.video_ids[i]} ({'abnormal' if scores.labels[i] else 'normal'})" for i in chosen]
    return plot_video_scores(path, titles, frames, [gt.video(i) for i in chosen], threshold=threshold)


def evaluate_model(config: TrainConfig, weights: dict[str, torch.Tensor], *, original: bool = False,
                   dictionary: np.ndarray | None = None, device: str = "auto",
                   prepared: PreparedData | None = None) -> tuple[dict[str, float], TestScores, PreparedData]:
    """Load ``weights`` into the configured model and compute the full table row on its dataset."""
    prepared = prepared or prepare_data(config)
    if dictionary is not None:
        prepared.dictionary = np.asarray(dictionary, dtype=np.float32)
    config = resolve_config(config, prepared)
    torch_device = pick_device(device)
    model = build_model(config, prepared, torch.device("cpu"))
    if original:
        load_original_weights(model, weights, dictionary=None if dictionary is None else torch.as_tensor(dictionary))
    else:
        model.load_state_dict(weights)
    model.to(torch_device)
    criterion = create_loss(config.model_name, **config.loss)
    t = config.train
    metrics, scores = full_evaluation(
        model, criterion, prepared, k=config.k, batch_per_class=t.batch_per_class, n_segments=config.data.n_segments,
        method=config.resample_method, threshold=t.threshold, device=torch_device)
    return metrics, scores, prepared


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vad.evaluate", description=__doc__.splitlines()[0])
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
    args = parser.parse_args(argv)
    try:
        return _run(args)
    except (ConfigError, ValueError, FileNotFoundError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _config_for(args: argparse.Namespace, model_name: str | None, saved: dict[str, Any] | None) -> TrainConfig:
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
    out = Path(args.out)
    if args.checkpoint:
        state = load_checkpoint(args.checkpoint)
        config = _config_for(args, None, state["config"])
        metrics, scores, prepared = evaluate_model(config, state["model"], device=args.device)
        name = f"{config.model_name} ({Path(args.checkpoint).name}, epoch {state['epoch']})"
    elif args.original:
        model_name, path = args.original
        config = _config_for(args, model_name, None)
        dictionary = np.load(args.dictionary, allow_pickle=False) if args.dictionary else None
        metrics, scores, prepared = evaluate_model(config, read_checkpoint(path), original=True,
                                                   dictionary=dictionary, device=args.device)
        name = f"{model_name} (authors' weights)"
    else:
        config = _config_for(args, None, None)
        prepared = prepare_data(config)
        scores = TestScores.load(args.scores)
        if scores.video_ids != list(prepared.test.video_ids):
            raise ValueError(f"{args.scores}: its videos do not match the test list of {config.data.dataset}")
        metrics = frame_level_metrics(scores, prepared, config.train.threshold)
        name = f"scores from {args.scores}"
    write_outputs(out, name, metrics, scores, prepared, videos=args.videos, n_plot=args.plot_count,
                  threshold=config.train.threshold)
    return 0


if __name__ == "__main__":
    sys.exit(main())
