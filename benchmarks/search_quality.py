"""Benchmark ``search_quality`` (issue 15): which search strategy finds what the full grid finds, for how much?

    python benchmarks/search_quality.py --grid-dir DIR [--train] [--epochs 12] [--grid-seeds 0,1,2]
        [--search-seeds 0,1,2,3,4] [--quick] [--figure PNG] [--json PATH] [--results [PATH]]

A tabular benchmark (the standard way to compare HPO strategies fairly and cheaply). ``--train`` trains, for real,
every point of a grid in the reference study's style (weight decay x dropout x the pyramid's length x the
magnitude-loss weight: 24 points) on ``synthetic:ucf-like`` with RTFM, each to the full budget with three seeds,
and records every epoch's validation signals (``val_ref_loss``, ``val_video_auc``/``ap``) plus the test AUC/AP at
the epochs the selection rules pick (resumable: finished runs in ``--grid-dir`` are skipped). A point's *true
quality* is its mean test AUC (and AP) over the grid seeds other than the search's (1, 2) at the checkpoint the
trainer's default rule picks on ``val_ref_loss``: the test set judges strategies, it never runs them.

Each strategy is then replayed on the recorded curves of grid seed 0 through the sweep's real searcher
(``search.sweep.searcher.make_searcher``: Optuna's TPE, random or grid sampler, the paper default first, no point twice)
and a real Ray Tune scheduler (the sweep's ``PersistentASHA``, ``AsyncHyperBandScheduler`` with several brackets,
``HyperBandScheduler``, ``MedianStoppingRule``, FIFO), driven without a Ray cluster by a small stand-in for Tune's
controller: two trials at once, each epoch taking that point's recorded CPU time, each trial reporting the recorded
``best_val_ref_loss`` (the selection rule's ``selected_value``, exactly what a sweep ranks on and its scheduler
compares), so the scheduler's stops are real and the budget is the epochs actually consumed. Regret = the best
grid point's true quality - the found point's, over ``--search-seeds`` (mean, 95% t-interval), against the share of
the grid's epochs (and CPU/wall time) spent. Target: regret within the best point's seed noise (the half-width of
the 95% t-interval of its test AUC over the grid seeds) at <= 25% of the grid's epochs, on every search seed.
``--quick`` replays four strategies with two search seeds (tests, on a fake recorded grid).

Cost: the grid (72 runs of 12 epochs, :data:`SETTINGS`) took 15 min wall on 2 shared cores (about 3 CPU-min per
grid seed); the replays about a minute.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # run as a script: make `vad`, `search` and `benchmarks` importable
    sys.path.insert(0, str(REPO_ROOT))

DEFAULT_CONFIG = REPO_ROOT / "configs" / "rtfm_ucf_like.yaml"
GRID: dict[str, list[Any]] = {
    "optim.weight_decay": [5.0e-4, 5.0e-3, 5.0e-2],
    "model.dropout": [0.3, 0.7],
    "model.dilations": [[1, 2], [1, 2, 4]],
    "loss.magnitude_weight": [1.0e-4, 1.0e-3],
}
"""The study's style: weight decay x dropout x a block count (the pyramid's length) x a loss weight (24 points)."""
SETTINGS: dict[str, Any] = {"optim.lr": 3.0e-3, "model.hidden_dim": 64, "train.steps_per_epoch": 4}
"""The base config made cheap enough for a 72-run grid on 2 shared cores: half a pass over the training videos an
epoch, a 64-wide aggregation, three times the authors' learning rate (their validation minimum comes at epoch
18-21 of full passes at 1e-3, ``## realistic_data``), so a 12-epoch budget still covers the rise after it."""
RULES: tuple[tuple[str, dict[str, Any]], ...] = (
    ("min", {}), ("moving_average", {"window": 3}), ("moving_average", {"window": 5}), ("ema", {"alpha": 0.3}),
    ("ema", {"alpha": 0.5}))
"""The selection rules whose picked epochs get test metrics (those of ``benchmarks/selection.py``)."""
GRID_SEEDS = (0, 1, 2)
SEARCH_SEED = 0
"""The grid seed a search trains with; the others (1, 2) only confirm."""
KEPT = ("epoch", "train_loss", "val_loss", "val_ref_loss", "val_video_auc", "val_video_ap", "test_auc", "test_ap")


def grid_points(grid: dict[str, list[Any]] = GRID) -> list[dict[str, Any]]:
    """Every combination of the grid's values, in a fixed order."""
    keys = list(grid)
    return [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]


def point_key(point: dict[str, Any]) -> str:
    """A short, file-name-safe name of a grid point."""
    parts = []
    for key, value in point.items():
        short = key.split(".")[-1]
        text = "-".join(str(v) for v in value) if isinstance(value, list) else f"{value:g}"
        parts.append(f"{short}={text}")
    return "_".join(parts)


def _no_table_losses(*args: Any, **kwargs: Any) -> dict[str, float]:
    return {"test_loss": float("nan"), "train_loss": float("nan"), "video_auc": float("nan")}


def base_overrides(config_path: str, epochs: int) -> dict[str, Any]:
    """What every grid run sets: the full budget, :data:`SETTINGS`, one thread, and the base config's loss as the
    reference objective (``val_ref_loss``: one function for every point, as a sweep sets it)."""
    import copy

    from vad.config import TrainConfig
    from vad.models.registry import loss_arguments

    base = TrainConfig.from_yaml(config_path)
    reference = {**loss_arguments(base.model_name), **copy.deepcopy(base.loss)}
    return {**SETTINGS, "train.epochs": epochs, "train.num_threads": 1, "train.selection": "val_ref_loss",
            "train.reference_loss": reference}


def rule_label(rule: str, options: dict[str, Any]) -> str:
    """``min``, ``moving_average:3``, ``ema:0.5``."""
    return rule if not options else f"{rule}:{next(iter(options.values())):g}"


def picked_epochs(history: list[dict[str, float]], metric: str = "val_ref_loss") -> dict[str, int | None]:
    """The epoch each rule of :data:`RULES` selects from a run's history (as the trainer would)."""
    from vad.selection import select_epoch

    values = [e[metric] for e in history]
    return {rule_label(rule, options): select_epoch(values, metric, rule=rule, **options) for rule, options in RULES}


def train_point(config_path: str, overrides: dict[str, Any], out_file: str) -> dict[str, Any]:
    """One grid run; writes ``{"history": [...], "test": {epoch: {test_auc, test_ap}}, "seconds", ...}`` to
    ``out_file`` (atomic).

    Test metrics are computed after training for the epochs a selection rule picks (the same numbers
    ``train.test_every_epoch`` gives at those epochs, at a fraction of its cost): the weights of every epoch are
    kept in memory, the trainer's own end-of-run test pass is skipped."""
    import torch

    import vad.training
    from vad.config import TrainConfig
    from vad.prepare import prepare_data
    from vad.scoring import frame_level_metrics, score_test

    states: dict[int, dict[str, Any]] = {}
    models: list[torch.nn.Module] = []
    real_build, real_save = vad.training.build_model, vad.training.save_checkpoint

    def build_model(*args: Any, **kwargs: Any) -> torch.nn.Module:
        models.append(real_build(*args, **kwargs))
        return models[-1]

    def save_checkpoint(path: Any, payload: dict[str, Any]) -> Any:
        if Path(path).name == "last.pt":
            states[int(payload["epoch"])] = {k: v.detach().clone() for k, v in payload["model"].items()}
        return real_save(path, payload)

    vad.training.build_model, vad.training.save_checkpoint = build_model, save_checkpoint
    vad.training.evaluate_selected = lambda *args, **kwargs: {}  # the test set is scored below, at the picked epochs
    config = TrainConfig.from_yaml(config_path, overrides)
    prepared = prepare_data(config)
    started, cpu = time.perf_counter(), time.process_time()
    out_dir = Path(out_file).with_suffix("")
    result = vad.training.train(config, report=lambda metrics, out: None, out_dir=str(out_dir), prepared=prepared)
    train_seconds, train_cpu = time.perf_counter() - started, time.process_time() - cpu
    history = [{key: float(e[key]) for key in KEPT if key in e} for e in result.epochs]
    test: dict[int, dict[str, float]] = {}
    model = models[-1]
    for epoch in sorted({e for e in picked_epochs(history).values() if e is not None}):
        model.load_state_dict(states[epoch])
        metrics = frame_level_metrics(score_test(model, prepared, device=torch.device("cpu")), prepared,
                                      config.train.threshold)
        test[epoch] = {"test_auc": float(metrics["auc"]), "test_ap": float(metrics["ap"])}
    record = {"overrides": overrides, "status": result.status, "seconds": train_seconds, "cpu_seconds": train_cpu,
              "history": history, "test": test}
    from vad.atomic import atomic_write_json

    atomic_write_json(out_file, record)
    import shutil

    shutil.rmtree(out_dir, ignore_errors=True)
    return record


def run_grid(grid_dir: Path, config: Path, epochs: int, seeds: tuple[int, ...], workers: int,
             grid: dict[str, list[Any]] = GRID) -> None:
    """Train every (point, seed) not yet in ``grid_dir`` (resumable), seed by seed, ``workers`` at a time."""
    from vad.config import TrainConfig
    from vad.prepare import prepare_data

    grid_dir.mkdir(parents=True, exist_ok=True)
    common = base_overrides(str(config), epochs)
    prepare_data(TrainConfig.from_yaml(config, common))
    (grid_dir / "grid.json").write_text(json.dumps({"config": str(config), "epochs": epochs, "grid": grid,
                                                    "seeds": list(seeds),
                                                    "settings": SETTINGS}, indent=1))
    jobs = []
    for seed in seeds:
        for point in grid_points(grid):
            out = grid_dir / f"{point_key(point)}__seed{seed}.json"
            if not out.is_file():
                jobs.append((point, seed, out))
    print(f"{len(jobs)} runs to train", flush=True)
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        futures = [(pool.submit(train_point, str(config), {**common, **point, "train.seed": seed}, str(out)), out)
                   for point, seed, out in jobs]
        for future, out in futures:
            record = future.result()
            print(f"{out.name}: {record['status']} {len(record['history'])} epochs, {record['seconds']:.0f} s "
                  f"({record['cpu_seconds']:.0f} s CPU)", flush=True)


# ------------------------------------------------------------------------------------------------ recorded grid
def load_grid(grid_dir: Path) -> dict[str, Any]:
    """The recorded grid: ``{"grid", "epochs", "seeds", "runs": {(point_key, seed): record}}`` (only finished runs)."""
    meta = json.loads((grid_dir / "grid.json").read_text())
    runs = {}
    for point in grid_points(meta["grid"]):
        for seed in meta["seeds"]:
            path = grid_dir / f"{point_key(point)}__seed{seed}.json"
            if path.is_file():
                record = json.loads(path.read_text())
                record["test"] = {int(e): v for e, v in record["test"].items()}
                runs[(point_key(point), seed)] = record
    return {**meta, "runs": runs}


def selected_values(history: list[dict[str, float]], rule: str, metric: str = "val_ref_loss") -> list[float]:
    """The ranked value a trial reports after each epoch: the rule's value at the checkpoint selected so far (the
    engine's ``selected_value``, exactly what a sweep ranks on and what its scheduler compares)."""
    from vad.selection import Selector

    name, _, option = rule.partition(":")
    options = {} if not option else ({"window": int(option)} if name == "moving_average" else {"alpha": float(option)})
    selector = Selector(metric, None, 0.0, name, **options)
    values = []
    for epoch, entry in enumerate(history, start=1):
        selector.update(epoch, {metric: entry[metric]})
        values.append(selector.selected_value)
    return values


def test_at_pick(record: dict[str, Any], rule: str, key: str = "test_auc") -> float:
    """``key`` (test AUC/AP) at the epoch ``rule`` selects in this run (nan when nothing is selected)."""
    epoch = picked_epochs(record["history"]).get(rule)
    return float("nan") if epoch is None else record["test"][epoch][key]


# ------------------------------------------------------------------------------------------------ the replay
class ReplayTrial:
    """The few attributes of a Tune ``Trial`` the schedulers read (status, id, last result)."""

    def __init__(self, trial_id: str, config: dict[str, Any], point: str) -> None:
        from ray.tune.experiment import Trial

        self.trial_id, self.config, self.point = trial_id, config, point
        self.status, self.epoch, self.clock, self.last_result = Trial.PENDING, 0, 0.0, {}
        self.is_saving = False

    def __repr__(self) -> str:
        return f"ReplayTrial({self.trial_id})"


class ReplayController:
    """The part of Tune's ``TuneController`` the schedulers call, over replayed trials (``stop_trial`` as Tune does
    it: a paused or pending trial is removed from the scheduler and told to the searcher without a result)."""

    def __init__(self, searcher: Any) -> None:
        self.trials: list[ReplayTrial] = []
        self.searcher = searcher
        self.scheduler: Any = None

    def get_live_trials(self) -> list[ReplayTrial]:
        return [t for t in self.trials if t.status not in ("TERMINATED", "ERROR")]

    def get_trials(self) -> list[ReplayTrial]:
        return list(self.trials)

    def stop_trial(self, trial: ReplayTrial) -> None:
        if trial.status in ("TERMINATED", "ERROR"):
            return
        if trial.status in ("PENDING", "PAUSED"):
            self.scheduler.on_trial_remove(self, trial)
            self.searcher.on_trial_complete(trial.trial_id)
        else:
            self.scheduler.on_trial_complete(self, trial, trial.last_result)
            self.searcher.on_trial_complete(trial.trial_id, result=trial.last_result)
        trial.status = "TERMINATED"


def make_space(grid: dict[str, list[Any]], config: Path, sampler: str, trials: int, epochs: int, seed: int,
               work: Path) -> Any:
    """The sweep's own :class:`search.sweep.space.SearchSpace` over the grid's values (``choice``, or ``grid`` leaves
    for the grid sampler), loaded from a space file as ``search.run`` would."""
    import yaml

    from search.sweep.space import load_space

    leaf = "grid" if sampler == "grid" else "choice"
    text = {"base": str(config), "search": {"sampler": sampler, "num_samples": trials, "epochs": epochs,
                                             "metric": "val_ref_loss", "seed": seed},
            "scheduler": {"name": "fifo"}, "params": {key: {leaf: values} for key, values in grid.items()}}
    path = work / f"space-{sampler}-{seed}.yaml"
    path.write_text(yaml.safe_dump(text, sort_keys=False))
    return load_space(path)


def make_scheduler(kind: str, settings: dict[str, Any], max_t: int, work: Path, objective: str) -> Any:
    """A real Ray Tune scheduler (the sweep's own :class:`search.sweep.scheduler.PersistentASHA` for ``asha``)."""
    from ray.tune.schedulers import AsyncHyperBandScheduler, FIFOScheduler, HyperBandScheduler, MedianStoppingRule

    from search.sweep.scheduler import PersistentASHA

    if kind == "fifo":
        return FIFOScheduler()
    if kind == "asha":
        (work / "asha.json").unlink(missing_ok=True)
        return PersistentASHA(work / "asha.json", metric=objective, mode="min", max_t=max_t,
                              grace_period=settings["grace_period"], reduction_factor=settings["reduction_factor"])
    if kind == "async_hyperband":
        return AsyncHyperBandScheduler(time_attr="epoch", metric=objective, mode="min", max_t=max_t,
                                       grace_period=settings["grace_period"],
                                       reduction_factor=settings["reduction_factor"],
                                       brackets=settings["brackets"], stop_last_trials=False)
    if kind == "hyperband":
        return HyperBandScheduler(time_attr="epoch", metric=objective, mode="min", max_t=max_t,
                                  reduction_factor=settings["reduction_factor"])
    if kind == "median":
        return MedianStoppingRule(time_attr="epoch", metric=objective, mode="min",
                                  grace_period=settings["grace_period"],
                                  min_samples_required=settings["min_samples"])
    raise ValueError(f"unknown scheduler kind {kind!r}")


def replay(strategy: dict[str, Any], seed: int, recorded: dict[str, Any], config: Path, work: Path,
           concurrency: int = 2) -> dict[str, Any]:
    """One search replayed on the recorded curves of grid seed :data:`SEARCH_SEED`: the sweep's searcher
    proposes, the Tune scheduler continues, pauses or stops, ``concurrency`` trials run at once (each epoch
    takes the recorded CPU time of that point's epoch), and a trial reports its recorded per-epoch
    ``best_val_ref_loss`` (= ``selected_value`` under the strategy's rule). Returns the epochs run per trial, the
    found point (best ranked value over all trials, as the sweep names it) and the time spent."""
    import numpy as np
    from ray.tune.schedulers import TrialScheduler

    from search.sweep.searcher import make_searcher
    from search.sweep.trainable import objective_key

    epochs = recorded["epochs"]
    objective = objective_key("val_ref_loss")
    space = make_space(recorded["grid"], config, strategy["sampler"], strategy["trials"], epochs, seed, work)
    searcher = make_searcher(space, objective)
    np.random.seed(seed)  # ASHA's bracket draw
    scheduler = make_scheduler(strategy["scheduler"], strategy.get("settings", {}), epochs, work, objective)
    controller = ReplayController(searcher)
    controller.scheduler = scheduler
    curves: dict[str, list[float]] = {}
    created, exhausted = 0, False

    def curve(point: str) -> list[float]:
        if point not in curves:
            curves[point] = selected_values(recorded["runs"][(point, SEARCH_SEED)]["history"], strategy["rule"])
        return curves[point]

    def cost(point: str) -> float:
        record = recorded["runs"][(point, SEARCH_SEED)]
        return record["cpu_seconds"] / max(1, len(record["history"]))

    now = 0.0
    while True:
        running = [t for t in controller.trials if t.status == "RUNNING"]
        if len(running) < concurrency:
            choice = scheduler.choose_trial_to_run(controller)
            if choice is not None:
                choice.status, choice.clock = "RUNNING", now
                continue
            # paused trials (synchronous Hyperband, waiting for their bracket to fill) leave their slot to a new
            # trial; with Tune's ConcurrencyLimiter counting them the sweep would stall
            live = [t for t in controller.trials if t.status in ("RUNNING", "PENDING")]
            if not exhausted and created < strategy["trials"] and len(live) < concurrency:
                trial_id = f"t{created:03d}"
                suggestion = searcher.suggest(trial_id)
                if not isinstance(suggestion, dict):
                    exhausted = True
                    continue
                point = point_key(space.decode(suggestion))
                trial = ReplayTrial(trial_id, suggestion, point)
                controller.trials.append(trial)
                scheduler.on_trial_add(controller, trial)
                created += 1
                continue
        if not running:
            if any(t.status in ("PAUSED", "PENDING") for t in controller.trials):
                for trial in [t for t in controller.trials if t.status in ("PAUSED", "PENDING")]:
                    controller.stop_trial(trial)  # nothing left to run them (a synchronous bracket left unfilled)
            break
        trial = min(running, key=lambda t: (t.clock + cost(t.point), t.trial_id))
        now = trial.clock = trial.clock + cost(trial.point)
        trial.epoch += 1
        result = {"epoch": trial.epoch, "training_iteration": trial.epoch, "time_total_s": trial.clock,
                  objective: curve(trial.point)[trial.epoch - 1]}
        trial.last_result = result
        searcher.on_trial_result(trial.trial_id, result)
        action = scheduler.on_trial_result(controller, trial, result)
        if trial.status != "RUNNING":
            continue  # stopped by the scheduler through the controller already
        if trial.epoch >= epochs or action == TrialScheduler.STOP:
            controller.stop_trial(trial)
        elif action == TrialScheduler.PAUSE:
            trial.status = "PAUSED"
    ran = {t.trial_id: {"point": t.point, "epochs": t.epoch, "value": t.last_result.get(objective, float("inf"))}
           for t in controller.trials if t.epoch > 0}
    found = min(ran.values(), key=lambda r: r["value"])["point"]
    return {"trials": ran, "found": found, "epochs": sum(r["epochs"] for r in ran.values()),
            "cpu_seconds": sum(r["epochs"] * cost(r["point"]) for r in ran.values()), "points": len(set(
                r["point"] for r in ran.values()))}


# ------------------------------------------------------------------------------------------------ strategies
STRATEGIES: tuple[dict[str, Any], ...] = (
    {"name": "grid + FIFO (the study)", "sampler": "grid", "scheduler": "fifo", "rule": "min"},
    {"name": "random + ASHA", "sampler": "random", "scheduler": "asha",
     "settings": {"grace_period": 1, "reduction_factor": 3}, "rule": "min"},
    {"name": "TPE + ASHA", "sampler": "tpe", "scheduler": "asha",
     "settings": {"grace_period": 1, "reduction_factor": 2}, "rule": "min"},
    {"name": "TPE + ASHA", "sampler": "tpe", "scheduler": "asha",
     "settings": {"grace_period": 1, "reduction_factor": 3}, "rule": "min"},
    {"name": "TPE + ASHA", "sampler": "tpe", "scheduler": "asha",
     "settings": {"grace_period": 2, "reduction_factor": 3}, "rule": "min"},
    {"name": "TPE + ASHA", "sampler": "tpe", "scheduler": "asha",
     "settings": {"grace_period": 1, "reduction_factor": 3}, "rule": "moving_average:3"},
    {"name": "TPE + ASHA", "sampler": "tpe", "scheduler": "asha",
     "settings": {"grace_period": 1, "reduction_factor": 3}, "rule": "ema:0.5"},
    {"name": "TPE + ASHA (12 trials)", "sampler": "tpe", "scheduler": "asha", "trials": 12,
     "settings": {"grace_period": 1, "reduction_factor": 3}, "rule": "min"},
    {"name": "TPE + ASHA (8 trials)", "sampler": "tpe", "scheduler": "asha", "trials": 8,
     "settings": {"grace_period": 1, "reduction_factor": 3}, "rule": "min"},
    {"name": "random + ASHA (12 trials)", "sampler": "random", "scheduler": "asha", "trials": 12,
     "settings": {"grace_period": 1, "reduction_factor": 3}, "rule": "min"},
    {"name": "TPE + async Hyperband", "sampler": "tpe", "scheduler": "async_hyperband",
     "settings": {"grace_period": 1, "reduction_factor": 3, "brackets": 3}, "rule": "min"},
    {"name": "TPE + Hyperband (synchronous)", "sampler": "tpe", "scheduler": "hyperband",
     "settings": {"reduction_factor": 3}, "rule": "min"},
    {"name": "TPE + median stopping", "sampler": "tpe", "scheduler": "median",
     "settings": {"grace_period": 2, "min_samples": 3}, "rule": "min"},
    {"name": "TPE + median stopping", "sampler": "tpe", "scheduler": "median",
     "settings": {"grace_period": 4, "min_samples": 3}, "rule": "min"},
)
QUICK_STRATEGIES = tuple(STRATEGIES[i] for i in (0, 3, 10, 12))
NOT_REPLAYED = {
    "PBT / PB2": "they copy a better trial's weights into a worse one and train on with new values: the curve "
                 "after such an exploit was never recorded (the grid trains each point from scratch), so it cannot "
                 "be replayed; PB2 also needs GPy.",
    "BOHB": "TuneBOHB needs hpbandster 0.7.4 (a source-only package from 2019, with Pyro4, serpent and netifaces, "
            "a C extension) and ConfigSpace; not added to the toolkit's dependencies for one benchmark row.",
}


NOTES = (
    "Synchronous Hyperband (`HyperBandScheduler`) at two trials at once: its first bracket (3 trials at the full "
    "budget) never fills, because a finished trial leaves the bracket before the next one joins it, so every trial "
    "joins that bracket and runs the full budget (FIFO). Tune's ConcurrencyLimiter (the sweep's `max_concurrent`) "
    "leads to the same; it needs many trials pending at once.",
    "Optuna's TPE samples its first 10 trials at random (`n_startup_trials=10`, seeded like `RandomSampler`), so "
    "TPE with 8 or 12 trials is (almost) random search: those rows coincide.",
)


def strategy_label(strategy: dict[str, Any]) -> str:
    """The strategy's name with its settings."""
    settings = strategy.get("settings", {})
    short = {"grace_period": "grace", "reduction_factor": "rf", "brackets": "brackets", "min_samples": "min samples"}
    parts = [f"{short[k]} {v:g}" for k, v in settings.items()]
    if strategy["rule"] != "min":
        parts.append(strategy["rule"])
    return strategy["name"] + (f" ({', '.join(parts)})" if parts else "")


# ------------------------------------------------------------------------------------------------ the analysis
def t_interval(values: list[float], level: float = 0.95) -> tuple[float, float, float]:
    """Mean and its ``level`` t-interval (``(mean, mean, mean)`` for one value)."""
    import math
    import statistics

    from scipy.stats import t as student

    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, mean, mean
    half = student.ppf(0.5 + level / 2, len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))
    return mean, mean - half, mean + half


def true_quality(recorded: dict[str, Any], rule: str, seeds: list[int], key: str = "test_auc") -> dict[str, float]:
    """Per point: the mean over ``seeds`` of ``key`` at the checkpoint ``rule`` selects on ``val_ref_loss``."""
    import statistics

    out = {}
    for point in grid_points(recorded["grid"]):
        name = point_key(point)
        values = [test_at_pick(recorded["runs"][(name, s)], rule, key) for s in seeds]
        out[name] = statistics.fmean(values)
    return out


def default_rule() -> str:
    """The trainer's default selection rule (``vad.config.TrainSection``), as a :data:`RULES` label."""
    from vad.config import TrainSection

    section = TrainSection()
    if section.selection_rule == "moving_average":
        return f"moving_average:{section.selection_window:g}"
    if section.selection_rule == "ema":
        return f"ema:{section.selection_ema:g}"
    return "min"


def analyse(recorded: dict[str, Any], replays: dict[int, list[dict[str, Any]]], target_share: float = 0.25,
            default: str = "min") -> dict[str, Any]:
    """Regret of every strategy's found point against the grid's best, with intervals over search seeds."""
    confirm = [s for s in recorded["seeds"] if s != SEARCH_SEED]
    rules = sorted({default, *(s["rule"] for s in STRATEGIES)})
    quality = {key: {rule: true_quality(recorded, rule, confirm, key) for rule in rules}
               for key in ("test_auc", "test_ap")}
    best_point = max(quality["test_auc"][default], key=quality["test_auc"][default].get)
    best = {key: quality[key][default][best_point] for key in quality}
    noise_values = [test_at_pick(recorded["runs"][(best_point, s)], default) for s in recorded["seeds"]]
    noise = t_interval(noise_values)
    noise_half = (noise[2] - noise[1]) / 2
    grid_epochs = sum(len(recorded["runs"][(point_key(p), SEARCH_SEED)]["history"])
                      for p in grid_points(recorded["grid"]))
    grid_cpu = sum(recorded["runs"][(point_key(p), SEARCH_SEED)]["cpu_seconds"]
                   for p in grid_points(recorded["grid"]))
    grid_wall = sum(recorded["runs"][(point_key(p), SEARCH_SEED)]["seconds"] for p in grid_points(recorded["grid"]))
    rows = []
    for index, (label, per_seed) in enumerate(replays.items()):
        strategy = per_seed[0]["strategy"]
        regrets = [best["test_auc"] - quality["test_auc"][strategy["rule"]][r["found"]] for r in per_seed]
        regrets_ap = [best["test_ap"] - quality["test_ap"][strategy["rule"]][r["found"]] for r in per_seed]
        shares = [r["epochs"] / grid_epochs for r in per_seed]
        time_shares = [r["cpu_seconds"] / grid_cpu for r in per_seed]
        met = [g <= noise_half and s <= target_share for g, s in zip(regrets, shares)]
        rows.append({"strategy": label, "index": index, "regret_auc": t_interval(regrets),
                     "regret_ap": t_interval(regrets_ap), "worst_regret_auc": max(regrets),
                     "share": t_interval(shares), "worst_share": max(shares), "time_share": t_interval(time_shares),
                     "wall_seconds": statistics_mean(time_shares) * grid_wall, "points": statistics_mean(
                         [r["points"] for r in per_seed]), "found": [r["found"] for r in per_seed],
                     "met_all_seeds": all(met), "seeds_met": sum(met), "seeds": len(per_seed)})
    ranked = sorted(rows, key=lambda r: (not r["met_all_seeds"], r["regret_auc"][0] + (
        0 if r["worst_share"] <= target_share else 1), r["share"][0]))
    return {"best_point": best_point, "best_auc": best["test_auc"], "best_ap": best["test_ap"],
            "noise_interval": noise, "noise_half_width": noise_half, "noise_values": noise_values,
            "grid_epochs": grid_epochs, "grid_cpu_seconds": grid_cpu, "grid_wall_seconds": grid_wall,
            "default_rule": default, "confirm_seeds": confirm, "target_share": target_share, "rows": rows,
            "winner": ranked[0]["strategy"], "winner_met": ranked[0]["met_all_seeds"],
            "quality": {p: quality["test_auc"][default][p] for p in quality["test_auc"][default]}}


def statistics_mean(values: list[float]) -> float:
    import statistics

    return statistics.fmean(values)


# ------------------------------------------------------------------------------------------------ output
def render(report: dict[str, Any], markdown: bool = False) -> str:
    from benchmarks.tables import format_table, markdown_table

    table = markdown_table if markdown else format_table
    a = report["analysis"]

    def interval(v: list[float], scale: float = 100.0, digits: int = 1) -> str:
        return f"{v[0] * scale:.{digits}f} [{v[1] * scale:.{digits}f}, {v[2] * scale:.{digits}f}]"

    rows = [[r["strategy"], interval(r["regret_auc"]), f"{r['worst_regret_auc'] * 100:.1f}",
             interval(r["regret_ap"]), interval(r["share"], digits=0), f"{r['worst_share'] * 100:.0f}",
             interval(r["time_share"], digits=0), f"{r['wall_seconds'] / 60:.1f}", f"{r['points']:.1f}",
             f"{'yes' if r['met_all_seeds'] else 'no'} ({r['seeds_met']}/{r['seeds']})"] for r in a["rows"]]
    headers = ["strategy", "regret AUC pts [95% CI]", "worst seed", "regret AP pts [95% CI]",
               "% grid epochs [95% CI]", "worst %", "% grid CPU time [95% CI]", "~ wall min", "points tried",
               "target met (seeds)"]
    noise = a["noise_interval"]
    text = [
        f"Grid: {len(report['points'])} points x {report['epochs']} epochs x seeds {report['grid_seeds']} on "
        f"{report['config']} with {report['settings']}; {a['grid_epochs']} epochs per grid seed "
        f"({a['grid_cpu_seconds'] / 60:.1f} CPU-min, {a['grid_wall_seconds'] / 60:.1f} min wall on this shared "
        f"machine). True quality of a point = mean test AUC over seeds {a['confirm_seeds']} at the checkpoint "
        f"rule `{a['default_rule']}` picks on val_ref_loss. Best point: {a['best_point']}: AUC "
        f"{a['best_auc'] * 100:.1f}, AP {a['best_ap'] * 100:.1f}; its seed noise (95% t-interval of its test AUC "
        f"over seeds {report['grid_seeds']}): {noise[0] * 100:.1f} [{noise[1] * 100:.1f}, {noise[2] * 100:.1f}], "
        f"half-width {a['noise_half_width'] * 100:.1f} points.",
        f"Each strategy: {len(report['search_seeds'])} search seeds, replayed on grid seed {SEARCH_SEED}'s curves "
        f"through the real searcher and Tune scheduler (2 trials at once); regret = best point's true quality - "
        f"the found point's (points of AUC/AP x 100; interval: 95% t over search seeds). Target: regret <= "
        f"{a['noise_half_width'] * 100:.1f} at <= {a['target_share']:.0%} of the grid's epochs on every search seed.",
        table(headers, rows),
        f"Best strategy: {a['winner']} (target {'met' if a['winner_met'] else 'NOT met'}; ranked by: target met on "
        "every seed, then mean regret, then share of epochs).",
        *reading(a),
        *NOTES,
        "Not replayed: " + "; ".join(f"{k}: {v}" for k, v in NOT_REPLAYED.items()),
    ]
    return ("\n\n" if markdown else "\n").join(text)


def reading(a: dict[str, Any]) -> list[str]:
    """What the numbers say about the target itself (how wide the noise band is) and, when no strategy met it,
    which came closest and by how much."""
    import statistics

    values = [v * 100 for v in a["noise_values"]]
    grid = [r["regret_auc"][0] * 100 for r in a["rows"] if r["strategy"].startswith("grid")]
    lines = [f"The best point's test AUC on seeds {', '.join(map(str, range(len(values))))}: "
             f"{', '.join(f'{v:.1f}' for v in values)} (sd {statistics.stdev(values):.1f} points): with "
             f"{len(values)} seeds the 95% half-width ({a['noise_half_width'] * 100:.1f}) is wide, so the target is a "
             "loose one" + (f"; the grid itself (ranked on seed 0) lands {grid[0]:.1f} points below the best point."
                            if grid else ".")]
    if not a["winner_met"]:
        best = next(r for r in a["rows"] if r["strategy"] == a["winner"])
        lines.append(f"No strategy met the target; closest: {best['strategy']}, worst-seed regret "
                     f"{best['worst_regret_auc'] * 100:.1f} (noise {a['noise_half_width'] * 100:.1f}) at "
                     f"{best['worst_share']:.0%} of the grid's epochs (target {a['target_share']:.0%}).")
    return lines


def plot(report: dict[str, Any], path: Path) -> Path:
    """Regret (mean, 95% CI over search seeds) against the share of the grid's epochs, one marker per strategy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    a = report["analysis"]
    fig, ax = plt.subplots(figsize=(11, 5))
    ax.axhspan(-a["noise_half_width"] * 100, a["noise_half_width"] * 100, color="0.9",
               label="best point's seed noise (95% half-width)")
    ax.axvline(a["target_share"] * 100, color="0.5", linestyle="--", label="25% of the grid's epochs")
    for r, marker in zip(a["rows"], itertools.cycle("osD^vP*Xph<>")):
        m, lo, hi = (v * 100 for v in r["regret_auc"])
        s, slo, shi = (v * 100 for v in r["share"])
        ax.errorbar([s], [m], yerr=[[m - lo], [hi - m]], xerr=[[s - slo], [shi - s]], fmt=marker, capsize=3,
                    label=f"{r['index']}: {r['strategy']}")
        ax.annotate(str(r["index"]), (s, m), textcoords="offset points", xytext=(4, 4), fontsize=7)
    low = min(r["regret_auc"][1] for r in a["rows"]) * 100
    ax.set_ylim(min(-1.0, low - 1.0), max(a["noise_half_width"] * 100, *(r["regret_auc"][2] * 100
                                                                           for r in a["rows"])) + 1.0)
    ax.set_xlabel("% of the grid's epochs spent")
    ax.set_ylabel("regret, test AUC points (best grid point - found)")
    ax.set_title("search_quality: regret vs budget (mean, 95% CI over search seeds)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def results_section(report: dict[str, Any]) -> str:
    from benchmarks.results_file import run_line

    return (run_line("python benchmarks/search_quality.py --grid-dir DIR --results", report["seconds"],
                     " of replays") + "\n\n" + render(report, markdown=True)
            + f"\n\n![regret vs budget]({report['figure_ref']})")


# ------------------------------------------------------------------------------------------------ CLI
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    from benchmarks.results_file import add_output_arguments

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--grid-dir", type=Path, required=True, help="the recorded grid (written by --train)")
    parser.add_argument("--train", action="store_true", help="train the grid's missing runs first (resumable)")
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="the base config")
    parser.add_argument("--epochs", type=int, default=12, help="the full budget of every grid run")
    parser.add_argument("--workers", type=int, default=2, help="grid runs at once, one thread each")
    parser.add_argument("--grid-seeds", default="0,1,2", help="training seeds of the grid (0 is the search's)")
    parser.add_argument("--search-seeds", default=None, help="search seeds (default 0,1,2,3,4; quick 0,1)")
    parser.add_argument("--quick", action="store_true", help="a few strategies and two search seeds (tests)")
    parser.add_argument("--figure", type=Path, default=REPO_ROOT / "docs" / "figures" / "search_quality.png")
    add_output_arguments(parser, "search_quality")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    import logging
    import tempfile

    args = parse_args(argv)
    grid_seeds = tuple(int(s) for s in args.grid_seeds.split(","))
    if args.train:
        run_grid(args.grid_dir, args.config, args.epochs, grid_seeds, args.workers)
    recorded = load_grid(args.grid_dir)
    missing = [f"{point_key(p)} seed {s}" for p in grid_points(recorded["grid"]) for s in recorded["seeds"]
               if (point_key(p), s) not in recorded["runs"]]
    if missing:
        print(f"error: {args.grid_dir}: {len(missing)} grid runs not recorded yet (e.g. {missing[0]}); run with "
              "--train", file=sys.stderr)
        return None
    logging.getLogger("ray").setLevel(logging.ERROR)
    logging.getLogger("search").setLevel(logging.WARNING)
    logging.getLogger("ray.tune.search.optuna.optuna_search").setLevel(logging.ERROR)  # "Study.stop" at the end
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    search_seeds = [int(s) for s in (args.search_seeds or ("0,1" if args.quick else "0,1,2,3,4")).split(",")]
    strategies = QUICK_STRATEGIES if args.quick else STRATEGIES
    started = time.perf_counter()
    replays: dict[str, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="wsvad-search-quality-") as tmp:
        for strategy in strategies:
            strategy = {**strategy, "trials": strategy.get("trials") or len(grid_points(recorded["grid"]))}
            label = strategy_label(strategy)
            for seed in search_seeds:
                work = Path(tmp) / f"{len(replays)}-{seed}"
                work.mkdir()
                out = replay(strategy, seed, recorded, Path(recorded["config"]), work)
                replays.setdefault(label, []).append({**out, "seed": seed, "strategy": strategy})
            print(f"{label}: {statistics_mean([r['epochs'] for r in replays[label]]):.0f} epochs", flush=True)
    report = {"quick": args.quick, "config": str(Path(recorded["config"]).relative_to(REPO_ROOT))
              if Path(recorded["config"]).is_relative_to(REPO_ROOT) else recorded["config"],
              "settings": recorded.get("settings", {}), "epochs": recorded["epochs"], "grid": recorded["grid"],
              "points": [point_key(p) for p in grid_points(recorded["grid"])], "grid_seeds": recorded["seeds"],
              "search_seeds": search_seeds, "seconds": time.perf_counter() - started,
              "analysis": analyse(recorded, replays, default=default_rule()),
              "replays": {k: [{key: r[key] for key in ("seed", "found", "epochs", "cpu_seconds", "trials")}
                              for r in v] for k, v in replays.items()}}
    figure = plot(report, args.figure)
    report["figure_ref"] = os.path.relpath(figure, REPO_ROOT / "benchmarks") if figure.is_relative_to(
        REPO_ROOT) else str(figure)
    from benchmarks.results_file import publish

    publish(report, render(report), section="search_quality", results_section=results_section,
            json_path=args.json, results_path=args.results)
    return report


if __name__ == "__main__":
    main()
