"""Sweeps that survive faults (issue 12): one driver per sweep (a lock), the sweep record holding what a resume needs,
durable records and a full disk, an unreachable tracking server, SIGTERM, and storage owned by someone else.

The fast tests exercise the pieces directly; the ``slow`` ones run ``search.run`` as separate processes (each in its
own session, ended by its process-group id, never by name).
"""

import errno
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient
from sweep_helpers import REPO, base_config, sweep_runs, write_space

from search.run import _sigterm_as_ctrl_c, disk_full
from search.sweep import lock as sweep_lock
from search.sweep.record import (
    SweepPaths,
    SweepRecord,
    SweepStateError,
    check_owner,
    check_records,
    new_sweep,
    resumed_sweep,
    save_record,
)
from search.sweep.tracking import SweepExistsError, check_tracking, open_sweep
from search.sweep.tuner import refuse_restart, stopped_by_full_disk

HOLD = ("import sys, time; from pathlib import Path; from search.sweep.lock import acquire; "
        "acquire(Path(sys.argv[1]), 'S'); print('held', flush=True); time.sleep(60)")


def env() -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}


def hold_lock(folder: Path) -> subprocess.Popen:
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], cwd=REPO, env=env(),
                              stdout=subprocess.PIPE, text=True, start_new_session=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


def end_group(process: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        pass
    process.wait(timeout=30)


@pytest.fixture
def space(tmp_path):
    return write_space(tmp_path, {"search": {"sampler": "random", "num_samples": 2, "epochs": 2, "seed": 1},
                                  "scheduler": {"name": "fifo"}, "confirm": {"top": 0},
                                  "params": {"optim.lr": {"loguniform": [1.0e-4, 1.0e-2]}}},
                       base_config(steps_per_epoch=3))


# ------------------------------------------------------------------------------------------ one driver per sweep

def test_a_held_lock_refuses_a_second_driver_naming_the_holder_and_a_dead_one_is_taken_over(tmp_path):
    folder = tmp_path / "S"
    holder = hold_lock(folder)
    try:
        started = time.monotonic()
        with pytest.raises(sweep_lock.SweepLockedError, match=rf"sweep S is being run by pid {holder.pid} on "
                                                              rf"{socket.gethostname()} since \d{{4}}-"):
            sweep_lock.acquire(folder, "S")
        assert time.monotonic() - started < 2
    finally:
        end_group(holder)
    taken = sweep_lock.acquire(folder, "S")  # the kernel released the dead driver's flock
    try:
        assert taken.previous is not None and taken.previous.pid == holder.pid
        assert json.loads((folder / sweep_lock.LOCK_FILE).read_text())["pid"] == os.getpid()
    finally:
        sweep_lock.release(taken)


def test_a_name_in_use_is_refused_before_anything_runs(tmp_path, space):
    from search.sweep.space import load_space

    loaded = load_space(space)
    paths = new_sweep(loaded, tmp_path / "store", "S")  # created and locked by this process
    try:
        holder = hold_lock(tmp_path / "store" / "T")
        try:
            with pytest.raises(SweepStateError, match=f"sweep T is being run by pid {holder.pid}"):
                new_sweep(loaded, tmp_path / "store", "T")
            with pytest.raises(SweepStateError, match=f"sweep T is being run by pid {holder.pid}"):
                resumed_sweep(loaded, tmp_path / "store", "T", None)
        finally:
            end_group(holder)
        with pytest.raises(SweepStateError, match="already exists.*--resume"):  # no driver: the name is taken
            new_sweep(loaded, tmp_path / "store", "T")
    finally:
        sweep_lock.release(sweep_lock.acquire(paths.experiment_dir, "S"))


def test_two_drivers_on_one_tracking_store_are_refused_cleanly(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    first = open_sweep(uri, "dup", resume=False)
    with pytest.raises(SweepExistsError, match="already holds sweep 'dup'"):
        open_sweep(uri, "dup", resume=False)
    real = MlflowClient.get_experiment_by_name
    calls = []

    def late_lookup(self, name):  # the other driver creates the experiment right after this look-up
        calls.append(name)
        return None if len(calls) == 1 else real(self, name)

    monkeypatch.setattr(MlflowClient, "get_experiment_by_name", late_lookup)
    with pytest.raises(SweepExistsError, match="another driver"):  # not a raw "UNIQUE constraint failed"
        open_sweep(uri, "dup", resume=False)
    monkeypatch.setattr(MlflowClient, "get_experiment_by_name", real)
    monkeypatch.setattr("search.sweep.tracking.find_parent_run", lambda client, experiment_id: None)
    with pytest.raises(SweepExistsError, match="another driver"):  # both looked before either created a parent
        open_sweep(uri, "dup", resume=False)
    client = MlflowClient(tracking_uri=uri)
    _, parents, _ = sweep_runs(client, "dup")
    assert [p.info.run_id for p in parents] == [first.parent_run_id]  # the later parent was withdrawn


# ------------------------------------------------------------------------------------------ records

def test_resume_options_that_differ_from_the_record_are_refused_naming_both_values():
    record = SweepRecord("S", "space.yaml", "d", "sqlite:///a.db", "now", num_samples=3)
    record.conflicts({"--num-samples": 3, "--tracking-uri": None, "--optuna-storage": None, "--diagnostic": None})
    with pytest.raises(SweepStateError, match="--num-samples cannot change on --resume.*--num-samples 3.*gives 4"):
        record.conflicts({"--num-samples": 4})
    with pytest.raises(SweepStateError, match="--tracking-uri .*sqlite:///a.db.*gives sqlite:///b.db"):
        record.conflicts({"--tracking-uri": "sqlite:///b.db"})


def test_records_keep_their_previous_copy_and_a_damaged_one_is_refused_naming_what_is_intact(tmp_path):
    paths = SweepPaths(tmp_path, "S")
    record = SweepRecord("S", "space.yaml", "d", "sqlite:///a.db", "now", num_samples=3)
    record.save(paths.search_dir)
    from dataclasses import replace

    replace(record, stage="confirm").save(paths.search_dir)
    assert json.loads((paths.search_dir / "sweep.json.prev").read_text())["stage"] == "search"
    assert SweepRecord.load(paths.search_dir).stage == "confirm"
    save_record(paths.search_dir / "tracking.json", {"tracking_uri": "x", "experiment_id": "1", "parent_run_id": "p"})
    (paths.experiment_dir / "experiment_state-2026.json").write_text('{"trial_data": []}')
    check_records(paths)  # all intact
    (paths.search_dir / "sweep.json").write_text('{"name": "S", "spa')  # truncated by a full disk
    with pytest.raises(SweepStateError) as refused:
        check_records(paths)
    message = str(refused.value)
    assert "sweep.json is damaged" in message and "sweep.json.prev is intact" in message
    assert "Intact: search/tracking.json, Tune's experiment_state-2026.json" in message
    assert "Nothing was changed or deleted" in message
    save_record(paths.search_dir / "sweep.json", {"name": "S"})  # a damaged copy never becomes the .prev
    assert json.loads((paths.search_dir / "sweep.json.prev").read_text())["stage"] == "search"
    (paths.experiment_dir / "experiment_state-2026.json").write_text('{"trial_')
    with pytest.raises(SweepStateError, match="Tune's experiment_state-2026.json is damaged"):
        check_records(paths)


def test_a_full_disk_names_the_path_and_leaves_the_records_as_they_were(tmp_path, monkeypatch):
    folder = tmp_path / "search"
    save_record(folder / "sweep.json", {"stage": "search"})
    real_fsync = os.fsync

    def no_space(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(OSError) as failed:
        save_record(folder / "sweep.json", {"stage": "confirm"})
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert failed.value.errno == errno.ENOSPC
    assert disk_full(failed.value) == str(folder / "sweep.json")
    assert json.loads((folder / "sweep.json").read_text()) == {"stage": "search"}
    assert sorted(p.name for p in folder.iterdir()) == ["sweep.json", "sweep.json.prev"]  # no temporary left
    wrapped = RuntimeError("trial failed")
    wrapped.__cause__ = OSError(errno.ENOSPC, "No space left on device")
    assert disk_full(wrapped) == "?" and disk_full(RuntimeError("other")) is None


def test_a_real_full_filesystem_fails_the_write_with_enospc(tmp_path):
    mount = tmp_path / "small"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("mounting a tmpfs is not permitted here")
    try:
        save_record(mount / "sweep.json", {"stage": "search"})
        with open(mount / "filler", "wb") as filler, pytest.raises(OSError) as full:  # fill it up
            filler.write(b"\0" * (2 << 20))
            filler.flush()
        assert full.value.errno == errno.ENOSPC
        with pytest.raises(OSError, match=r"No space left on device.*sweep.json"):
            save_record(mount / "sweep.json", {"stage": "confirm", "pad": "x" * 8192})
        assert json.loads((mount / "sweep.json").read_text()) == {"stage": "search"}
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_tunes_restart_after_a_failed_restore_becomes_a_refusal(tmp_path):
    refuse_restart(SweepPaths(tmp_path, "S"))
    tune_logger = logging.getLogger("ray.tune.execution.tune_controller")
    try:
        try:
            raise ValueError("truncated experiment state")
        except ValueError:
            refusal = r"\(ValueError: truncated experiment state\); refusing to restart it from scratch"
            with pytest.raises(SweepStateError, match=refusal):
                tune_logger.exception("Failed to restore the run state.")
    finally:
        for installed in list(tune_logger.filters):
            tune_logger.removeFilter(installed)


def test_trials_stopped_by_a_full_disk_are_continued_on_resume(tmp_path):
    paths = SweepPaths(tmp_path, "S")
    (paths.experiment_dir / "trial_a").mkdir(parents=True)
    (paths.experiment_dir / "trial_a" / "error.txt").write_text("RuntimeError: diverged")
    assert not stopped_by_full_disk(paths)
    (paths.experiment_dir / "trial_b").mkdir()
    (paths.experiment_dir / "trial_b" / "error.txt").write_text("RuntimeError: [enforce fail] unexpected pos 64 vs 0")
    assert stopped_by_full_disk(paths)


# ------------------------------------------------------------------------------------------ exposure, signals

def test_resume_refuses_storage_others_can_write_unless_trusted(tmp_path):
    paths = SweepPaths(tmp_path, "S")
    paths.search_dir.mkdir(parents=True)
    check_owner(paths)
    (paths.experiment_dir / "tuner.pkl").write_bytes(b"")
    os.chmod(paths.experiment_dir / "tuner.pkl", 0o666)
    with pytest.raises(SweepStateError, match="tuner.pkl is writable by other users.*--trust-storage"):
        check_owner(paths)


def test_sigterm_is_handled_like_ctrl_c():
    previous = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    try:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        _sigterm_as_ctrl_c()
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)
        seen = []
        signal.signal(signal.SIGINT, lambda signum, frame: seen.append(signum))  # Tune's graceful stop during fit
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.1)
        assert seen == [signal.SIGINT]
    finally:
        signal.signal(signal.SIGTERM, previous[0])
        signal.signal(signal.SIGINT, previous[1])


def test_an_unreachable_tracking_server_is_refused_within_seconds(monkeypatch):
    for key in ("MLFLOW_HTTP_REQUEST_TIMEOUT", "MLFLOW_HTTP_REQUEST_MAX_RETRIES"):
        monkeypatch.delenv(key, raising=False)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(ValueError, match=rf"the MLflow tracking server at http://127.0.0.1:{port} is not reachable"):
        check_tracking(f"http://127.0.0.1:{port}")
    assert time.monotonic() - started < 10
    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "10" and os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "2"


# ------------------------------------------------------------------------------------------ whole sweeps (slow)

def sweep_env(tmp_path_factory) -> dict:
    return {**env(), "VAD_CACHE_DIR": str(tmp_path_factory.getbasetemp() / "vad-cache")}


def search_run(*args: str, environ: dict, timeout: float = 240) -> subprocess.CompletedProcess:
    """``python -m search.run ARGS`` to its end (its process group ended afterwards)."""
    process = subprocess.Popen([sys.executable, "-m", "search.run", *args], cwd=REPO, env=environ, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        out, err = process.communicate(timeout=timeout)
    finally:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


@pytest.mark.slow
def test_a_finished_sweep_resumed_stays_finished_and_options_come_from_its_record(tmp_path, space, tmp_path_factory):
    environ, store, uri = sweep_env(tmp_path_factory), tmp_path / "store", f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    command = ["--space", str(space), "--name", "F", "--storage", str(store), "--tracking-uri", uri]
    first = search_run(*command, "--num-samples", "3", environ=environ)
    assert first.returncode == 0, first.stdout + first.stderr
    client = MlflowClient(tracking_uri=uri)
    _, parents, children = sweep_runs(client, "F")
    assert len(children) == 3 and parents[0].info.status == "FINISHED"
    ended = parents[0].info.end_time
    record = json.loads((store / "F" / "search" / "sweep.json").read_text())
    assert record["num_samples"] == 3 and record["tracking_uri"] == uri and record["stage"] == "done"

    for again in (command + ["--num-samples", "3", "--resume"], ["--space", str(space), "--name", "F", "--storage",
                                                                 str(store), "--resume"]):  # bare: the record's URI
        resumed = search_run(*again, environ=environ, timeout=60)
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        assert "Sweep F is finished" in resumed.stdout and "interrupted" not in resumed.stdout
    _, parents, children = sweep_runs(client, "F")
    assert len(children) == 3 and parents[0].info.status == "FINISHED" and parents[0].info.end_time == ended

    refused = search_run(*command, "--num-samples", "4", "--resume", environ=environ, timeout=60)
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines()[-1].startswith(
        "error: --num-samples cannot change on --resume: sweep 'F' was started with --num-samples 3, this command "
        "gives 4")
    other = search_run(*command[:-1], f"sqlite:///{tmp_path}/other.db", "--resume", environ=environ, timeout=60)
    assert other.returncode == 2 and "--tracking-uri cannot change on --resume" in other.stderr
    reused = search_run(*command, environ=environ, timeout=60)
    assert reused.returncode == 2 and "already exists" in reused.stderr and "Traceback" not in reused.stderr


def wait_for(condition, timeout: float, process: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, f"the driver ended before {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def two_slow_trials(folder: Path) -> Path:
    """A space of two one-at-a-time trials of 6 slow epochs (time to act on a running driver: about 10 s a trial,
    more than a second driver takes to be refused), no confirmation."""
    return write_space(folder, {"search": {"sampler": "random", "num_samples": 2, "epochs": 6, "seed": 1},
                                "scheduler": {"name": "fifo"}, "confirm": {"top": 0},
                                "resources": {"cpus_per_trial": 1, "max_concurrent": 1},
                                "params": {"optim.lr": {"loguniform": [1.0e-4, 1.0e-2]}}},
                       base_config(steps_per_epoch=80))

@pytest.mark.slow
def test_a_second_driver_is_refused_and_sigterm_stops_the_first_resumably(tmp_path, tmp_path_factory):
    space = two_slow_trials(tmp_path)
    environ, store, uri = sweep_env(tmp_path_factory), tmp_path / "store", f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    command = [sys.executable, "-m", "search.run", "--space", str(space), "--name", "D", "--storage", str(store),
               "--tracking-uri", uri]
    log = tmp_path / "first.log"
    with log.open("w") as out:
        first = subprocess.Popen(command, cwd=REPO, env=environ, stdout=out, stderr=subprocess.STDOUT,
                                 start_new_session=True)
    try:
        lock_file = store / "D" / sweep_lock.LOCK_FILE
        wait_for(lambda: sweep_lock.read_holder(lock_file) is not None, 120, first, "the lock")
        started = time.monotonic()
        second = search_run(*command[3:-1], f"sqlite:///{tmp_path}/second.db", environ=environ, timeout=60)
        assert second.returncode == 2 and time.monotonic() - started < 30
        assert (f"error: sweep D is being run by pid {first.pid} on {socket.gethostname()} since"
                in second.stderr), second.stderr
        assert not Path(f"{tmp_path}/second.db").exists() or "D" not in [
            e.name for e in MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/second.db").search_experiments()]

        wait_for(lambda: any(p.stat().st_size for p in (store / "D").glob("trial_*/result.json")), 180, first,
                 "a trial's first epochs")
        import psutil

        ray_processes = psutil.Process(first.pid).children(recursive=True)  # the local Ray it started
        assert ray_processes
        os.kill(first.pid, signal.SIGTERM)  # what a cluster scheduler sends: the driver only
        assert first.wait(timeout=120) == 1, log.read_text()
        _, alive = psutil.wait_procs(ray_processes, timeout=30)
        assert not alive, [p.cmdline()[:2] for p in alive]  # no Ray process outlives the driver
    finally:
        end_group(first)
    assert "The sweep was interrupted" in log.read_text()
    assert not list((store / "D").glob("**/.checkpoint-*"))
    client = MlflowClient(tracking_uri=uri)
    _, parents, children = sweep_runs(client, "D")
    assert parents[0].info.status == "KILLED" and children
    for child in children:
        assert child.info.status == "KILLED", child.info
        steps = [m.step for m in client.get_metric_history(child.info.run_id, "val_loss")]
        assert steps == list(range(1, int(child.data.tags["epochs_run"]) + 1)), (steps, child.data.tags)

    resumed = search_run(*command[3:], "--resume", environ=environ)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"the lock of its previous driver, pid {first.pid}" in resumed.stdout
    _, parents, children = sweep_runs(client, "D")
    assert parents[0].info.status == "FINISHED" and len(children) == 2
    assert all(child.info.status == "FINISHED" for child in children)


@pytest.mark.slow
def test_no_tracking_server_is_said_within_seconds_before_ray_starts(tmp_path, space, tmp_path_factory):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = time.monotonic()
    result = search_run("--space", str(space), "--name", "N", "--storage", str(tmp_path / "store"), "--tracking-uri",
                        f"http://127.0.0.1:{port}", environ=sweep_env(tmp_path_factory), timeout=60)
    assert time.monotonic() - started < 30
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith(
        f"error: the MLflow tracking server at http://127.0.0.1:{port} is not reachable")
    assert not (tmp_path / "store" / "N").exists()  # the name stays free


def start_server(folder: Path, port: int) -> subprocess.Popen:
    """``mlflow server`` (sqlite store in ``folder``) on 127.0.0.1:``port``, answering ``/health``."""
    log = (folder / "server.log").open("a")
    process = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{folder}/mlflow.db",
         "--artifacts-destination", str(folder / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1"], cwd=folder, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 120
    while True:
        try:
            check_tracking(f"http://127.0.0.1:{port}", timeout=2)
            return process
        except ValueError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            end_group(process)
            raise RuntimeError(f"mlflow server did not start:\n{(folder / 'server.log').read_text()[-3000:]}")
        time.sleep(0.5)


def epochs_done(experiment: Path) -> int:
    return sum(len(p.read_text().splitlines()) for p in experiment.glob("trial_*/result.json"))


@pytest.mark.slow
def test_a_tracking_server_killed_and_restarted_mid_sweep_loses_no_epoch(tmp_path, tmp_path_factory):
    space = two_slow_trials(tmp_path)
    folder = tmp_path / "server"
    folder.mkdir()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    uri, store, log = f"http://127.0.0.1:{port}", tmp_path / "store", tmp_path / "driver.log"
    server = start_server(folder, port)
    try:
        with log.open("w") as out:
            driver = subprocess.Popen([sys.executable, "-m", "search.run", "--space", str(space), "--name", "H",
                                       "--storage", str(store), "--tracking-uri", uri], cwd=REPO,
                                      env=sweep_env(tmp_path_factory), stdout=out, stderr=subprocess.STDOUT,
                                      start_new_session=True)
        try:
            wait_for(lambda: epochs_done(store / "H") >= 1, 180, driver, "the first epoch")
            end_group(server)  # the server goes away mid-sweep
            before = epochs_done(store / "H")
            wait_for(lambda: epochs_done(store / "H") >= before + 3, 120, driver, "epochs while the server is down")
            server = start_server(folder, port)
            assert driver.wait(timeout=240) == 0, log.read_text()
        finally:
            end_group(driver)
        text = log.read_text()
        assert text.count(f"warning: the MLflow tracking store {uri} does not answer") == 1, text
        assert "Traceback" not in text
        client = MlflowClient(tracking_uri=uri)
        _, parents, children = sweep_runs(client, "H")
        assert parents[0].info.status == "FINISHED" and len(children) == 2
        for child in children:
            assert child.info.status == "FINISHED"
            steps = [m.step for m in client.get_metric_history(child.info.run_id, "val_loss")]
            assert steps == list(range(1, 7)), (child.info.run_name, steps)
    finally:
        end_group(server)


@pytest.mark.slow
def test_a_sweep_whose_storage_fills_up_stops_and_resumes_once_space_is_freed(tmp_path, tmp_path_factory):
    mount = tmp_path / "small"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mount)],
                      capture_output=True).returncode:
        pytest.skip("mounting a tmpfs is not permitted here")
    try:
        space = write_space(tmp_path, {"search": {"sampler": "random", "num_samples": 3, "epochs": 6, "seed": 1,
                                                  "checkpoint_every": 1},
                                       "scheduler": {"name": "fifo"}, "confirm": {"top": 0},
                                       "resources": {"cpus_per_trial": 1, "max_concurrent": 1},
                                       "params": {"optim.lr": {"loguniform": [1.0e-4, 1.0e-2]}}},
                            base_config(steps_per_epoch=60))
        uri, store = f"sqlite:///{tmp_path}/mlruns/mlflow.db", mount / "store"
        command = [sys.executable, "-m", "search.run", "--space", str(space), "--name", "Z", "--storage",
                   str(store), "--tracking-uri", uri]
        log = tmp_path / "driver.log"
        with log.open("w") as out:
            driver = subprocess.Popen(command, cwd=REPO, env=sweep_env(tmp_path_factory), stdout=out,
                                      stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_for(lambda: epochs_done(store / "Z") >= 2, 180, driver, "the first epochs")
            with open(mount / "filler", "wb") as filler:  # the disk fills up mid-sweep
                try:
                    while True:
                        filler.write(b"\0" * (1 << 20))
                        filler.flush()
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC
            status = driver.wait(timeout=180)
        finally:
            end_group(driver)
        text = log.read_text()
        assert status == 2, text
        assert text.strip().splitlines()[-1].startswith("error: No space left on device ("), text[-3000:]
        assert text.strip().splitlines()[-1].endswith("run the same command with --resume"), text[-3000:]
        (mount / "filler").unlink()

        resumed = search_run(*command[3:], "--resume", environ=sweep_env(tmp_path_factory))
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        client = MlflowClient(tracking_uri=uri)
        runs, parents, children = sweep_runs(client, "Z")
        assert parents[0].info.status == "FINISHED"
        assert sorted(int(c.data.tags["trial_number"]) for c in children) == [1, 2, 3]  # each trial exactly once
        assert not [r for r in client.search_runs([parents[0].info.experiment_id], run_view_type=3)
                    if r.data.tags.get("orphaned")]  # none deleted
        for child in children:
            assert child.info.status == "FINISHED", (child.info, child.data.tags)
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_token_file_others_can_read_is_warned_about(tmp_path, capsys):
    from search.sweep.session import warn_token_mode

    token = tmp_path / "auth_token"
    token.write_text("secret")
    token.chmod(0o600)
    warn_token_mode(token)
    assert capsys.readouterr().err == ""
    token.chmod(0o644)
    warn_token_mode(token)
    assert "has mode 644: other local users can read it; run chmod 600" in capsys.readouterr().err


@pytest.mark.slow
def test_a_local_ray_started_for_a_sweep_listens_on_loopback_only():
    script = ("import ray; from search.sweep.session import connect; connect(None, False, quiet=True); "
              "print(ray.get_runtime_context().gcs_address); ray.shutdown()")
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env(), capture_output=True, text=True,
                            timeout=120, start_new_session=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1].startswith("127.0.0.1:"), result.stdout


def test_resume_checks_owner_lock_and_records_before_anything_runs(tmp_path, space):
    from search.sweep.space import load_space

    loaded = load_space(space)
    paths = SweepPaths(tmp_path / "store", "R")
    SweepRecord("R", str(loaded.path), loaded.digest, "sqlite:///x.db", "now", num_samples=2).save(paths.search_dir)
    (paths.search_dir / "tracking.json").write_text("{")
    with pytest.raises(SweepStateError, match=r"tracking.json is damaged.*Intact: search/sweep.json"):
        resumed_sweep(loaded, tmp_path / "store", "R", None, trust_storage=False)
    save_record(paths.search_dir / "tracking.json", {"tracking_uri": "sqlite:///x.db", "experiment_id": "1",
                                                     "parent_run_id": "p"})
    _, record = resumed_sweep(loaded, tmp_path / "store", "R", None, trust_storage=False)
    assert record.num_samples == 2
    os.chmod(paths.experiment_dir, 0o777)
    with pytest.raises(SweepStateError, match="writable by other users.*--trust-storage"):
        resumed_sweep(loaded, tmp_path / "store", "R", None, trust_storage=False)
    resumed_sweep(loaded, tmp_path / "store", "R", None, trust_storage=True)
