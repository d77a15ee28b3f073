"""Benchmark 4 of issue #6, ``early_stopping``: epochs TPE + ASHA spends to find what a full grid finds.

    python benchmarks/early_stopping.py [--quick] [--seeds 0,1,2] [--epochs 12] [--tolerance 0.01]
        [--grace 1] [--json PATH] [--results [PATH]]

A synthetic dataset in the UCF layout (480 training videos, a quarter of them held out for validation, so the
validation AUC moves in small steps; 3 crops x 128-d) and the demo RTFM. A grid over the learning rate and the
weight decay (4 x 4; ``--grid unstable-lr`` adds a learning rate that leads early and falls behind later;
``--quick``: 2 x 2 on ``synthetic:tiny``) runs fully through the search system's grid
sampler (every cell all ``--epochs`` epochs, no early stopping): its best validation video AUC over all cells and
epochs is the known answer. Then, for each ``--seeds`` seed, TPE over the same cells (``choice`` of the same
values) with ASHA (grace ``--grace`` epoch(s), reduction factor 3) runs as many trials as the grid has cells. The
trials' epochs are put in the order the driver received them (MLflow's timestamps); the count is the epochs
run, by all trials, until the best validation AUC seen so far comes within ``--tolerance`` (absolute) of the
grid's best; shown for three tolerances. Target: at most 30% of the grid's epochs. Training is seeded, so a cell
gives the same curve in both sweeps. ``--quick`` is a short smoke run (CI).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # run as a script: make `vad`, `search` and `benchmarks` importable
    sys.path.insert(0, str(REPO_ROOT))

from benchmarks.tables import format_table, markdown_table  # noqa: E402

DEMO_CONFIG = REPO_ROOT / "configs" / "demo.yaml"
TARGET_FRACTION = 0.30
METRIC = "val_video_auc"
TOLERANCES = (0.005, 0.01, 0.02)
SEARCHED = ("optim.lr", "optim.weight_decay")
GRIDS = {
    # the learning rates that train in 12 epochs, and the weight decay: the best cells (lr 3e-3) lead from the
    # first epochs on, so what is best early is best at the end
    "default": {"optim.lr": [1.0e-4, 3.0e-4, 1.0e-3, 3.0e-3], "optim.weight_decay": [1.0e-4, 1.0e-3, 1.0e-2, 1.0e-1]},
    # with lr 1e-2, which leads for the first epochs and then falls behind the slower 3e-3: short-horizon bias
    "unstable-lr": {"optim.lr": [3.0e-4, 1.0e-3, 3.0e-3, 1.0e-2],
                    "optim.weight_decay": [1.0e-4, 1.0e-3, 1.0e-2, 1.0e-1]},
    "quick": {"optim.lr": [1.0e-3, 1.0e-2], "optim.weight_decay": [1.0e-4, 1.0e-1]},
}
BASELINE = {"optim.lr": 1.0e-3, "optim.weight_decay": 1.0e-3}
DATASET = {"layout": "ucf", "videos": 480, "test_videos": 40, "n_crops": 3, "feature_dim": 128, "difficulty": 0.5,
           "seed": 0}
"""The base config's own values (a cell of the grid; both sweeps evaluate it first)."""


def write_spaces(work: Path, grid: dict[str, list[float]], epochs: int, steps: int, concurrency: int,
                 grace: int, quick: bool) -> dict[str, Path]:
    """The dataset, the base config (the demo RTFM with ``steps`` steps an epoch), the grid space and the
    TPE + ASHA space."""
    from vad.data.synthetic import generate_synthetic

    config = yaml.safe_load(DEMO_CONFIG.read_text())
    baseline = {key: grid[key][0] if BASELINE[key] not in grid[key] else BASELINE[key] for key in grid}
    config["optim"].update(lr=baseline["optim.lr"], weight_decay=baseline["optim.weight_decay"])
    config["train"].update(steps_per_epoch=steps, selection=METRIC)
    if quick:
        config["data"]["dataset"] = "synthetic:tiny"
        config["model"].update(hidden_dim=16, head_dims=[16, 8])
        config["train"].update(batch_per_class=4)
    else:
        dataset = generate_synthetic(work / "dataset", name="early-stopping", **DATASET)
        config["data"].update(dataset=str(dataset), val_fraction=0.25)
    (work / "base.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    common = {"base": "base.yaml", "resources": {"cpus_per_trial": 1, "max_concurrent": concurrency}}
    grid_space = {**common, "search": {"sampler": "grid", "epochs": epochs, "metric": METRIC},
                  "scheduler": {"name": "fifo"}, "params": {key: {"grid": values} for key, values in grid.items()}}
    size = 1
    for values in grid.values():
        size *= len(values)
    tpe_space = {**common, "search": {"sampler": "tpe", "num_samples": size, "epochs": epochs, "metric": METRIC},
                 "scheduler": {"name": "asha", "grace_period": grace, "reduction_factor": 3},
                 "params": {key: {"choice": values} for key, values in grid.items()}}
    paths = {"grid": work / "grid.yaml", "tpe": work / "tpe.yaml"}
    paths["grid"].write_text(yaml.safe_dump(grid_space, sort_keys=False))
    paths["tpe"].write_text(yaml.safe_dump(tpe_space, sort_keys=False))
    return paths


def run_sweep(space: Path, name: str, work: Path, seed: int | None = None) -> list[dict[str, Any]]:
    """Run a sweep (``search.run`` in this process) and return every epoch it ran, in the order the driver
    received them: ``{"time", "trial", "epoch", "value", "params"}``."""
    import search.run

    if seed is not None:
        text = yaml.safe_load(space.read_text())
        text["search"]["seed"] = seed
        space = space.with_name(f"{space.stem}-seed{seed}.yaml")
        space.write_text(yaml.safe_dump(text, sort_keys=False))
    tracking = f"sqlite:///{work / 'mlruns' / 'mlflow.db'}"
    status = search.run.main(["--space", str(space), "--name", name, "--storage", str(work / "ray_results"),
                              "--tracking-uri", tracking, "--confirm-top", "0"])
    if status != 0:
        raise RuntimeError(f"sweep {name} ended with status {status}")
    return epochs_in_order(tracking, name)


def epochs_in_order(tracking_uri: str, experiment: str) -> list[dict[str, Any]]:
    """Each child run's ``val_loss`` history (one value per epoch) merged by the time the driver logged it."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    experiment_id = client.get_experiment_by_name(experiment).experiment_id
    events = []
    for run in client.search_runs([experiment_id], filter_string="tags.run_type = 'trial'"):
        params = {key: float(run.data.params[key]) for key in SEARCHED if key in run.data.params}
        for metric in client.get_metric_history(run.info.run_id, METRIC):
            events.append({"time": metric.timestamp, "trial": run.data.tags.get("trial_number"), "epoch": metric.step,
                           "value": metric.value, "params": params})
    events.sort(key=lambda e: (e["time"], e["epoch"]))
    return events


def cell_best(events: list[dict[str, Any]]) -> dict[tuple, float]:
    """The best (highest) value per cell (params) over its epochs."""
    best: dict[tuple, float] = {}
    for event in events:
        cell = tuple(sorted(event["params"].items()))
        best[cell] = max(best.get(cell, float("-inf")), event["value"])
    return best


def epochs_to_reach(events: list[dict[str, Any]], target: float) -> int | None:
    """Epochs run (all trials) until the best value so far is at least ``target``; None if never."""
    best = float("-inf")
    for count, event in enumerate(events, start=1):
        best = max(best, event["value"])
        if best >= target:
            return count
    return None


def analyse(grid_events: list[dict[str, Any]], runs: dict[int, list[dict[str, Any]]], tolerance: float,
            tolerances: tuple[float, ...] = TOLERANCES) -> dict[str, Any]:
    """The grid's answer, and per seed the epochs TPE + ASHA ran until it came within each tolerance of it;
    the target is judged at ``tolerance``."""
    cells = cell_best(grid_events)
    ordered = sorted(cells.items(), key=lambda item: -item[1])
    best_cell, best = ordered[0]
    grid_epochs = len(grid_events)
    tolerances = tuple(sorted({*tolerances, tolerance}))
    seeds = {}
    for seed, events in runs.items():
        reached = {tol: epochs_to_reach(events, best - tol) for tol in tolerances}
        found = cell_best(events)
        seeds[seed] = {"epochs_to_reach": reached[tolerance], "total_epochs": len(events),
                       "fraction_of_grid": None if reached[tolerance] is None else reached[tolerance] / grid_epochs,
                       "fractions": {tol: None if n is None else n / grid_epochs for tol, n in reached.items()},
                       "best_value": max(e["value"] for e in events), "trials": len({e["trial"] for e in events}),
                       "distinct_cells": len(found),
                       "best_cell_found": dict(max(found.items(), key=lambda item: item[1])[0])}
    fractions = [s["fraction_of_grid"] for s in seeds.values()]
    return {"grid_epochs": grid_epochs, "grid_best": best, "grid_best_cell": dict(best_cell),
            "second_best": ordered[1][1] if len(ordered) > 1 else None,
            "grid_median_cell": statistics.median(cells.values()), "target": best - tolerance,
            "tolerance": tolerance, "tolerances": list(tolerances),
            "cells": [[dict(cell), value] for cell, value in ordered], "seeds": seeds,
            "met_target_all_seeds": all(f is not None and f <= TARGET_FRACTION for f in fractions)}


def _short(params: dict[str, float]) -> str:
    return " ".join(f"{key.split('.')[-1]}={value:g}" for key, value in sorted(params.items()))


def render(report: dict[str, Any], markdown: bool = False) -> str:
    table = markdown_table if markdown else format_table
    a = report["analysis"]
    cells = table(["cell", f"best {METRIC}"], [[_short(cell), value] for cell, value in a["cells"]])
    rows = []
    for seed, s in a["seeds"].items():
        fractions = [s["fractions"].get(tol, s["fractions"].get(str(tol))) for tol in a["tolerances"]]
        rows.append([seed, s["trials"], s["distinct_cells"], s["total_epochs"], s["epochs_to_reach"] or "never",
                     *fractions, s["best_value"], _short(s["best_cell_found"])])
    seeds = table(["seed", "trials", "distinct cells", "epochs run", f"epochs to reach (tol {a['tolerance']:g})",
                   *(f"fraction (tol {tol:g})" for tol in a["tolerances"]), f"best {METRIC}", "best cell found"],
                  rows)
    fractions = [s["fraction_of_grid"] for s in a["seeds"].values() if s["fraction_of_grid"] is not None]
    mean = f"{statistics.mean(fractions):.2f}" if len(fractions) == len(a["seeds"]) and fractions else "-"
    text = [
        f"Grid '{report.get('grid_name', 'default')}': {len(a['cells'])} cells x {report['epochs']} epochs = "
        f"{a['grid_epochs']} epochs; its best {METRIC} "
        f"{a['grid_best']:.4g} ({_short(a['grid_best_cell'])}; next best cell {a['second_best']:.4g}, median cell "
        f"{a['grid_median_cell']:.4g}). Reached = best so far >= grid best - tolerance.",
        cells,
        f"TPE + ASHA (grace {report['grace']}, reduction 3), as many trials as cells, per sampler seed "
        "(fraction = epochs to reach / the grid's epochs; '-' = never reached):",
        seeds,
        f"Mean fraction of the grid's epochs (tol {a['tolerance']:g}): {mean}; target <= {TARGET_FRACTION:.0%} on "
        f"every seed: {'met' if a['met_target_all_seeds'] else 'NOT met'}.",
    ]
    return ("\n\n" if markdown else "\n").join(text)


def results_section(report: dict[str, Any]) -> str:
    from benchmarks.results_file import run_line

    return run_line("python benchmarks/early_stopping.py --results", report["seconds"]) + "\n\n" + render(
        report, markdown=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    from benchmarks.results_file import add_output_arguments

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short smoke run (CI): a 2 x 2 grid, 2 epochs")
    parser.add_argument("--seeds", default=None, help="TPE sampler seeds, comma-separated (default 0,1,2; quick 0)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs per trial (default 12; quick 2)")
    parser.add_argument("--steps", type=int, default=None, help="steps per epoch (default 12; quick 1)")
    parser.add_argument("--tolerance", type=float, default=0.01,
                        help="reached = within this much (validation AUC) of the grid's best")
    parser.add_argument("--grace", type=int, default=1, help="ASHA's grace period in epochs")
    parser.add_argument("--grid", choices=[g for g in GRIDS if g != "quick"], default="default",
                        help="default: lr 1e-4..3e-3 x weight decay; unstable-lr: lr 3e-4..1e-2 x weight decay")
    parser.add_argument("--grid-from", type=Path, default=None,
                        help="reuse the grid of an earlier run's --json (same settings; training is seeded)")
    parser.add_argument("--concurrency", type=int, default=2, help="trials at once, one CPU each")
    parser.add_argument("--workdir", type=Path, default=None, help="where the sweeps go (default: temp)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    add_output_arguments(parser, "early_stopping")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    seeds = [int(s) for s in (args.seeds or ("0" if args.quick else "0,1,2")).split(",") if s.strip()]
    epochs = args.epochs or (2 if args.quick else 12)
    steps = args.steps or (1 if args.quick else 12)
    work = (args.workdir or Path(tempfile.mkdtemp(prefix="wsvad-early-stopping-"))).resolve()
    work.mkdir(parents=True, exist_ok=True)
    os.environ["VAD_CACHE_DIR"] = str(work / "cache")
    started = time.perf_counter()
    import ray

    ray.init(address="local", include_dashboard=False, log_to_driver=False)  # one Ray for all the sweeps
    try:
        grid = GRIDS["quick" if args.quick else args.grid]
        spaces = write_spaces(work, grid, epochs, steps, args.concurrency, args.grace, args.quick)
        if args.grid_from:
            earlier = json.loads(args.grid_from.read_text())
            if (earlier["epochs"], earlier["steps"], earlier["quick"], earlier.get("grid")) != (
                    epochs, steps, args.quick, grid):
                raise SystemExit(f"--grid-from {args.grid_from}: made with other settings")
            grid_events = earlier["grid_events"]
        else:
            print("== early_stopping: the full grid", flush=True)
            grid_events = run_sweep(spaces["grid"], "grid", work)
        runs = {}
        for seed in seeds:
            print(f"== TPE + ASHA, seed {seed}", flush=True)
            runs[seed] = run_sweep(spaces["tpe"], f"tpe-asha-seed{seed}", work, seed=seed)
    finally:
        ray.shutdown()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    report = {"quick": args.quick, "epochs": epochs, "steps": steps, "seeds": seeds, "grace": args.grace,
              "grid": grid, "grid_name": "quick" if args.quick else args.grid,
              "seconds": time.perf_counter() - started, "grid_events": grid_events, "runs": runs,
              "analysis": analyse(grid_events, runs, args.tolerance)}
    from benchmarks.results_file import publish

    publish(report, render(report), section="early_stopping", results_section=results_section, json_path=args.json,
            results_path=args.results)
    return report


if __name__ == "__main__":
    main()
