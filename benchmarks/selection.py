"""Benchmark ``selection`` (issue 11, item 2): which checkpoint-selection rule picks the best test epoch?

    python benchmarks/selection.py [--config configs/rtfm_ucf_like.yaml] [--seeds 10] [--epochs N]
        [--workers 2] [--quick] [--histories-from JSON] [--json PATH] [--results [PATH]]

The base config is trained once per seed (``train.seed`` 0..N-1) with ``train.test_every_epoch: true``, so every
epoch's validation signals and test AUC/AP are known. Then, offline from those histories, each rule of
:mod:`vad.selection` (``min``; ``moving_average`` windows 3 and 5; ``ema`` alphas 0.3 and 0.5), on ``val_loss``,
``val_video_auc`` and ``val_video_ap``, with and without ``min_delta``, picks an epoch exactly as the trainer
would; the table gives the test AUC and AP at that epoch (mean +- std over seeds), the paired difference to the
raw ``min`` rule on ``val_loss`` (mean +- standard error over seeds), next to two references: the last epoch and
the test-selected epoch (best test AUC: the papers' protocol, an upper bound no honest rule can reach). The
``min_delta`` used for a metric is its median absolute epoch-to-epoch change (where it changed) over all seeds
(its noise scale).
``--quick`` is a smoke run on ``synthetic:tiny`` (CI).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # run as a script: make `vad` and `benchmarks` importable
    sys.path.insert(0, str(REPO_ROOT))

from benchmarks.tables import format_table, markdown_table  # noqa: E402

DEFAULT_CONFIG = REPO_ROOT / "configs" / "rtfm_ucf_like.yaml"
SIGNALS = ("val_loss", "val_video_auc", "val_video_ap")
RULES = (("min", {}), ("moving_average", {"window": 3}), ("moving_average", {"window": 5}),
         ("ema", {"alpha": 0.3}), ("ema", {"alpha": 0.5}))
KEPT = ("epoch", "train_loss", "val_loss", "val_ref_loss", "val_video_auc", "val_video_ap", "test_auc", "test_ap")
QUICK = {"data.dataset": "synthetic:tiny", "model.hidden_dim": 16, "model.head_dims": [16, 8],
         "train.batch_per_class": 4}
BASELINE = ("val_loss", "min", "", False)


def train_seed(config_path: str, overrides: dict[str, Any], seed: int, out_dir: str) -> list[dict[str, float]]:
    """One training run (seed ``seed``); its per-epoch signals and test metrics.

    The per-epoch ``test_loss``/``train_eval_loss`` columns (two extra passes over the test and training videos)
    play no part here and are skipped, which about halves the cost of ``test_every_epoch``."""
    import vad.training
    from vad.config import TrainConfig
    from vad.training import train

    vad.training.table_losses = _no_table_losses
    config = TrainConfig.from_yaml(config_path, {**overrides, "train.seed": seed})
    result = train(config, report=lambda metrics, out: None, out_dir=out_dir)
    return [{key: float(epoch[key]) for key in KEPT if key in epoch} for epoch in result.epochs]


def _no_table_losses(*args: Any, **kwargs: Any) -> dict[str, float]:
    return {"test_loss": float("nan"), "train_loss": float("nan"), "video_auc": float("nan")}


def run_histories(config: Path, overrides: dict[str, Any], seeds: list[int], workers: int,
                  work: Path, partial: Path | None = None) -> dict[int, list[dict[str, float]]]:
    """Every seed's history, ``workers`` processes at a time (the dataset is prepared once, first)."""
    from vad.config import TrainConfig
    from vad.prepare import prepare_data

    prepare_data(TrainConfig.from_yaml(config, overrides))
    histories: dict[int, list[dict[str, float]]] = {}
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        futures = {seed: pool.submit(train_seed, str(config), overrides, seed, str(work / f"seed{seed}"))
                   for seed in seeds}
        for seed, future in futures.items():
            histories[seed] = future.result()
            print(f"seed {seed}: {len(histories[seed])} epochs", flush=True)
            if partial:  # what is done so far, for --histories-from should the run be cut short
                partial.write_text(json.dumps({"histories": histories}))
    return histories


def noise_scale(histories: dict[int, list[dict[str, float]]], metric: str) -> float:
    """The median absolute epoch-to-epoch change of ``metric`` (among epochs where it changed), pooled over
    seeds."""
    changes = [abs(b[metric] - a[metric]) for h in histories.values() for a, b in zip(h, h[1:])
               if math.isfinite(a[metric]) and math.isfinite(b[metric]) and a[metric] != b[metric]]
    return statistics.median(changes) if changes else 0.0


def _mean_std(values: list[float]) -> tuple[float, float]:
    values = [v for v in values if math.isfinite(v)]
    if not values:
        return float("nan"), float("nan")
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def _mean_se(values: list[float]) -> tuple[float, float]:
    mean, std = _mean_std(values)
    return mean, std / math.sqrt(len(values)) if len(values) > 1 else float("nan")


def analyse(histories: dict[int, list[dict[str, float]]]) -> dict[str, Any]:
    """Each rule's picked epoch per seed and the test AUC/AP there, plus the references."""
    from vad.selection import select_epoch

    deltas = {metric: noise_scale(histories, metric) for metric in SIGNALS}
    picks: dict[tuple[str, str, str, bool], dict[int, int | None]] = {}
    for metric in SIGNALS:
        for rule, options in RULES:
            label = ", ".join(f"{k} {v:g}" for k, v in options.items())
            for with_delta in (False, True):
                picks[(metric, rule, label, with_delta)] = {
                    seed: select_epoch([e[metric] for e in h], metric, rule=rule, min_delta=deltas[metric]
                                       if with_delta else 0.0, **options) for seed, h in histories.items()}
    picks[("last epoch", "", "", False)] = {seed: len(h) for seed, h in histories.items()}
    picks[("test_auc", "best (test-selected)", "", False)] = {
        seed: select_epoch([e["test_auc"] for e in h], "test_auc") for seed, h in histories.items()}

    def at(seed: int, epoch: int | None, key: str) -> float:
        return float("nan") if epoch is None else histories[seed][epoch - 1][key]

    baseline = picks[BASELINE]
    rows = []
    for (metric, rule, label, with_delta), chosen in picks.items():
        row: dict[str, Any] = {"metric": metric, "rule": rule, "options": label, "min_delta": deltas.get(metric, 0.0)
                               if with_delta else 0.0, "epochs": chosen}
        for key in ("test_auc", "test_ap"):
            row[key] = _mean_std([at(s, e, key) for s, e in chosen.items()])
            row[f"{key}_vs_min"] = _mean_se([at(s, e, key) - at(s, baseline[s], key) for s, e in chosen.items()])
        row["mean_epoch"] = _mean_std([float(e) for e in chosen.values() if e is not None])[0]
        rows.append(row)
    return {"min_delta": deltas, "rows": rows, "recommended": recommend(rows)}


def recommend(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The ``val_loss`` rule (no ``min_delta``) with the best mean test AUC; ``min`` unless another beats it by
    more than two standard errors of the paired difference (about a 95% one: more than seed noise)."""
    candidates = [r for r in rows if r["metric"] == "val_loss" and r["min_delta"] == 0.0]
    best = max(candidates, key=lambda r: r["test_auc"][0])
    difference, se = best["test_auc_vs_min"]
    if best["rule"] == "min" or not (difference > 2 * se):
        best = next(r for r in candidates if r["rule"] == "min")
    return {"rule": best["rule"], "options": best["options"], "test_auc": best["test_auc"],
            "vs_min": best["test_auc_vs_min"]}


def _pm(pair: tuple[float, float], scale: float = 100.0) -> str:
    mean, spread = pair
    return "-" if not math.isfinite(mean) else f"{scale * mean:.1f} ± {scale * spread:.1f}"


def render(report: dict[str, Any], markdown: bool = False) -> str:
    table = markdown_table if markdown else format_table
    a = report["analysis"]
    lines = [[r["metric"], r["rule"] + (f" ({r['options']})" if r["options"] else ""),
              f"{r['min_delta']:.3g}" if r["min_delta"] else "0", f"{r['mean_epoch']:.1f}", _pm(r["test_auc"]),
              _pm(r["test_ap"]), _pm(r["test_auc_vs_min"]), _pm(r["test_ap_vs_min"])] for r in a["rows"]]
    body = table(["selection metric", "rule", "min_delta", "mean epoch", "test AUC (%)", "test AP (%)",
                  "AUC vs min val_loss", "AP vs min val_loss"], lines)
    rec = a["recommended"]
    choice = rec["rule"] + (f" ({rec['options']})" if rec["options"] else "")
    return ("\n\n" if markdown else "\n").join([
        f"{len(report['seeds'])} seeds x {report['epochs']} epochs of `{report['config']}`. Test AUC/AP of the epoch "
        "each rule picks: mean ± std over seeds; 'vs min val_loss': paired difference to the raw minimum of "
        "val_loss, mean ± standard error over seeds. min_delta (when not 0) is the metric's median "
        "epoch-to-epoch change. 'test-selected' picks the best test AUC (the papers' protocol): a reference, "
        "not a rule one may use.",
        body,
        f"Recommended default on val_loss: {choice} (test AUC {_pm(rec['test_auc'])}, "
        f"{_pm(rec['vs_min'])} vs min; a rule replaces min only when it beats it by more than 2 standard errors).",
    ])


def results_section(report: dict[str, Any]) -> str:
    from benchmarks.results_file import run_line

    return (run_line("python benchmarks/selection.py --results", report["seconds"]) + "\n\n"
            + render(report, markdown=True) + "\n\n" + report.get("decision", ""))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    from benchmarks.results_file import add_output_arguments

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="the base config")
    parser.add_argument("--seeds", type=int, default=None, help="training seeds 0..N-1 (default 10; quick 3)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs per run (default: the config's; quick 4)")
    parser.add_argument("--workers", type=int, default=2, help="training processes at once, one thread each")
    parser.add_argument("--quick", action="store_true", help="smoke run on synthetic:tiny (CI)")
    parser.add_argument("--histories-from", type=Path, default=None,
                        help="reuse the histories of an earlier run's --json instead of training")
    parser.add_argument("--decision", default="", help="a sentence on the chosen default, for RESULTS.md")
    add_output_arguments(parser, "selection")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    started = time.perf_counter()
    seeds = list(range(args.seeds or (3 if args.quick else 10)))
    overrides: dict[str, Any] = {"train.test_every_epoch": True, "train.num_threads": 1, "train.device": "cpu"}
    if args.quick:
        overrides.update(QUICK)
    if args.epochs or args.quick:
        overrides["train.epochs"] = args.epochs or 4
    if args.histories_from:
        earlier = json.loads(args.histories_from.read_text())
        histories = {int(seed): h for seed, h in earlier["histories"].items()}
        started -= earlier.get("seconds", 0.0)  # report the training time of the run that made the histories
    else:
        with tempfile.TemporaryDirectory(prefix="wsvad-selection-") as work:
            partial = args.json.with_suffix(".partial.json") if args.json else None
            histories = run_histories(args.config, overrides, seeds, args.workers, Path(work), partial)
    seeds = sorted(histories)
    if args.histories_from:
        overrides = json.loads(args.histories_from.read_text()).get("overrides", overrides)
    report = {"config": os.path.relpath(args.config, REPO_ROOT), "overrides": overrides, "seeds": seeds,
              "epochs": max(len(h) for h in histories.values()), "seconds": time.perf_counter() - started,
              "histories": histories, "analysis": analyse(histories), "decision": args.decision}
    from benchmarks.results_file import publish

    publish(report, render(report), section="selection", results_section=results_section, json_path=args.json,
            results_path=args.results)
    return report


if __name__ == "__main__":
    main()
