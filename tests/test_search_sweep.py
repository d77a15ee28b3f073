"""End-to-end sweeps on synthetic data with a real (shared, local) Ray: MLflow parent/child runs, ASHA, a grid,
a diverging trial, the reference objective and protocol tags, and the ``--smoke-test`` of every space file."""

import hashlib
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient
from ray.tune import ExperimentAnalysis
from sweep_helpers import REPO, base_config, sweep_runs, write_space

from search.run import main
from search.sweep.space import load_space

pytestmark = pytest.mark.slow
BASE = base_config(seed=0)
TERMINAL = {"FINISHED", "FAILED", "KILLED"}


@pytest.fixture(scope="module")
def ray_instance(tmp_path_factory):
    """One local Ray for the module (its workers use the tests' cache folder)."""
    import ray

    cache = tmp_path_factory.getbasetemp() / "vad-cache"
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"VAD_CACHE_DIR": str(cache)}})
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One MLflow store for the module (one experiment per sweep name)."""
    folder = tmp_path_factory.mktemp("mlflow")
    return f"sqlite:///{folder}/mlflow.db"


def sweep(space: Path, name: str, folder: Path, store: str, *extra: str) -> int:
    """``search.run`` on ``space``; without the seed confirmation unless ``extra`` asks for it (its own tests)."""
    confirm = () if "--confirm-top" in extra else ("--confirm-top", "0")
    return main(["--space", str(space), "--name", name, "--storage", str(folder / "store"),
                 "--tracking-uri", store, *confirm, *extra])


def runs_of(store: str, name: str) -> tuple:
    client = MlflowClient(tracking_uri=store)
    runs, parents, children = sweep_runs(client, name)
    assert len(parents) == 1 and len(parents) + len(children) == len(runs)
    return client, parents[0], children


def tune_trials(folder: Path, name: str) -> list:
    return ExperimentAnalysis(str(folder / "store" / name)).trials


def test_sweep_logs_a_parent_and_one_child_per_trial_and_asha_stops_trials(ray_instance, store, tmp_path, capsys):
    space = write_space(tmp_path, {
        "search": {"sampler": "tpe", "num_samples": 5, "epochs": 4, "seed": 3},
        "scheduler": {"name": "asha", "grace_period": 1, "reduction_factor": 2},
        "resources": {"cpus_per_trial": 1, "max_concurrent": 1},
        "params": {"optim.lr": {"loguniform": [1.0e-4, 1.0e-1]},
                   "model.dilations": {"choice": [[1, 2, 4], [1, 2]]}},
    }, BASE)
    assert sweep(space, "S", tmp_path, store, "--gpus-per-trial", "0.5") == 0
    out = capsys.readouterr().out
    assert "No GPU in the Ray cluster: trials run on the CPU" in out and "best_val_ref_loss" in out
    assert "test auc" not in out  # test metrics only with --show-test

    client, parent, children = runs_of(store, "S")
    assert parent.info.status == "FINISHED" and parent.data.tags["sweep"] == "S"
    assert {"git_commit", "split_sha256", "train_list_sha256", "train_cache_key", "dataset"} <= set(parent.data.tags)
    assert "protocol" not in parent.data.tags and parent.data.tags["trial_chosen_by"] == "val"
    parent_files = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"space", "config", "split", "summary.md", "summary.json", "best_config.yaml"} <= parent_files
    (split,) = client.list_artifacts(parent.info.run_id, "split")
    split_file = Path(client.download_artifacts(parent.info.run_id, split.path, str(tmp_path)))
    assert hashlib.sha256(split_file.read_bytes()).hexdigest() == parent.data.tags["split_sha256"]
    assert parent.data.tags["train_list_sha256"] != parent.data.tags["split_sha256"]

    trials = {t.trial_id: t for t in tune_trials(tmp_path, "S")}
    assert len(trials) == 5 and len(children) == 5
    assert {c.data.tags["trial_id"] for c in children} == set(trials)
    stopped = []
    for child in children:
        tags, params = child.data.tags, child.data.params
        assert child.info.status == "FINISHED" and tags["mlflow.parentRunId"] == parent.info.run_id
        assert child.info.run_name.startswith(f"rtfm-tiny-t{int(tags['trial_number']):03d} ")
        assert " lr=" in child.info.run_name and " dil=" in child.info.run_name
        config = trials[tags["trial_id"]].config
        assert float(params["optim.lr"]) == pytest.approx(config["optim.lr"])
        assert params["model.dilations"] == config["model.dilations"]  # JSON text of the list
        assert params["model.feature_dim"] == "32" and params["train.evaluate_selected"] == "on_improvement"
        history = client.get_metric_history(child.info.run_id, "val_loss")
        steps = [m.step for m in history]
        assert steps == list(range(1, int(tags["epochs_run"]) + 1))
        assert {"train_loss", "val_video_auc", "selected_auc", "selected_ap"} <= set(child.data.metrics)
        files = {a.path for a in client.list_artifacts(child.info.run_id)}
        assert {"checkpoint", "scores"} <= files
        if tags.get("stopped_by") == "asha":
            stopped.append(child)
            assert int(tags["epochs_run"]) < 4 and tags["train_status"] == "stopped"
        else:
            assert tags["train_status"] == "completed" and "result.json" in files
    assert stopped, "ASHA stopped no trial"
    baseline = [c for c in children if c.data.tags["baseline"] == "true"]
    assert len(baseline) == 1 and baseline[0].data.tags["trial_number"] == "1"
    assert float(baseline[0].data.params["optim.lr"]) == 1.0e-3

    best = yaml.safe_load((tmp_path / "store" / "S" / "search" / "best_config.yaml").read_text())
    assert best["data"]["dataset"] == "synthetic:tiny" and best["train"]["epochs"] == 4


HUGE = 1.0e38
"""A loss weight within the limits (finite, non-negative) that makes the weighted loss overflow float32."""


def test_grid_runs_exactly_its_grid_and_a_diverging_trial_fails_alone(ray_instance, store, tmp_path):
    space = write_space(tmp_path, {
        "search": {"sampler": "grid", "epochs": 2},
        "scheduler": {"name": "fifo"},
        "resources": {"cpus_per_trial": 1, "max_concurrent": 2},
        "params": {"loss.magnitude_weight": {"grid": [1.0e-4, HUGE]},  # the weighted loss overflows float32
                   "model.dropout": {"grid": [0.5, 0.7]}},
    }, BASE)
    assert load_space(space).search.num_samples == 4
    assert sweep(space, "G", tmp_path, store) == 0  # the sweep finishes despite the failures

    trials = tune_trials(tmp_path, "G")
    points = sorted((t.config["loss.magnitude_weight"], t.config["model.dropout"]) for t in trials)
    assert points == sorted((m, d) for m in (1.0e-4, HUGE) for d in (0.5, 0.7))
    by_status = {t.trial_id: t.status for t in trials}
    client, parent, children = runs_of(store, "G")
    assert len(children) == 4 and parent.info.status == "FINISHED"
    for child in children:
        diverged = float(child.data.params["loss.magnitude_weight"]) == HUGE
        assert by_status[child.data.tags["trial_id"]] == ("ERROR" if diverged else "TERMINATED")
        assert child.info.status == ("FAILED" if diverged else "FINISHED")
        assert child.data.tags["train_status"] == ("diverged" if diverged else "completed")
        if diverged:
            assert "not finite" in child.data.tags["error"] or "inf" in child.data.tags["error"]
    first = next(c for c in children if c.data.tags["trial_number"] == "1")
    assert first.data.tags["baseline"] == "true"
    assert (first.data.params["loss.magnitude_weight"], first.data.params["model.dropout"]) == ("0.0001", "0.7")


def test_a_finite_space_runs_each_point_once_and_ends_when_all_ran(ray_instance, store, tmp_path):
    space = write_space(tmp_path, {
        "search": {"sampler": "tpe", "num_samples": 5, "epochs": 1},
        "scheduler": {"name": "fifo"},
        "resources": {"cpus_per_trial": 1, "max_concurrent": 2},
        "params": {"model.dropout": {"choice": [0.5, 0.7]}},
    }, BASE)
    assert sweep(space, "F", tmp_path, store) == 0
    trials = tune_trials(tmp_path, "F")
    assert sorted(t.config["model.dropout"] for t in trials) == [0.5, 0.7]  # 2 points, not 5 trials
    client, parent, children = runs_of(store, "F")
    assert len(children) == 2 and parent.info.status == "FINISHED"


@pytest.mark.parametrize("space_file", sorted((REPO / "spaces").glob("*.yaml")), ids=lambda p: p.stem)
def test_smoke_test_runs_every_space(ray_instance, store, tmp_path, space_file):
    name = f"smoke-{space_file.stem}"
    assert sweep(space_file, name, tmp_path, store, "--smoke-test") == 0
    client, parent, children = runs_of(store, name)
    assert parent.info.status == "FINISHED" and parent.data.tags["smoke_test"] == "true"
    (child,) = children
    assert child.info.status == "FINISHED" and child.data.tags["baseline"] == "true"
    assert [m.step for m in client.get_metric_history(child.info.run_id, "val_loss")] == [1]
    assert "selected_auc" in child.data.metrics
    assert child.data.params["data.dataset"].startswith("synthetic:")


def test_a_sweep_over_the_loss_ranks_every_trial_on_the_reference_loss(ray_instance, store, tmp_path, capsys):
    space = write_space(tmp_path, {
        "search": {"sampler": "random", "num_samples": 3, "epochs": 3, "metric": "val_ref_loss"},
        "scheduler": {"name": "fifo"},
        "resources": {"cpus_per_trial": 1, "max_concurrent": 2},
        "params": {"loss.margin": {"uniform": [50.0, 200.0]}},
    }, BASE)
    assert sweep(space, "R", tmp_path, store, "--show-test") == 0
    out = capsys.readouterr().out
    assert "test auc" in out and "NOT used for choosing" in out

    client, parent, children = runs_of(store, "R")
    assert len(children) == 3 and "protocol" not in parent.data.tags
    margins = set()
    for child in children:
        tags, run_id = child.data.tags, child.info.run_id
        assert (tags["checkpoint_chosen_by"], tags["trial_chosen_by"], tags["group"]) == ("val", "val", "search")
        assert child.data.params["train.selection"] == "val_ref_loss"
        margins.add(child.data.params["loss.margin"])
        assert yaml.safe_load(child.data.params["train.reference_loss"])["margin"] == 100.0  # the base's, for all
        history = {m.step: m.value for m in client.get_metric_history(run_id, "val_ref_loss")}
        assert sorted(history) == [1, 2, 3]
        # the ranked value is val_ref_loss at the selected checkpoint (rule min)
        assert child.data.metrics["best_val_ref_loss"] == pytest.approx(history[int(tags["selected_epoch"])])
        assert child.data.metrics["best_val_ref_loss"] == pytest.approx(min(history.values()))
    assert len(margins) == 3


def test_a_test_selected_sweep_needs_diagnostic_and_is_tagged(ray_instance, store, tmp_path):
    space = write_space(tmp_path, {
        "search": {"sampler": "random", "num_samples": 2, "epochs": 2, "metric": "test_auc"},
        "scheduler": {"name": "fifo"},
        "resources": {"cpus_per_trial": 1, "max_concurrent": 2},
        "params": {"model.dropout": {"uniform": [0.3, 0.8]}},
    }, BASE)
    assert sweep(space, "D0", tmp_path, store) == 2  # refused before any trial
    assert sweep(space, "D", tmp_path, store, "--diagnostic") == 0
    client, parent, children = runs_of(store, "D")
    assert parent.data.tags["protocol"] == "test-selected"
    assert len(children) == 2
    for child in children:
        assert child.data.tags["protocol"] == "test-selected"
        assert (child.data.tags["checkpoint_chosen_by"], child.data.tags["trial_chosen_by"]) == ("test", "test")
        assert len(client.get_metric_history(child.info.run_id, "test_auc")) == 2
