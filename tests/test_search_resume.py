"""Sweeps as separate processes: ``--resume`` after a real SIGKILL of the driver mid-sweep and mid-confirmation,
and a sweep that joins a running Ray cluster (``ray start --head``) with ``--address``.

Every process these tests start gets its own session (process group); what is left of it afterwards (the killed
driver's Ray agents, the cluster's processes) is ended by that group id, never by process name.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient
from ray.tune import ExperimentAnalysis
from sweep_helpers import REPO, base_config, sweep_runs, write_space

from search.sweep.confirm import PLAN_FILE

pytestmark = pytest.mark.slow
BASE = base_config(steps_per_epoch=20)


def environment(tmp_path_factory) -> dict:
    return {**os.environ, "VAD_CACHE_DIR": str(tmp_path_factory.getbasetemp() / "vad-cache"),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}


def end_group(process: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
    """Signal what is left of the process group this test started (its leader's pid is the group id)."""
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        pass


def run_to_end(command: list[str], env: dict, log: Path, timeout: float = 300) -> int:
    with log.open("a") as out:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        try:
            return process.wait(timeout=timeout)
        finally:
            end_group(process)


def kill_driver_when(command: list[str], env: dict, log: Path, ready, timeout: float) -> None:
    """Start the driver ``command``, SIGKILL it (the driver only: Ray's own processes are left to their fate) once
    ``ready()`` is true, then end what is left of its process group."""
    with log.open("w") as out:
        driver = subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
                                  start_new_session=True)
        try:
            deadline = time.monotonic() + timeout
            while not ready():
                assert driver.poll() is None, f"the sweep ended before it could be killed:\n{log.read_text()}"
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.2)
            time.sleep(0.5)
            os.kill(driver.pid, signal.SIGKILL)
            assert driver.wait(timeout=30) == -signal.SIGKILL
            time.sleep(2)
        finally:
            end_group(driver)


def check_runs(client: MlflowClient, name: str, trial_ids: set[str], epochs: int) -> list:
    """One parent and exactly one terminal child run per Tune trial; per-epoch metrics without duplicate steps;
    a trial that reached the last epoch trained to its end (its run's result is there)."""
    _, parents, children = sweep_runs(client, name)
    children = [c for c in children if c.data.tags.get("group", "search") == "search"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert sorted(c.data.tags["trial_id"] for c in children) == sorted(trial_ids)
    for child in children:
        assert child.info.status in ("FINISHED", "FAILED"), child.info
        steps = [m.step for m in client.get_metric_history(child.info.run_id, "val_loss")]
        assert steps == list(range(1, int(child.data.tags["epochs_run"]) + 1)), (child.info.run_name, steps)
        if len(steps) == epochs:
            assert child.data.tags["train_status"] == "completed", child.data.tags
    return children


def in_progress_with_checkpoints(experiment: Path) -> bool:
    """A trial has finished, and another one is mid-run with two Tune checkpoints (so the experiment snapshot
    that Tune forces every ``num_to_keep`` checkpoints knows it)."""
    asha = experiment / "search" / "asha.json"
    stopped = set(json.loads(asha.read_text())["stopped"]) if asha.is_file() else set()
    finished = list(experiment.glob("trial_*/run/result.json"))
    running = [d for d in experiment.glob("trial_*") if (d / "checkpoint_000001").is_dir()
               and not (d / "run" / "result.json").exists() and d.name.removeprefix("trial_") not in stopped]
    return bool(finished) and bool(running)


def test_resume_after_the_driver_is_killed_runs_every_trial_exactly_once(tmp_path, tmp_path_factory):
    space = write_space(tmp_path, {
        "search": {"sampler": "tpe", "num_samples": 6, "epochs": 8, "seed": 1},
        "scheduler": {"name": "asha", "grace_period": 2, "reduction_factor": 2},
        "resources": {"cpus_per_trial": 1, "max_concurrent": 1},
        "confirm": {"top": 0},  # the confirmation's resume has its own test
        "params": {"optim.lr": {"loguniform": [1.0e-4, 1.0e-2]}, "model.dropout": {"uniform": [0.3, 0.8]}},
    }, BASE)
    store, uri, env = tmp_path / "store", f"sqlite:///{tmp_path}/mlruns/mlflow.db", environment(tmp_path_factory)
    command = [sys.executable, "-m", "search.run", "--space", str(space), "--name", "K", "--storage", str(store),
               "--tracking-uri", uri]
    kill_driver_when(command, env, tmp_path / "driver.log", lambda: in_progress_with_checkpoints(store / "K"), 240)

    assert run_to_end(command + ["--resume"], env, tmp_path / "resume.log") == 0, (tmp_path / "resume.log").read_text()
    trials = ExperimentAnalysis(str(store / "K")).trials
    ids = [t.trial_id for t in trials]
    assert len(ids) == 6 and len(set(ids)) == 6
    assert all(t.status == "TERMINATED" for t in trials)
    restored = [t for t in trials if t.last_result.get("iterations_since_restore", 0)
                < t.last_result.get("training_iteration", 0)]
    assert restored, "no trial continued from its checkpoint"
    baseline = [t for t in trials if t.config["optim.lr"] == 1.0e-3 and t.config["model.dropout"] == 0.7]
    assert len(baseline) == 1  # the Optuna study continued: the paper defaults were not suggested again
    check_runs(MlflowClient(tracking_uri=uri), "K", set(ids), epochs=8)


def confirm_in_progress(experiment: Path) -> bool:
    """The search is over (the record says ``confirm``), a confirmation seed has finished and another one is
    mid-run with two Tune checkpoints."""
    record = experiment / "search" / "sweep.json"
    if not record.is_file() or json.loads(record.read_text()).get("stage") != "confirm":
        return False
    folder = experiment / "confirm"
    finished = list(folder.glob("trial_*/run/result.json"))
    running = [d for d in folder.glob("trial_*") if (d / "checkpoint_000001").is_dir()
               and not (d / "run" / "result.json").exists()]
    return bool(finished) and bool(running)


def test_resume_continues_an_interrupted_confirmation(tmp_path, tmp_path_factory):
    space = write_space(tmp_path, {
        "search": {"sampler": "random", "num_samples": 2, "epochs": 6, "seed": 1},
        "scheduler": {"name": "fifo"},
        "resources": {"cpus_per_trial": 1, "max_concurrent": 1},
        "confirm": {"top": 1, "seeds": 2},
        "params": {"optim.lr": {"loguniform": [1.0e-4, 1.0e-2]}},
    }, BASE)
    store, uri, env = tmp_path / "store", f"sqlite:///{tmp_path}/mlruns/mlflow.db", environment(tmp_path_factory)
    command = [sys.executable, "-m", "search.run", "--space", str(space), "--name", "Q", "--storage", str(store),
               "--tracking-uri", uri]
    kill_driver_when(command, env, tmp_path / "driver.log", lambda: confirm_in_progress(store / "Q"), 300)
    # the seeds the killed driver's saved experiment state records as finished (a seed whose result.json was written
    # in the instant before the kill, after Tune's last snapshot, is legitimately continued from its checkpoint)
    recorded = {t.trial_id for t in ExperimentAnalysis(str(store / "Q" / "confirm")).trials if t.status == "TERMINATED"}
    results = (store / "Q" / "confirm").glob("trial_*/run/result.json")
    done_before = {path.parents[1].name: path.stat().st_mtime_ns for path in results
                   if path.parents[1].name.removeprefix("trial_") in recorded}
    search_before = sorted(t.trial_id for t in ExperimentAnalysis(str(store / "Q")).trials)

    assert run_to_end(command + ["--resume"], env, tmp_path / "resume.log") == 0, (tmp_path / "resume.log").read_text()
    assert "Confirmation:" in (tmp_path / "resume.log").read_text()
    assert sorted(t.trial_id for t in ExperimentAnalysis(str(store / "Q")).trials) == search_before
    plan = json.loads((store / "Q" / "search" / PLAN_FILE).read_text())
    points = len(plan["candidates"]) * len(plan["seeds"])
    trials = ExperimentAnalysis(str(store / "Q" / "confirm")).trials
    assert len(trials) == points and all(t.status == "TERMINATED" for t in trials)
    assert len({(t.config["optim.lr"], t.config["train.seed"]) for t in trials}) == points
    for name, mtime in done_before.items():  # a finished seed is not rerun
        assert (store / "Q" / "confirm" / name / "run" / "result.json").stat().st_mtime_ns == mtime
    assert json.loads((store / "Q" / "search" / "sweep.json").read_text())["stage"] == "done"

    client = MlflowClient(tracking_uri=uri)
    _, parents, children = sweep_runs(client, "Q")
    confirm = [c for c in children if c.data.tags.get("group") == "confirm"]
    assert sorted(c.data.tags["trial_id"] for c in confirm) == sorted(t.trial_id for t in trials)
    for child in confirm:
        assert child.info.status == "FINISHED"
        steps = [m.step for m in client.get_metric_history(child.info.run_id, "val_loss")]
        assert steps == list(range(1, 7)), (child.info.run_name, steps)
    assert parents[0].info.status == "FINISHED" and parents[0].data.tags["confirmed_trial"]
    assert (store / "Q" / "search" / "best_config.yaml").read_text().startswith("# Confirmed winner of sweep Q")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def forget_cluster(port: int) -> None:
    """Remove the "current cluster" note our `ray start` left in Ray's temp folder (`ray stop` would), so that no
    later `ray.init()` on this machine tries to join the stopped cluster."""
    note = Path(os.environ.get("RAY_TMPDIR", "/tmp")) / "ray" / "ray_current_cluster"
    if note.is_file() and note.read_text().strip().endswith(f":{port}"):
        note.unlink()


def test_sweep_joins_a_running_cluster(tmp_path, tmp_path_factory):
    env = environment(tmp_path_factory)
    port = free_port()
    head_log = tmp_path / "head.log"
    ray_cli = str(Path(sys.executable).with_name("ray"))
    with head_log.open("w") as out:
        head = subprocess.Popen([ray_cli, "start", "--head", f"--port={port}", "--num-cpus=2",
                                 "--include-dashboard=false", "--disable-usage-stats", "--block"],
                                cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while "Ray runtime started" not in head_log.read_text():
            assert head.poll() is None and time.monotonic() < deadline, head_log.read_text()
            time.sleep(0.5)
        space = write_space(tmp_path, {
            "search": {"sampler": "random", "num_samples": 3, "epochs": 2},
            "scheduler": {"name": "fifo"},
            "resources": {"cpus_per_trial": 1},
            "confirm": {"top": 0},
            "params": {"optim.lr": {"loguniform": [1.0e-4, 1.0e-2]}},
        }, BASE)
        uri = f"sqlite:///{tmp_path}/mlruns/mlflow.db"
        log = tmp_path / "driver.log"
        command = [sys.executable, "-m", "search.run", "--space", str(space), "--name", "C", "--address",
                   f"127.0.0.1:{port}", "--storage", str(tmp_path / "shared"), "--tracking-uri", uri]
        driver_env = {**env, "RAY_AUTH_MODE": env.get("RAY_AUTH_MODE", "token")}  # as a cluster user sets it
        assert run_to_end(command, driver_env, log) == 0, log.read_text()
        assert "Connecting to existing Ray cluster" in log.read_text()
    finally:
        head.send_signal(signal.SIGTERM)  # `ray start --block` stops the cluster it started
        try:
            head.wait(timeout=30)
        finally:
            end_group(head)
            forget_cluster(port)
    trials = ExperimentAnalysis(str(tmp_path / "shared" / "C")).trials
    assert len(trials) == 3 and all(t.status == "TERMINATED" for t in trials)
    check_runs(MlflowClient(tracking_uri=uri), "C", {t.trial_id for t in trials}, epochs=2)
