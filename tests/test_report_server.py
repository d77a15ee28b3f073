"""The MLflow workflow against a real ``mlflow server`` on 127.0.0.1 (started by the test): a small sweep with
``--tracking-uri http://127.0.0.1:PORT``, its runs, params, metrics and artifacts read back over HTTP as the MLflow
UI shows them, ``search.retrain`` of its best config with two seeds, and ``search.report`` over HTTP.

The server runs in its own session (process group); it is ended by that group id, never by process name.
"""

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient

from search import report, retrain
from search import run as search_run
from vad.scoring import TestScores as SavedScores

pytestmark = pytest.mark.slow
SWEEP = "http-sweep"
BASE = {
    "data": {"dataset": "synthetic:tiny"},
    "model": {"name": "rtfm", "dropout": 0.7, "hidden_dim": 16, "head_dims": [16, 8]},
    "loss": {"k": 3},
    "optim": {"lr": 1.0e-3, "weight_decay": 5.0e-4},
    "train": {"epochs": 3, "batch_per_class": 4, "seed": 0},
}
SPACE = {
    "base": "base.yaml",
    "fixed": {"train.test_every_epoch": True},
    "search": {"sampler": "tpe", "num_samples": 3, "epochs": 3, "seed": 1},
    "scheduler": {"name": "asha", "grace_period": 1, "reduction_factor": 2},
    "resources": {"cpus_per_trial": 1, "max_concurrent": 2},
    "params": {"optim.lr": {"loguniform": [1.0e-4, 1.0e-2]}, "model.dilations": {"choice": [[1, 2, 4], [1, 2]]}},
}
TERMINAL = {"FINISHED", "FAILED", "KILLED"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """``mlflow server`` with a sqlite store and proxied artifacts, on a free port of 127.0.0.1."""
    folder = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    log = (folder / "server.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{folder}/mlflow.db",
         "--artifacts-destination", str(folder / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1"], cwd=folder, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"mlflow server did not start:\n{(folder / 'server.log').read_text()[-3000:]}")
            time.sleep(0.5)
        yield uri
    finally:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(process.pid, sig)
                process.wait(timeout=10)
                break
            except ProcessLookupError:
                break
            except subprocess.TimeoutExpired:
                continue
        log.close()


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    """This module's cache folder, for the driver (its fixtures and tests) and the Ray workers."""
    return tmp_path_factory.mktemp("report-server-cache")


@pytest.fixture(autouse=True)
def _module_cache(cache_dir, monkeypatch) -> None:
    monkeypatch.setenv("VAD_CACHE_DIR", str(cache_dir))


@pytest.fixture(scope="module")
def ray_instance(cache_dir):
    """One local Ray for the module (its workers use the module's cache folder)."""
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"VAD_CACHE_DIR": str(cache_dir)}})
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def sweep(server, ray_instance, tmp_path_factory, cache_dir):
    """A finished three-trial sweep logged to the server; returns (tracking URI, storage folder)."""
    folder = tmp_path_factory.mktemp("sweep")
    (folder / "base.yaml").write_text(yaml.safe_dump(BASE))
    (folder / "space.yaml").write_text(yaml.safe_dump(SPACE))
    storage = folder / "store"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("VAD_CACHE_DIR", str(cache_dir))
        assert search_run.main(["--space", str(folder / "space.yaml"), "--name", SWEEP, "--storage",
                                str(storage), "--tracking-uri", server, "--confirm-top", "0"]) == 0
    return server, storage


def children(client: MlflowClient, parent) -> list:
    return client.search_runs([parent.info.experiment_id],
                              filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'")


def test_the_sweep_reads_back_over_http_as_the_ui_shows_it(sweep, tmp_path):
    uri, _ = sweep
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(SWEEP)
    (parent,) = client.search_runs([experiment.experiment_id], filter_string="tags.run_type = 'sweep'")
    assert parent.info.status == "FINISHED" and parent.info.run_name == SWEEP
    assert parent.data.params["space.optim.lr"] == "loguniform [0.0001, 0.01]"
    metric = parent.data.params["search.metric"]  # the sweep's ranking metric (the space's default)
    assert "| # | trial |" in parent.data.tags["mlflow.note.content"]  # the summary as the run's description
    assert {"space", "config", "summary.md", "summary.json", "best_config.yaml"} <= {
        a.path for a in client.list_artifacts(parent.info.run_id)}

    trials = children(client, parent)
    assert len(trials) == 3
    for trial in trials:
        tags, params, metrics = trial.data.tags, trial.data.params, trial.data.metrics
        assert trial.info.status in TERMINAL and tags["seed"] == "0"
        number = int(tags["trial_number"])
        # readable names: model, dataset, trial number and the searched values
        assert trial.info.run_name.startswith(f"rtfm-tiny-t{number:03d} ")
        assert f" lr={float(params['optim.lr']):.4g}" in trial.info.run_name
        assert f"dil={'-'.join(map(str, yaml.safe_load(params['model.dilations'])))}" in trial.info.run_name
        # params: the whole config flattened with the config names
        assert {"optim.lr", "optim.weight_decay", "model.dropout", "loss.k", "train.seed", "data.dataset"} <= set(
            params)
        # metrics: the training engine's names, per epoch with step = epoch
        assert {"train_loss", "val_loss", "val_video_auc", "test_auc", "selected_auc", "selected_test_loss",
                f"best_{metric}"} <= set(metrics)
        epochs = int(tags["epochs_run"])
        for key in ("val_loss", "test_auc"):
            assert [m.step for m in client.get_metric_history(trial.info.run_id, key)] == list(
                range(1, epochs + 1))
        assert metrics["val_loss"] == pytest.approx(
            max(client.get_metric_history(trial.info.run_id, "val_loss"), key=lambda m: m.step).value)
        # artifacts over HTTP: the selected checkpoint and its per-video scores
        assert {"checkpoint", "scores"} <= {a.path for a in client.list_artifacts(trial.info.run_id)}
        local = client.download_artifacts(trial.info.run_id, "scores/scores.npz", str(tmp_path / str(number)))
        scores = SavedScores.load(local)
        assert len(scores.video_ids) == 12 and len(scores.scores) == 12


def test_retrain_then_report_over_http(sweep, tmp_path, capsys):
    uri, storage = sweep
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(SWEEP)
    (parent,) = client.search_runs([experiment.experiment_id], filter_string="tags.run_type = 'sweep'")
    trials_before = {run.info.run_id for run in children(client, parent)}
    metric = parent.data.params["search.metric"]

    assert retrain.main(["--from", SWEEP, "--seeds", "2", "--epochs", "2", "--name", "rt",
                         "--tracking-uri", uri, "--storage", str(storage)]) == 0
    printed = capsys.readouterr().out
    assert f"| RTFM | val ({metric}), 2 seeds | 2 seeds (0,1) |" in printed and " ± " in printed, printed

    runs = children(client, parent)
    seeds = [run for run in runs if run.data.tags.get("group") == "retrain"]
    assert {run.info.run_id for run in runs} - {run.info.run_id for run in seeds} == trials_before  # untouched
    best = parent.data.tags["best_trial_number"]
    assert sorted(run.data.tags["seed"] for run in seeds) == ["0", "1"]
    for run in seeds:
        assert run.info.status == "FINISHED" and run.data.tags["retrain"] == "rt"
        assert run.info.run_name == f"rtfm-tiny-t{int(best):03d}-retrain seed={run.data.tags['seed']}"
        assert run.data.params["train.epochs"] == "2" and run.data.params["train.seed"] == run.data.tags["seed"]
        assert [m.step for m in client.get_metric_history(run.info.run_id, "val_loss")] == [1, 2]
    assert "retrain/rt" in {a.path for a in client.list_artifacts(parent.info.run_id, "retrain")}

    out = tmp_path / "report"
    assert report.main(["--sweep", SWEEP, "--out", str(out), "--tracking-uri", uri]) == 0
    markdown = (out / "report.md").read_text()
    assert "## Results on tiny" in markdown and f"| RTFM | val ({metric}) | t" in markdown
    assert "| RTFM | test-selected (cheat: best test AUC) | t" in markdown and "2 seeds (0,1)" in markdown
    val_row = next(line for line in markdown.splitlines() if line.startswith(f"| RTFM | val ({metric}) | t"))
    assert re.search(r"\| \d+\.\d \[\d+\.\d, \d+\.\d\] \| \d+\.\d \[\d+\.\d, \d+\.\d\] \|", val_row), val_row
    assert "### Optimism gap" in markdown and r"$\pm$" in (out / "report.tex").read_text()
    for name in ("scores_val.png", "roc_pr.png", "learning_curves.png", "learning_curves_rt.png",
                 "optuna_param_importances.png", "optuna_parallel_coordinate.png"):
        assert (out / SWEEP / name).stat().st_size > 1000, name
    logged = {a.path for a in client.list_artifacts(parent.info.run_id, "report")}
    logged |= {a.path for a in client.list_artifacts(parent.info.run_id, f"report/{SWEEP}")}
    assert {"report/report.md", f"report/{SWEEP}/scores_val.png",
            f"report/{SWEEP}/optuna_param_importances.html"} <= logged
