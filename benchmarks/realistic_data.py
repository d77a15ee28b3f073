"""Acceptance of the ``synthetic:ucf-like`` preset (issue #11, item 7): a dataset where hyperparameters matter.

    python benchmarks/realistic_data.py [--models rtfm] [--seeds 0,1,2] [--epochs 30] [--n-boot 1000]
        [--quick] [--json PATH] [--results [PATH]]

Prints dataset facts (videos per split, abnormal share of the test frames, a linear probe fit on frame labels of
half of the test videos and scored on the other half), a video-label logistic regression WITHOUT MIL (fit on the
training videos' mean features with their video labels, then scoring every test snippet), and each model trained
with the paper defaults of ``configs/<model>_ucf_like.yaml`` for each seed: the selected checkpoint's frame-level
test AUC/AP with 95% bootstrap intervals over test videos, its paired-bootstrap difference to the regression,
and the overfitting evidence (epoch of the lowest validation loss, validation and training loss there and at the
last epoch). Acceptance: every model's AUC is above the regression's (the paired interval excludes 0), and the
paper defaults overfit (the validation loss ends above its minimum while the training loss ends below its value
at that minimum) on most seeds. ``--quick`` is a short smoke run on a small version of the preset.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # run as a script: make `vad` and `benchmarks` importable
    sys.path.insert(0, str(REPO_ROOT))

from benchmarks.tables import format_table, markdown_table  # noqa: E402

PRESET = "ucf-like"
QUICK_OVERRIDES = {"videos": 120, "test_videos": 60}
FRAMES = 16


# ------------------------------------------------------------------------------------------------ data

def _read_split(config: Any, split: str) -> tuple[list[str], list[np.ndarray]]:
    """Video names (list order) and crop-averaged snippet features ``(T, C)`` of ``split``."""
    list_path, root = (config.train_list, config.feature_root) if split == "train" else \
        (config.test_list, config.test_root)
    names, features = [], []
    for line in list_path.read_text().splitlines():
        file_name = line.strip().replace("\\", "/").rsplit("/", 1)[-1]
        if file_name:
            names.append(file_name.removesuffix("_i3d.npy"))
            features.append(np.load(root / file_name).mean(axis=1))
    return names, features


def load_facts(yaml_path: Path) -> dict[str, Any]:
    """Features, labels and ground truth of the dataset, plus its counts and the validation positions."""
    from vad.data import DatasetConfig, load_dataset
    from vad.data.split import stratified_val_positions

    config = DatasetConfig.from_yaml(yaml_path)
    dataset = load_dataset(yaml_path)
    train_names, train_features = _read_split(config, "train")
    test_names, test_features = _read_split(config, "test")
    val = stratified_val_positions(dataset.train, config.val_fraction, 0)
    gt = np.asarray(np.load(config.ground_truth), dtype=np.int64)
    offsets = np.cumsum([0] + [FRAMES * f.shape[0] for f in test_features])
    if offsets[-1] != gt.size:
        raise ValueError(f"{config.ground_truth}: {gt.size} frames, the test features cover {offsets[-1]}")
    train_labels = np.array([v.label for v in dataset.train])
    test_labels = np.array([v.label for v in dataset.test])
    return {"train_features": train_features, "train_labels": train_labels, "val_positions": val,
            "test_features": test_features, "test_labels": test_labels, "gt": gt, "offsets": offsets,
            "counts": {"train": len(train_names) - len(val), "val": len(val), "test": len(test_names),
                       "test_abnormal": int(test_labels.sum()), "test_frames": int(gt.size)},
            "abnormal_share": float(gt.mean()), "width": config.feature_dim, "crops": config.n_crops}


def frame_scores(snippet_scores: list[np.ndarray]) -> np.ndarray:
    """Snippet scores repeated to frame level and concatenated ``(F,)``."""
    return np.concatenate([np.repeat(np.asarray(s, dtype=np.float64), FRAMES) for s in snippet_scores])


def summarise(scores: np.ndarray, gt: np.ndarray, offsets: np.ndarray, n_boot: int, seed: int) -> dict[str, Any]:
    """Frame AUC/AP on all frames with 95% bootstrap intervals over videos."""
    from vad.metrics import frame_metrics
    from vad.metrics.intervals import bootstrap_intervals

    point = frame_metrics(scores, gt)
    intervals = bootstrap_intervals(scores, gt, offsets, n_boot=n_boot, seed=seed)
    return {name: [float(point[name]), *map(float, intervals[name])] for name in ("auc", "ap")}


def linear_probe(facts: dict[str, Any], n_boot: int) -> dict[str, Any]:
    """A logistic regression fit on the snippet labels of the even test videos, scored on the odd ones."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    features, gt, offsets = facts["test_features"], facts["gt"], facts["offsets"]
    labels = [gt[offsets[i]:offsets[i + 1]].reshape(-1, FRAMES).mean(axis=1) > 0.5 for i in range(len(features))]
    fit, held = range(0, len(features), 2), list(range(1, len(features), 2))
    scaler = StandardScaler().fit(np.concatenate([features[i] for i in fit]))
    probe = LogisticRegression(max_iter=2000).fit(scaler.transform(np.concatenate([features[i] for i in fit])),
                                                  np.concatenate([labels[i] for i in fit]))
    scores = frame_scores([probe.decision_function(scaler.transform(features[i])) for i in held])
    held_gt = np.concatenate([gt[offsets[i]:offsets[i + 1]] for i in held])
    held_offsets = np.cumsum([0] + [offsets[i + 1] - offsets[i] for i in held])
    return summarise(scores, held_gt, held_offsets, n_boot, seed=1)


def video_label_regression(facts: dict[str, Any]) -> np.ndarray:
    """Frame scores ``(F,)`` of a logistic regression fit on the training part's video-mean features with the
    video labels (no MIL), applied to every test snippet."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    keep = np.setdiff1d(np.arange(len(facts["train_features"])), facts["val_positions"])
    means = np.stack([facts["train_features"][i].mean(axis=0) for i in keep])
    scaler = StandardScaler().fit(means)
    regression = LogisticRegression(max_iter=2000).fit(scaler.transform(means), facts["train_labels"][keep])
    return frame_scores([regression.decision_function(scaler.transform(f)) for f in facts["test_features"]])


# ---------------------------------------------------------------------------------------------- models

def train_model(model: str, seed: int, epochs: int | None, dataset: str, out: Path) -> dict[str, Any]:
    """Train ``configs/<model>_ucf_like.yaml`` with ``seed`` (a finished run already in ``out`` with the same
    config is reused); its history, wall time and the selected checkpoint's frame scores."""
    from vad.training import train

    config = yaml.safe_load((REPO_ROOT / "configs" / f"{model}_ucf_like.yaml").read_text())
    config["data"]["dataset"] = dataset
    config["train"].update(seed=seed, num_threads=1, **({"epochs": epochs} if epochs else {}))
    marker = out / "benchmark.json"
    if not (marker.is_file() and json.loads(marker.read_text())["config"] == config):
        started = time.perf_counter()
        train(config, out_dir=out, report=lambda metrics, out_dir: None)
        marker.write_text(json.dumps({"config": config, "seconds": time.perf_counter() - started}))
    result = json.loads((out / "result.json").read_text())
    with np.load(out / "scores.npz", allow_pickle=False) as saved:
        scores = np.split(saved["scores"], np.cumsum(saved["lengths"])[:-1])
    history = [{key: float(row[key]) for key in ("epoch", "train_loss", "val_loss")} for row in result["epochs"]]
    return {"model": model, "seed": seed, "seconds": json.loads(marker.read_text())["seconds"],
            "selected_epoch": result["selected_epoch"], "history": history, "frame_scores": frame_scores(scores)}


def overfitting(history: list[dict[str, float]]) -> dict[str, Any]:
    """Epoch of the lowest validation loss; validation and training loss there and at the end."""
    best = min(history, key=lambda row: row["val_loss"])
    last = history[-1]
    return {"min_epoch": int(best["epoch"]), "val_at_min": best["val_loss"], "val_end": last["val_loss"],
            "train_at_min": best["train_loss"], "train_end": last["train_loss"],
            "overfits": last["val_loss"] > best["val_loss"] and last["train_loss"] < best["train_loss"]}


# ------------------------------------------------------------------------------------------------ report

def _interval(values: list[float]) -> str:
    return f"{100 * values[0]:.1f} [{100 * values[1]:.1f}, {100 * values[2]:.1f}]"


def render(report: dict[str, Any], markdown: bool = False) -> str:
    table = markdown_table if markdown else format_table
    c = report["counts"]
    facts = (f"Dataset synthetic:{PRESET}{' (quick)' if report['quick'] else ''}: {c['train']} training / "
             f"{c['val']} validation / {c['test']} test videos ({c['test_abnormal']} abnormal), "
             f"{report['crops']} crops x {report['width']} channels, {c['test_frames']} test frames of which "
             f"{100 * report['abnormal_share']:.2f}% abnormal. Linear probe fit on frame labels (half of the test "
             f"videos, scored on the other half): AUC {_interval(report['probe']['auc'])}.")
    rows = [["video-label logistic regression (no MIL)", "-", _interval(report["regression"]["auc"]),
             _interval(report["regression"]["ap"]), "-", "-"]]
    for run in report["runs"]:
        diff = run["auc_minus_regression"]
        rows.append([run["model"], run["seed"], _interval(run["auc"]), _interval(run["ap"]),
                     f"{100 * diff[0]:+.1f} [{100 * diff[1]:+.1f}, {100 * diff[2]:+.1f}]", f"{run['seconds']:.0f}"])
    scores = table(["scorer", "seed", "test AUC % [95% CI]", "test AP % [95% CI]", "AUC - regression [95% CI]",
                    "train s"], rows)
    fit_rows = [[run["model"], run["seed"], run["selected_epoch"], o["min_epoch"], len(run["history"]),
                 o["val_at_min"], o["val_end"], o["train_at_min"], o["train_end"], "yes" if o["overfits"] else "no"]
                for run in report["runs"] for o in [run["overfitting"]]]
    fits = table(["model", "seed", "selected epoch", "val-loss min epoch", "epochs", "val loss at min",
                  "val loss at end", "train loss at min", "train loss at end", "overfits"], fit_rows)
    a = report["acceptance"]
    verdict = (f"Acceptance: every model above the regression (paired 95% interval of the AUC difference above 0): "
               f"{'met' if a['above_regression'] else 'NOT met'}; the paper defaults overfit on "
               f"{a['overfitting_runs']} of {a['runs']} runs: {'met' if a['overfit'] else 'NOT met'}.")
    parts = [facts, "Frame-level test metrics (selected checkpoint: lowest val_loss; 95% bootstrap intervals over "
             f"test videos, {report['n_boot']} replicates):", scores,
             "Overfitting of the paper defaults (per-epoch losses, one pass over the training videos an epoch):",
             fits, verdict]
    return ("\n\n" if markdown else "\n").join(parts)


def results_section(report: dict[str, Any]) -> str:
    from benchmarks.results_file import run_line

    return run_line("python benchmarks/realistic_data.py --results", report["seconds"]) + "\n\n" + render(
        report, markdown=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    from benchmarks.results_file import add_output_arguments

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="rtfm", help="comma-separated: rtfm, mgfn, s3r (configs/*_ucf_like.yaml)")
    parser.add_argument("--seeds", default=None, help="training seeds, comma-separated (default 0,1,2; quick 0)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs (default: the config's; quick 3)")
    parser.add_argument("--n-boot", type=int, default=None, help="bootstrap replicates (default 1000; quick 50)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: a small version of the preset")
    parser.add_argument("--workdir", type=Path, default=None, help="where the runs go (default: temp)")
    add_output_arguments(parser, "realistic_data")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from vad.data.synthetic import ensure_synthetic
    from vad.metrics.intervals import paired_bootstrap_difference

    args = parse_args(argv)
    seeds = [int(s) for s in (args.seeds or ("0" if args.quick else "0,1,2")).split(",") if s.strip()]
    epochs = args.epochs or (3 if args.quick else None)
    n_boot = args.n_boot or (50 if args.quick else 1000)
    started = time.perf_counter()
    overrides = QUICK_OVERRIDES if args.quick else {}
    yaml_path = ensure_synthetic(PRESET, **overrides)
    facts = load_facts(yaml_path)
    gt, offsets = facts["gt"], facts["offsets"]
    regression = video_label_regression(facts)
    report: dict[str, Any] = {
        "quick": args.quick, "seeds": seeds, "epochs": epochs, "n_boot": n_boot, "counts": facts["counts"],
        "abnormal_share": facts["abnormal_share"], "width": facts["width"], "crops": facts["crops"],
        "probe": linear_probe(facts, n_boot), "regression": summarise(regression, gt, offsets, n_boot, seed=0),
        "runs": []}
    work = args.workdir or Path(tempfile.mkdtemp(prefix="wsvad-realistic-"))
    for model in [m.strip() for m in args.models.split(",") if m.strip()]:
        for seed in seeds:
            print(f"== {model}, seed {seed}", flush=True)
            run = train_model(model, seed, epochs, str(yaml_path), work / f"{model}-{seed}")
            scores = run.pop("frame_scores")
            run.update(summarise(scores, gt, offsets, n_boot, seed=0), overfitting=overfitting(run["history"]),
                       auc_minus_regression=list(paired_bootstrap_difference(
                           scores, regression, gt, offsets, metric="auc", n_boot=n_boot, seed=0)))
            report["runs"].append(run)
    runs = report["runs"]
    overfit = sum(run["overfitting"]["overfits"] for run in runs)
    report["acceptance"] = {"above_regression": bool(runs) and all(r["auc_minus_regression"][1] > 0 for r in runs),
                            "overfitting_runs": overfit, "runs": len(runs), "overfit": overfit > len(runs) / 2}
    report["mean_seconds_per_run"] = statistics.mean(r["seconds"] for r in runs) if runs else None
    report["seconds"] = time.perf_counter() - started
    from benchmarks.results_file import publish

    publish(report, render(report), section="realistic_data", results_section=results_section, json_path=args.json,
            results_path=args.results)
    return report


if __name__ == "__main__":
    main()
