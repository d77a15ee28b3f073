"""Benchmark 3 of issue #6, ``sweep_overhead``: what Ray Tune, Optuna and MLflow add to the trials' own time.

    python benchmarks/sweep_overhead.py [--quick] [--trials 4] [--trial-seconds 30] [--epochs 10]
        [--concurrency 2] [--no-concurrent-baseline] [--compare] [--json PATH] [--results [PATH]]

A sweep of ``--trials`` trials (``search.run`` in a fresh process, as a user runs it, on a demo-like space: TPE, a
fixed number of epochs, no early stopping, ``--concurrency`` trials of one CPU at a time) is timed from just before
that process starts to its exit (the interpreter's start, every import and its end included); then the same trials
(the configs the sweep ran, read from its results) run with ``vad.train.train`` alone:

- back to back in one process, their total divided by the concurrency: the issue's yardstick;
- in ``--concurrency`` plain processes at once, each running its share back to back: the same work with the
  same CPU contention, without Ray, Optuna or MLflow.

overhead = (sweep wall - baseline) / sweep wall. The trials' length is calibrated first (``--trial-seconds``).
Where the overhead goes is measured in the sweep's own run: when the driver is ready (imports, space, MLflow checks,
data, Ray), Ray's start (in the background) and how long the driver waited for it, the CPU seconds all its processes
used before the first trial started, MLflow calls made by the driver, each trial's launch (from Tune starting it to
its trainable running) and its time beyond the same training alone, and the sweep's end (results, summary, MLflow
parent run). ``--compare`` runs four sweeps, previous/after/after/previous (:func:`previous_start`). ``--quick`` is
a short smoke run (CI): its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # run as a script: make `vad`, `search` and `benchmarks` importable
    sys.path.insert(0, str(REPO_ROOT))

from benchmarks.proc import TreeCpu  # noqa: E402
from benchmarks.tables import format_table, markdown_table  # noqa: E402

DEMO_CONFIG = REPO_ROOT / "configs" / "demo.yaml"
RESULT_PREFIX = "RESULT "
TARGET_FRACTION = 0.10
END_PHASE = "end of sweep (results, summary, mlflow)"


# ============================================================================================ the trials

def base_config(steps: int, epochs: int) -> dict[str, Any]:
    """The demo config with ``steps`` steps per epoch and ``epochs`` epochs, one torch thread (one CPU a trial)."""
    config = yaml.safe_load(DEMO_CONFIG.read_text())
    config["train"].update(epochs=epochs, steps_per_epoch=steps, num_threads=1, device="cpu",
                           evaluate_selected="on_improvement")
    return config


def time_training(config: dict[str, Any], out: Path) -> float:
    """Wall seconds of ``vad.train.train`` on ``config`` (data prepared beforehand: the sweep prepares once too)."""
    from vad.config import TrainConfig
    from vad.prepare import open_prepared
    from vad.training import train

    train_config = TrainConfig.from_dict(config)
    started = time.perf_counter()
    result = train(train_config, lambda metrics, folder: None, out_dir=out, prepared=open_prepared(train_config))
    if result.status == "diverged":
        raise RuntimeError(f"baseline training diverged: {result.message}")
    return time.perf_counter() - started


def calibrate(trial_seconds: float, epochs: int, work: Path) -> dict[str, Any]:
    """Steps per epoch giving trials of about ``trial_seconds``: two short runs give the time of a step and of
    the per-epoch rest (validation, test of an improved checkpoint, checkpoints)."""
    import torch

    from vad.config import TrainConfig
    from vad.prepare import prepare_data

    torch.set_num_threads(1)
    prepare_data(TrainConfig.from_dict(base_config(1, 1)))
    time_training(base_config(2, 1), work / "calibrate-warmup")
    probes = (4, 24)
    seconds = [min(time_training(base_config(steps, 2), work / f"calibrate-{steps}-{i}") for i in range(2)) / 2
               for steps in probes]
    per_step = max((seconds[1] - seconds[0]) / (probes[1] - probes[0]), 1e-4)
    per_epoch_rest = max(seconds[0] - probes[0] * per_step, 0.0)
    steps = max(1, round((trial_seconds / epochs - per_epoch_rest) / per_step))
    return {"per_step_s": per_step, "per_epoch_rest_s": per_epoch_rest, "steps_per_epoch": steps,
            "predicted_trial_s": epochs * (per_epoch_rest + steps * per_step)}


# ============================================================================================ the sweep

class Probe:
    """Wall-clock instrumentation of the sweep driver (this process): seconds per phase and per-trial events."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.trials: dict[str, dict[str, float]] = defaultdict(dict)
        self.moments: dict[str, float] = {}
        """Wall-clock (``time.time``) first start and last end of each wrapped phase."""
        self._undo: list[tuple[Any, str, Any]] = []

    def wrap(self, owner: Any, name: str, key: str) -> None:
        """Time every call of ``owner.name`` under ``key`` (a name the search code no longer has is skipped:
        its phase then reads 0 s)."""
        original = getattr(owner, name, None)
        if original is None:
            return

        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            self.moments.setdefault(f"{key} began", time.time())
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds[key] += time.perf_counter() - started
                self.calls[key] += 1
                self.moments[f"{key} ended"] = time.time()

        self._undo.append((owner, name, original))
        setattr(owner, name, timed)

    def watch_trials(self, logger_class: Any) -> None:
        """Record when Tune starts each trial, receives its results and completes it (the MLflow callback's
        hooks, which the driver calls at those moments)."""
        probe = self
        original_start, original_result = logger_class.on_trial_start, logger_class.on_trial_result
        original_complete = logger_class.on_trial_complete

        def on_trial_start(self: Any, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            probe.trials[trial.trial_id].setdefault("started", time.time())
            original_start(self, iteration, trials, trial, **info)

        def on_trial_result(self: Any, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
            events = probe.trials[trial.trial_id]
            now = time.time()
            if "first_result" not in events:
                events["first_result"] = now
                events["first_iteration_s"] = float(result.get("time_this_iter_s", 0.0))
            events["last_result"] = now
            events["time_total_s"] = float(result.get("time_total_s", 0.0))
            original_result(self, iteration, trials, trial, result, **info)

        def on_trial_complete(self: Any, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            probe.trials[trial.trial_id]["completed"] = time.time()
            original_complete(self, iteration, trials, trial, **info)

        for name, function in (("on_trial_start", on_trial_start), ("on_trial_result", on_trial_result),
                               ("on_trial_complete", on_trial_complete)):
            self._undo.append((logger_class, name, getattr(logger_class, name)))
            setattr(logger_class, name, function)

    def restore(self) -> None:
        for owner, name, original in reversed(self._undo):
            setattr(owner, name, original)
        self._undo.clear()


def write_space(work: Path, config: dict[str, Any], trials: int, epochs: int, concurrency: int) -> Path:
    """A demo-like space: TPE over lr, weight decay and dropout, fixed epochs, no early stopping."""
    (work / "base.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    space = {
        "base": "base.yaml",
        "search": {"sampler": "tpe", "num_samples": trials, "epochs": epochs, "metric": "val_loss", "seed": 0},
        "scheduler": {"name": "fifo"},
        "resources": {"cpus_per_trial": 1, "gpus_per_trial": 0, "max_concurrent": concurrency},
        "params": {"optim.lr": {"loguniform": [1.0e-4, 1.0e-2]},
                   "optim.weight_decay": {"loguniform": [1.0e-5, 1.0e-2]},
                   "model.dropout": {"uniform": [0.3, 0.8]}},
    }
    path = work / "space.yaml"
    path.write_text(yaml.safe_dump(space, sort_keys=False))
    return path


def run_sweep(space: Path, work: Path, variant: str) -> dict[str, Any]:
    """``python -m search.run`` as a user runs it, in a fresh process (:func:`sweep_child`), instrumented; timed
    from just before that process starts (interpreter start and every import included) to its exit. Returns the
    timings and the trials' configs."""
    tracking_uri = f"sqlite:///{work / 'mlruns' / 'mlflow.db'}"
    store_s = create_store(tracking_uri)
    spec = {"space": str(space), "storage": str(work / "ray_results"), "tracking_uri": tracking_uri,
            "variant": variant}
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    with TreeCpu(interval=0.5) as cpu:
        began = time.time()
        proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--sweep-child", json.dumps(spec)],
                              capture_output=True, text=True, env=env)
        ended = time.time()
    line = next((line for line in proc.stdout.splitlines() if line.startswith(RESULT_PREFIX)), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"the sweep ended with status {proc.returncode}:\n{proc.stderr[-4000:]}")
    child = json.loads(line[len(RESULT_PREFIX):])
    moments = {key: value - began for key, value in child["moments"].items()}
    first_start = min((t["started"] for t in child["trials"] if "started" in t), default=None)
    cpu_to_first = None if first_start is None else cpu.seconds_until(first_start)
    return {**child, "wall_s": ended - began, "cpu_s": cpu.seconds, "new_store_s": store_s, "moments": moments,
            "cpu_to_first_trial_s": cpu_to_first,
            "trials": [{**trial, **{k: v - began for k, v in trial.items() if isinstance(v, float) and k in
                                    TRIAL_EVENTS}} for trial in child["trials"]]}


TRIAL_EVENTS = ("started", "first_result", "last_result", "completed")


def sweep_child(spec: dict[str, Any]) -> dict[str, Any]:
    """The sweep of :func:`run_sweep`, in this fresh process: only the light entry modules are imported before it
    starts (the sweep imports the rest itself, as for a user), and the heavy phases are wrapped when ``_run``
    begins, by which time the sweep has imported them."""
    import ray

    import search.run
    import search.sweep.session

    probe = Probe()
    probe.wrap(ray, "init", "ray start")
    probe.wrap(search.sweep.session, "shutdown", "ray shutdown")
    probe.wrap(search.sweep.session.RayStart, "wait", "driver waits for ray")

    def instrument() -> None:
        import ray.tune

        import search.sweep.tracking
        import search.sweep.tuner

        probe.wrap(search.sweep.tracking, "open_sweep", "mlflow (driver)")
        probe.wrap(search.run, "_log_sweep_start", "mlflow (driver)")
        probe.wrap(ray.tune.Tuner, "fit", "tuner.fit")
        probe.wrap(search.run, "_finish", END_PHASE)
        probe.watch_trials(search.sweep.tracking.TrialLogger)
        for hook in ("on_trial_start", "on_trial_result", "on_trial_complete", "on_trial_error"):
            probe.wrap(search.sweep.tracking.TrialLogger, hook, "mlflow (driver)")

    original_run = search.run._run

    def run(*args: Any, **kwargs: Any) -> Any:
        probe.moments["driver ready"] = time.time()  # imports, space, MLflow checks, data: Ray joined too
        instrument()
        return original_run(*args, **kwargs)

    search.run._run = run
    with previous_start(spec["variant"] == "previous"):
        status = search.run.main(["--space", spec["space"], "--name", "overhead", "--storage", spec["storage"],
                                  "--tracking-uri", spec["tracking_uri"], "--confirm-top", "0"])
    if status != 0:
        raise RuntimeError(f"the sweep ended with status {status}")
    experiment = Path(spec["storage"]) / "overhead"
    trials = []
    for folder in sorted(experiment.glob("trial_*")):
        result = json.loads((folder / "run" / "result.json").read_text())
        trial_id = folder.name.removeprefix("trial_")
        trials.append({"trial_id": trial_id, "config": result["config"], "epochs": len(result["epochs"]),
                       "epoch_time_s": sum(e["epoch_time"] for e in result["epochs"]), **probe.trials[trial_id]})
    trials.sort(key=lambda t: t.get("started", 0.0))
    return {"phases": dict(probe.seconds), "moments": probe.moments, "calls": dict(probe.calls), "trials": trials}


def create_store(tracking_uri: str) -> float:
    """Create the MLflow store before the sweep (its schema migrations take seconds, once per store: a user's
    sweeps share ``./mlruns/mlflow.db``); returns the seconds it took."""
    from mlflow import MlflowClient

    from search.sweep.tracking import prepare_store

    started = time.perf_counter()
    prepare_store(tracking_uri)
    MlflowClient(tracking_uri=tracking_uri).search_experiments()
    return time.perf_counter() - started



@contextlib.contextmanager
def previous_start(enabled: bool) -> Iterator[None]:
    """While ``enabled``: a sweep starts Ray as it did before this change (commit 4c86176): only once the driver
    has imported everything, read the space, checked MLflow and prepared the data, and with the dashboard's API
    server; the fast start of issue 14 before it (no autoscaler, prestarted workers that preload) stays. (The
    process then also ends with the interpreter's full teardown: see ``--sweep-child`` in :func:`main`.)"""
    if not enabled:
        yield
        return
    from ray._private import node as node_module

    import search.adapters.tune as adapter
    import search.run

    real_api_server, lean, start = node_module.Node.start_api_server, adapter.lean_local_node, search.run.start_ray

    @contextlib.contextmanager
    def lean_with_api_server(*, log_monitor: bool) -> Iterator[None]:
        with lean(log_monitor=log_monitor):
            node_module.Node.start_api_server = real_api_server
            yield

    adapter.lean_local_node, search.run.start_ray = lean_with_api_server, lambda args: None
    try:
        yield
    finally:
        adapter.lean_local_node, search.run.start_ray = lean, start


# ============================================================================================ the baselines

def child_baseline(spec: dict[str, Any]) -> dict[str, Any]:
    """Run ``spec["configs"]`` back to back (a concurrent-baseline lane); seconds of each."""
    import torch

    torch.set_num_threads(1)
    seconds = [time_training(config, Path(spec["out"]) / f"{i}") for i, config in enumerate(spec["configs"])]
    return {"seconds": seconds}


def concurrent_baseline(configs: list[dict[str, Any]], lanes: int, work: Path) -> dict[str, Any]:
    """``lanes`` processes at once, trial i in lane ``i % lanes`` (the sweep's order); the wall time of the
    work = the longest lane's total (each process's interpreter start and imports left out, as for the sweep's
    trials after their first)."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    procs = []
    for lane in range(lanes):
        spec = {"configs": configs[lane::lanes], "out": str(work / f"lane-{lane}")}
        procs.append(subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env))
    results = []
    for proc in procs:
        out, err = proc.communicate()
        line = next((line for line in out.splitlines() if line.startswith(RESULT_PREFIX)), None)
        if line is None:
            raise RuntimeError(f"baseline lane failed (exit {proc.returncode}):\n{err[-4000:]}")
        results.append(json.loads(line[len(RESULT_PREFIX):])["seconds"])
    return {"lanes": results, "wall_s": max(sum(lane) for lane in results)}


# ============================================================================================ report

def slots(trials: list[dict[str, Any]]) -> list[list[int]]:
    """Trial indices per concurrency slot: a trial takes the slot whose last trial completed last before it
    started (Tune starts the next trial when one completes; with reused actors, on the same worker)."""
    lanes: list[list[int]] = []
    for index in sorted(range(len(trials)), key=lambda i: trials[i]["started"]):
        free = [lane for lane in lanes if trials[lane[-1]]["completed"] <= trials[index]["started"]]
        if free:
            max(free, key=lambda lane: trials[lane[-1]]["completed"]).append(index)
        else:
            lanes.append([index])
    return lanes


def analyse(sweep: dict[str, Any], sequential: list[float], concurrent: dict[str, Any] | None,
            concurrency: int, baseline_cpu_s: float | None) -> dict[str, Any]:
    """Overhead of the whole sweep, and split into what a sweep pays once, once per concurrent slot (the first
    trial on a fresh worker) and per trial in the steady state; projected to longer sweeps."""
    wall = sweep["wall_s"]
    baseline = sum(sequential) / concurrency
    out: dict[str, Any] = {
        "sweep_wall_s": wall, "baseline_sequential_s": sum(sequential), "baseline_s": baseline,
        "overhead_s": wall - baseline, "overhead_fraction": (wall - baseline) / wall,
        "mean_trial_s": sum(sequential) / len(sequential),
        "sweep_cpu_s": sweep["cpu_s"], "baseline_cpu_s": baseline_cpu_s,
        "cpu_overhead_fraction": (None if not sweep["cpu_s"] or baseline_cpu_s is None
                                  else (sweep["cpu_s"] - baseline_cpu_s) / sweep["cpu_s"]),
    }
    if concurrent is not None:
        out["concurrent_baseline_s"] = concurrent["wall_s"]
        out["overhead_vs_concurrent_fraction"] = (wall - concurrent["wall_s"]) / wall
        out["concurrency_cost_fraction"] = (concurrent["wall_s"] - baseline) / baseline
    trials = sweep["trials"]
    if not all({"started", "completed", "first_result"} <= set(t) for t in trials):
        return out
    lanes = slots(trials)
    first, steady, launch, steady_concurrent = [], [], [], []
    for lane in lanes:
        for position, index in enumerate(lane):
            trial, alone = trials[index], sequential[index]
            in_sweep = trial["completed"] - trial["started"]
            launch.append(trial["first_result"] - trial["first_iteration_s"] - trial["started"])
            if position == 0:
                first.append(in_sweep - alone)
            else:
                gap = trial["started"] - trials[lane[position - 1]]["completed"]
                steady.append(in_sweep - alone + gap)
                if concurrent is not None:  # the same trial in a plain process next to another one
                    lane_time = concurrent["lanes"][index % concurrency][index // concurrency]
                    steady_concurrent.append(in_sweep - lane_time + gap)
    span = max(trials[lane[-1]]["completed"] for lane in lanes) - min(trials[lane[0]]["started"] for lane in lanes)
    per_trial = sum(steady) / len(steady) if steady else None
    fixed = wall - span + (sum(first) / len(first))  # outside the trials, plus a fresh worker's warm-up
    moments = sweep["moments"]
    if steady_concurrent:
        out["per_trial_overhead_vs_concurrent_s"] = sum(steady_concurrent) / len(steady_concurrent)
    out.update(slots=len(lanes), first_trial_extra_s=first, steady_trial_extra_s=steady, trial_launch_s=launch,
               per_trial_overhead_s=per_trial, fixed_overhead_s=fixed,
               fit_to_first_trial_s=min(t["started"] for t in trials) - moments.get("tuner.fit began", 0.0),
               last_trial_to_fit_end_s=moments.get("tuner.fit ended", 0.0) - max(t["completed"] for t in trials))
    if per_trial is not None:
        mean = out["mean_trial_s"]
        projected = {}
        for n in (10, 60, 300):
            sweep_wall = fixed + n / concurrency * (mean + per_trial)
            projected[n] = (sweep_wall - n / concurrency * mean) / sweep_wall
        out["projected_fraction"] = projected
        out["steady_fraction"] = per_trial / (mean + per_trial)
    return out


def render(report: dict[str, Any], markdown: bool = False) -> str:
    table = markdown_table if markdown else format_table
    a, sweep = report["analysis"], report["sweep"]
    rows = [["sweep (search.run, imports included)", a["sweep_wall_s"], 1.0, a["sweep_cpu_s"]],
            [f"vad.train back to back / {report['concurrency']}", a["baseline_s"], a["baseline_s"] / a["sweep_wall_s"],
             a["baseline_cpu_s"]]]
    if "concurrent_baseline_s" in a:
        rows.append([f"vad.train in {report['concurrency']} plain processes", a["concurrent_baseline_s"],
                     a["concurrent_baseline_s"] / a["sweep_wall_s"], None])
    walls = table(["run", "wall s", "of the sweep", "CPU s (all processes)"], rows)
    phases = sweep["phases"]
    where = [["process start -> the sweep's driver is ready (imports, space, MLflow checks, data, Ray joined)",
              sweep["moments"].get("driver ready"), "once"],
             ["  of which ray start (ray.init, begun at the command's start, in the background)",
              phases.get("ray start", 0.0), "once"],
             ["  of which the driver waited for ray", phases.get("driver waits for ray", 0.0), "once"],
             ["CPU seconds of all its processes until the first trial started (wall seconds: over the cores)",
              sweep.get("cpu_to_first_trial_s"), "once"],
             [f"mlflow calls by the driver ({sweep['calls'].get('mlflow (driver)', 0)})",
              phases.get("mlflow (driver)", 0.0), "during the sweep"],
             ["tuner.fit", phases.get("tuner.fit", 0.0), "the trials"],
             ["  fit starts -> first trial started (workers start, import)", a.get("fit_to_first_trial_s"), "once"],
             ["  last trial completed -> fit returns", a.get("last_trial_to_fit_end_s"), "once"],
             ["end of sweep (results, summary, mlflow)", phases.get(END_PHASE, 0.0), "once"],
             ["ray shutdown", phases.get("ray shutdown", 0.0), "once"]]
    if a.get("per_trial_overhead_s") is not None or a.get("first_trial_extra_s"):
        first, steady = a["first_trial_extra_s"], a["steady_trial_extra_s"]
        where.append(["first trial on a fresh worker: beyond vad.train alone (mean)", sum(first) / len(first),
                      f"once per slot ({a['slots']})"])
        if steady:
            where.append(["later trials: beyond vad.train alone + gap to start (mean)", sum(steady) / len(steady),
                          "per trial"])
        if a.get("per_trial_overhead_vs_concurrent_s") is not None:
            where.append(["  the same, beyond the trial in a plain concurrent process (mean)",
                          a["per_trial_overhead_vs_concurrent_s"], "per trial"])
        where.append(["trial launch: Tune starts it -> trainable runs (mean)",
                      sum(a["trial_launch_s"]) / len(a["trial_launch_s"]), "per trial"])
    parts = table(["where", "seconds", "paid"], where)
    verdict = "under" if a["overhead_fraction"] < TARGET_FRACTION else "OVER"
    load = report.get("load_average")
    text = [
        f"{report['trials']} trials of {a['mean_trial_s']:.1f} s on average ({report['epochs']} epochs x "
        f"{report['calibration']['steps_per_epoch']} steps of the demo RTFM, one CPU each), {report['concurrency']} "
        f"at a time" + (f"; load average before/after: {load[0]:.2f} / {load[1]:.2f}" if load else "") + ":",
        walls,
        f"Overhead: {a['overhead_s']:.1f} s = {100 * a['overhead_fraction']:.1f}% of the sweep's wall time "
        f"({verdict} the 10% target)"
        + (f"; {100 * a['overhead_vs_concurrent_fraction']:.1f}% against the plain concurrent processes"
           if "overhead_vs_concurrent_fraction" in a else "")
        + (f"; in CPU time (all processes, whatever else the machine runs): {100 * a['cpu_overhead_fraction']:.1f}%"
           if a["cpu_overhead_fraction"] is not None else "") + "."
        + (f" Running {report['concurrency']} trials at once without any of them already costs "
           f"{100 * a['concurrency_cost_fraction']:.1f}% over back to back / {report['concurrency']} (the trials "
           "share the cores' caches and memory bandwidth); the rest is Ray, Tune, Optuna and MLflow."
           if "concurrency_cost_fraction" in a else ""),
        "Where the sweep's time went (driver clock):",
        parts,
    ]
    if "projected_fraction" in a:
        projected = ", ".join(f"{n} trials {100 * f:.1f}%" for n, f in a["projected_fraction"].items())
        text.append(f"Fixed cost {a['fixed_overhead_s']:.1f} s per sweep (incl. a fresh worker's warm-up), "
                    f"{a['per_trial_overhead_s']:.2f} s per trial in the steady state "
                    f"({100 * a['steady_fraction']:.1f}% of a trial): projected overhead for trials of this length: "
                    f"{projected}. A new MLflow store costs {sweep['new_store_s']:.1f} s more, once.")
    return ("\n\n" if markdown else "\n").join(text)


COMPARE_ORDER = ("previous", "after", "after", "previous")
"""``--compare``: the variants in run order (ABBA: a drift of the machine's load or of the driver's warm caches
favours neither)."""
PARTS = (("fixed_s", "fixed cost"), ("cpu_to_first_s", "CPU before the first trial (all processes)"),
         ("ray_start_s", "ray start"), ("fit_to_first_s", "fit -> first trial started"),
         ("first_extra_s", "first trial: beyond vad.train (mean of slots)"), ("shutdown_s", "ray shutdown"),
         ("per_trial_s", "later trials: each beyond vad.train"))


def fixed_parts(sweep: dict[str, Any], analysis: dict[str, Any]) -> dict[str, float | None]:
    """One sweep's fixed cost and the components issue 14 targets (seconds)."""
    first = analysis.get("first_trial_extra_s") or []
    return {"fixed_s": analysis.get("fixed_overhead_s"), "cpu_to_first_s": sweep.get("cpu_to_first_trial_s"),
            "ray_start_s": sweep["phases"].get("ray start", 0.0),
            "fit_to_first_s": analysis.get("fit_to_first_trial_s"),
            "first_extra_s": sum(first) / len(first) if first else None,
            "shutdown_s": sweep["phases"].get("ray shutdown", 0.0), "per_trial_s": analysis.get("per_trial_overhead_s")}


def render_compare(runs: list[dict[str, Any]], markdown: bool = False) -> str:
    """The ``--compare`` table: each sweep's fixed cost and its parts, then each variant's mean +- half its range."""
    table = markdown_table if markdown else format_table
    rows = [[f"{i + 1}. {run['variant']}", *(run[key] for key, _ in PARTS)] for i, run in enumerate(runs)]
    for variant in ("previous", "after"):
        mine = [run for run in runs if run["variant"] == variant]
        cells = []
        for key, _ in PARTS:
            values = [run[key] for run in mine if run[key] is not None]
            cells.append(f"{sum(values) / len(values):.2f} +- {(max(values) - min(values)) / 2:.2f}"
                         if values else "-")
        rows.append([f"{variant} (mean +- half range, {len(mine)} runs)", *cells])
    return table(["sweep", *(label + " s" for _, label in PARTS)], rows)


def results_section(report: dict[str, Any]) -> str:
    from benchmarks.results_file import run_line

    text = render(report, markdown=True)
    if report.get("compare"):
        text += ("\n\nPrevious/after (``--compare``: four sweeps in this run, in the order shown, each a fresh "
                 "process, its imports included; previous = Ray begun after the driver's imports, space and data, "
                 "with the dashboard's API server):\n\n" + render_compare(report["compare"], markdown=True))
    return run_line(report.get("command") or "python benchmarks/sweep_overhead.py --results") + "\n\n" + text


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    from benchmarks.results_file import add_output_arguments

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short smoke run (CI)")
    parser.add_argument("--trials", type=int, default=None, help="trials in the sweep (default 6; quick 2)")
    parser.add_argument("--trial-seconds", type=float, default=None, help="target trial length (default 30)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs per trial (default 10; quick 2)")
    parser.add_argument("--concurrency", type=int, default=2, help="trials at once, one CPU each")
    parser.add_argument("--no-concurrent-baseline", action="store_true", help="skip the plain concurrent baseline")
    parser.add_argument("--compare", action="store_true",
                        help="four sweeps, previous/after/after/previous: Ray begun at the command's start, without "
                             "the dashboard's API server, or not (see previous_start); the fixed cost of each")
    parser.add_argument("--workdir", type=Path, default=None, help="where the sweep and caches go (default: temp)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    add_output_arguments(parser, "sweep_overhead")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--sweep-child", default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    args = parse_args(argv)
    if args.child:
        print(RESULT_PREFIX + json.dumps(child_baseline(json.loads(args.child))), flush=True)
        return None
    if args.sweep_child:  # ends as `python -m search.run` ends (vad.cli_errors.exit_now; previously sys.exit)
        from vad.cli_errors import exit_now

        spec = json.loads(args.sweep_child)
        print(RESULT_PREFIX + json.dumps(sweep_child(spec)), flush=True)
        if spec["variant"] == "previous":
            return None
        exit_now(0)
    trials = args.trials or (2 if args.quick else 6)
    epochs = args.epochs or (2 if args.quick else 10)
    trial_seconds = args.trial_seconds or (2.0 if args.quick else 30.0)
    work = (args.workdir or Path(tempfile.mkdtemp(prefix="wsvad-sweep-overhead-"))).resolve()
    work.mkdir(parents=True, exist_ok=True)
    os.environ["VAD_CACHE_DIR"] = str(work / "cache")
    load_before = os.getloadavg()[0]
    try:
        print(f"== sweep_overhead: calibrating trials of about {trial_seconds:g} s", flush=True)
        calibration = calibrate(trial_seconds, epochs, work / "calibration")
        config = base_config(calibration["steps_per_epoch"], epochs)
        print(f"   {calibration['steps_per_epoch']} steps per epoch (predicted {calibration['predicted_trial_s']:.1f} "
              f"s a trial)\n== the sweep: {trials} trials, {args.concurrency} at a time", flush=True)
        space = write_space(work, config, trials, epochs, args.concurrency)
        runs = []
        for index, variant in enumerate(COMPARE_ORDER if args.compare else ("after",)):
            runs.append({"variant": variant, "sweep": run_sweep(space, work / f"run-{index}", variant)})
        sweep = next(run["sweep"] for run in reversed(runs) if run["variant"] == "after")
        configs = [trial["config"] for trial in sweep["trials"]]
        print(f"   {sweep['wall_s']:.1f} s\n== the same trials with vad.train, back to back", flush=True)
        with TreeCpu(interval=0.5) as baseline_cpu:
            sequential = [time_training(c, work / "baseline" / f"{i}") for i, c in enumerate(configs)]
        concurrent = None
        if not args.no_concurrent_baseline:
            print(f"== the same trials in {args.concurrency} plain processes", flush=True)
            concurrent = concurrent_baseline(configs, args.concurrency, work / "concurrent")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    report = {"command": " ".join(["python benchmarks/sweep_overhead.py", *(sys.argv[1:] if argv is None else argv)]),
              "quick": args.quick, "trials": trials, "epochs": epochs, "concurrency": args.concurrency,
              "calibration": calibration, "sweep": sweep, "sequential_s": sequential, "concurrent": concurrent,
              "load_average": [load_before, os.getloadavg()[0]],
              "analysis": analyse(sweep, sequential, concurrent, args.concurrency, baseline_cpu.seconds)}
    if args.compare:
        report["compare"] = [{"variant": run["variant"], **fixed_parts(run["sweep"], analyse(
            run["sweep"], sequential, None, args.concurrency, None))} for run in runs]
    from benchmarks.results_file import publish

    shown = render(report) + ("\n" + render_compare(report["compare"]) if report.get("compare") else "")
    publish(report, shown, section="sweep_overhead", results_section=results_section, json_path=args.json,
            results_path=args.results)
    return report


if __name__ == "__main__":
    main()
