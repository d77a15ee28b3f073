"""The search system's parts without a sweep: searcher order, persisted ASHA rungs, resource planning, sweep
naming and refusal, run names and metrics filtering, the results table and the best config."""

import json
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
import yaml
from ray.tune.search import Searcher

from search.adapters import optuna as ot_adapter
from search.run import main
from search.sweep.naming import run_name, short_value
from search.sweep.outcome import TrialOutcome, trial_outcome
from search.sweep.record import SweepStateError, new_sweep, resumed_sweep
from search.sweep.resources import NodeResources, ResourceError, plan_resources
from search.sweep.scheduler import PersistentASHA
from search.sweep.searcher import make_searcher
from search.sweep.space import Resources, load_space
from search.sweep.summary import TrialRow, best_config, ranked, results_table, table_caption, write_summary
from search.sweep.tracking import SweepExistsError, engine_metrics, open_sweep
from search.sweep.trainable import selected_value
from vad.config import TrainConfig

BASE = {
    "data": {"dataset": "synthetic:tiny"},
    "model": {"name": "rtfm", "dropout": 0.7, "hidden_dim": 16, "head_dims": [16, 8]},
    "optim": {"lr": 1.0e-3, "weight_decay": 5.0e-4},
    "train": {"epochs": 4, "batch_per_class": 4},
}


def make_space(folder: Path, params: dict, **sections):
    (folder / "base.yaml").write_text(yaml.safe_dump(BASE))
    path = folder / "space.yaml"
    path.write_text(yaml.safe_dump({"base": "base.yaml", "search": {"num_samples": 5, "epochs": 3},
                                    "params": params, **sections}))
    return load_space(path)


# ------------------------------------------------------------------------------------------------ searcher

def test_tpe_searcher_evaluates_the_baseline_first(tmp_path):
    space = make_space(tmp_path, {"optim.weight_decay": {"loguniform": [1e-5, 1e-2]},
                                  "model.dilations": {"choice": [[1, 2], [1, 2, 4]]}})
    searcher = make_searcher(space, "best_val_loss")
    first = searcher.suggest("t1")
    assert space.decode(first) == {"optim.weight_decay": 5.0e-4, "model.dilations": [1, 2, 4]}
    searcher.on_trial_complete("t1", {"best_val_loss": 1.0})
    second = space.decode(searcher.suggest("t2"))
    assert second["model.dilations"] in ([1, 2], [1, 2, 4]) and 1e-5 <= second["optim.weight_decay"] <= 1e-2


@pytest.mark.parametrize("sampler", ["tpe", "random"])
def test_finite_space_points_are_never_repeated_and_the_sweep_ends_when_all_ran(tmp_path, sampler):
    space = make_space(tmp_path, {"optim.weight_decay": {"choice": [5e-5, 5e-4, 5e-3]},
                                  "model.dilations": {"choice": [[1, 2], [1, 2, 4]]},
                                  "loss.k": {"int": [2, 3]}}, search={"sampler": sampler, "num_samples": 20})
    assert space.finite_size == 12 and space.trials_to_run == 12
    searcher = make_searcher(space, "best_val_loss")
    points, running = [], []
    for i in range(12):  # two trials in flight at a time: running points count as taken
        config = searcher.suggest(f"t{i}")
        points.append(json.dumps(space.decode(config), sort_keys=True))
        running.append(f"t{i}")
        if len(running) == 2:  # every fourth trial errors (a failed point is not tried again either)
            done = running.pop(0)
            searcher.on_trial_complete(done, None if i % 4 == 0 else {"best_val_loss": float(i % 5)}, error=i % 4 == 0)
    assert len(set(points)) == 12 and json.loads(points[0])["optim.weight_decay"] == 5e-4  # baseline first
    assert searcher.suggest("t12") == Searcher.FINISHED
    redrawn = [t for t in ot_adapter.study(searcher).get_trials() if t.user_attrs.get("duplicate_redrawn")]
    assert all(t.state == optuna.trial.TrialState.FAIL for t in redrawn)


def test_continuous_spaces_are_not_finite(tmp_path):
    space = make_space(tmp_path, {"optim.weight_decay": {"loguniform": [1e-5, 1e-2]},
                                  "model.dilations": {"choice": [[1, 2], [1, 2, 4]]}})
    assert space.finite_size is None and space.trials_to_run == space.search.num_samples


def test_grid_searcher_runs_every_point_once_baseline_first(tmp_path):
    space = make_space(tmp_path, {"optim.weight_decay": {"grid": [5e-5, 5e-4, 5e-3]},
                                  "model.dropout": {"grid": [0.5, 0.7]}}, search={"sampler": "grid", "epochs": 2})
    searcher = make_searcher(space, "best_val_loss")
    points = []
    for i in range(space.search.num_samples):
        points.append(space.decode(searcher.suggest(f"t{i}")))
        searcher.on_trial_complete(f"t{i}", {"best_val_loss": float(i)})
    assert points[0] == space.baseline == {"optim.weight_decay": 5e-4, "model.dropout": 0.7}
    assert sorted((p["optim.weight_decay"], p["model.dropout"]) for p in points) == sorted(
        (wd, do) for wd in (5e-5, 5e-4, 5e-3) for do in (0.5, 0.7))


# ------------------------------------------------------------------------------------------------ ASHA

def asha(path: Path) -> PersistentASHA:
    return PersistentASHA(path, metric="best_val_loss", mode="min", max_t=4, grace_period=1, reduction_factor=2)


def trial(trial_id: str) -> SimpleNamespace:
    return SimpleNamespace(trial_id=trial_id)


def report(scheduler: PersistentASHA, trial_id: str, epoch: int, value: float) -> str:
    return scheduler.on_trial_result(None, trial(trial_id), {"epoch": epoch, "best_val_loss": value})


def test_asha_rungs_and_stops_survive_a_restart(tmp_path):
    state = tmp_path / "asha.json"
    first = asha(state)
    for trial_id in ("a", "b", "orphan"):
        first.on_trial_add(None, trial(trial_id))
    assert report(first, "a", 1, 1.0) == "CONTINUE"
    assert report(first, "b", 1, 2.0) == "STOP"  # worse than the rung's median so far
    assert report(first, "orphan", 1, 0.5) == "CONTINUE"
    saved = json.loads(state.read_text())
    assert saved["stopped"] == {"b": 1.0}

    restored = asha(state)  # as Tune restores it: a fresh object, empty rungs, same file
    for trial_id in ("a", "b", "c"):
        restored.on_trial_add(None, trial(trial_id))
    assert report(restored, "b", 1, 2.0) == "STOP"  # replayed epoch of a trial stopped before the restart
    assert report(restored, "c", 1, 3.0) == "STOP"  # cut against the reloaded rung
    rung_one = {r["milestone"]: r["recorded"] for r in restored.rungs()}[1]
    assert set(rung_one) == {"a", "b", "c"}  # the orphan (unknown to the restored experiment) is forgotten

    fresh = asha(tmp_path / "other.json")
    fresh.on_trial_add(None, trial("c"))
    assert report(fresh, "c", 1, 3.0) == "CONTINUE"  # without the history nothing is cut


def test_asha_lets_the_last_epoch_finish_by_itself(tmp_path):
    scheduler = asha(tmp_path / "asha.json")
    for trial_id in ("a", "b"):
        scheduler.on_trial_add(None, trial(trial_id))
    assert [report(scheduler, "a", epoch, 1.0) for epoch in (1, 2, 3, 4)] == ["CONTINUE"] * 4
    assert [report(scheduler, "b", epoch, 0.5) for epoch in (1, 2, 3)] == ["CONTINUE"] * 3
    assert report(scheduler, "b", 4, 2.0) == "CONTINUE"  # worse than "a" at the last rung (epoch 4 = max_t)
    assert {r["milestone"]: r["recorded"] for r in scheduler.rungs()}[4] == {"a": -1.0, "b": -2.0}
    assert scheduler.stopped == {}


# ------------------------------------------------------------------------------------------------ resources

def test_no_gpu_means_cpu_trials_with_a_message():
    plan = plan_resources(Resources(2, 0.25, None), [NodeResources(cpus=2, gpus=0)])
    assert plan.resources.gpus_per_trial == 0 and not plan.on_gpu and plan.concurrent == 1
    assert "No GPU" in plan.messages[0] and "CPU" in plan.messages[0]


def test_fractional_gpus_pack_trials():
    plan = plan_resources(Resources(2, 0.25, None), [NodeResources(cpus=16, gpus=1)])
    assert plan.on_gpu and plan.concurrent == 4 and "4 per GPU" in plan.messages[-1]
    two_nodes = plan_resources(Resources(1, 0.5, None), [NodeResources(8, 2), NodeResources(8, 1)])
    assert two_nodes.concurrent == 6
    assert plan_resources(Resources(1, 0.25, 3), [NodeResources(16, 1)]).concurrent == 3
    assert plan_resources(Resources(4, 0.1, None), [NodeResources(8, 1)]).concurrent == 2  # CPU-bound


@pytest.mark.parametrize("resources, nodes, words", [
    (Resources(1, 2, None), [NodeResources(8, 1)], "--gpus-per-trial 2"),
    (Resources(4, 0, None), [NodeResources(2, 0)], "--cpus-per-trial 4"),
    (Resources(1, 0, None), [], "no alive node"),
])
def test_requests_that_would_pend_forever_are_errors(resources, nodes, words):
    with pytest.raises(ResourceError, match=words):
        plan_resources(resources, nodes)


# ------------------------------------------------------------------------------------------------ sweeps

def test_new_sweep_refuses_an_existing_name_and_resume_needs_a_sweep(tmp_path):
    space = make_space(tmp_path, {"model.dropout": {"uniform": [0.3, 0.8]}})
    paths = new_sweep(space, tmp_path / "store", "S")
    paths.experiment_dir.mkdir(parents=True, exist_ok=True)  # new_sweep made (and locked) it
    with pytest.raises(SweepStateError, match="already exists.*--resume"):
        new_sweep(space, tmp_path / "store", "S")
    with pytest.raises(SweepStateError, match="nothing to resume"):
        resumed_sweep(space, tmp_path / "store", "S", None)
    with pytest.raises(SweepStateError, match="--name"):
        new_sweep(space, tmp_path / "store", "bad name/..")


def test_cli_refuses_before_ray_starts(tmp_path, capsys):
    import ray

    space = make_space(tmp_path, {"model.dropout": {"uniform": [0.3, 0.8]}})
    (tmp_path / "store" / "S").mkdir(parents=True)
    assert main(["--space", str(space.path), "--name", "S", "--storage", str(tmp_path / "store")]) == 2
    assert "already exists" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"base": "base.yaml", "search": {"num_samples": 2},
                                   "params": {"model.dropot": {"uniform": [0.3, 0.8]}}}))
    assert main(["--space", str(bad), "--storage", str(tmp_path / "store")]) == 2
    error = capsys.readouterr().err
    assert str(bad) in error and "model.dropot" in error
    missing = tmp_path / "missing.yaml"
    missing.write_text(yaml.safe_dump({"base": "base.yaml", "dataset": "nowhere/dataset.yaml",
                                       "search": {"num_samples": 2},
                                       "params": {"model.dropout": {"uniform": [0.3, 0.8]}}}))
    assert main(["--space", str(missing), "--storage", str(tmp_path / "store")]) == 2
    assert "nowhere/dataset.yaml" in capsys.readouterr().err
    loss = tmp_path / "loss.yaml"
    loss.write_text(yaml.safe_dump({"base": "base.yaml", "search": {"num_samples": 2, "metric": "val_loss"},
                                    "params": {"loss.margin": {"uniform": [50.0, 200.0]}}}))
    assert main(["--space", str(loss), "--storage", str(tmp_path / "store")]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and str(loss) in error and "val_ref_loss" in error
    cheat = tmp_path / "cheat.yaml"
    cheat.write_text(yaml.safe_dump({"base": "base.yaml", "search": {"num_samples": 2, "metric": "test_auc"},
                                     "params": {"model.dropout": {"uniform": [0.3, 0.8]}}}))
    assert main(["--space", str(cheat), "--storage", str(tmp_path / "store")]) == 2
    assert "--diagnostic" in capsys.readouterr().err
    assert not ray.is_initialized()


def test_mlflow_refuses_a_second_sweep_of_the_same_name(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    target = open_sweep(uri, "S", resume=False)
    with pytest.raises(SweepExistsError, match="--resume"):
        open_sweep(uri, "S", resume=False)
    assert open_sweep(uri, "S", resume=True) == target


# ------------------------------------------------------------------------------------------------ naming, metrics

def test_run_names_are_readable():
    assert run_name("mgfn", "xd-violence", 3, {"optim.weight_decay": 5e-4, "model.dropout": 0.7,
                                               "model.depths": [3, 3, 2]}) == (
        "mgfn-xd-violence-t003 wd=0.0005 do=0.7 depths=3-3-2")
    assert short_value(0.123456789) == "0.1235"


def test_only_the_engines_metrics_go_to_mlflow():
    result = {"epoch": 3, "val_loss": 1.5, "is_best": True, "selected_auc": 0.7, "best_val_loss": 1.2,
              "selection_epoch": 3, "training_iteration": 3, "time_total_s": 9.0, "config": {"a": 1},
              "trial_id": "x", "date": "today", "done": False}
    assert engine_metrics(result, "val_loss") == {"epoch": 3.0, "val_loss": 1.5, "is_best": 1.0,
                                                  "selected_auc": 0.7}


# ------------------------------------------------------------------------------------------------ outcome, summary

def test_trials_rank_on_the_value_at_their_selected_checkpoint():
    # the engine's selected_value (the rule's value at the selected checkpoint) is what the sweep ranks on, even
    # when a later epoch's raw value is lower (min_delta, smoothing: the selector did not pick it)
    assert selected_value({"val_ref_loss": 0.5, "is_best": False, "selected_value": 0.9}, "val_ref_loss", 1.0) == 0.9
    assert selected_value({"val_ref_loss": 0.5, "selected_value": float("nan")}, "val_ref_loss", None) is None
    # an engine without selection values: the metric at the epoch the checkpoint selector flagged, else unchanged
    assert selected_value({"val_loss": 0.5, "is_best": False}, "val_loss", 0.8) == 0.8
    assert selected_value({"val_loss": 0.7, "is_best": True}, "val_loss", 0.8) == 0.7


def test_trial_outcomes(tmp_path):
    assert trial_outcome(tmp_path, {"epoch": 2, "selection_epoch": 1}, epochs=5).stopped_by == "asha"
    assert trial_outcome(tmp_path, {}, epochs=5, error="TrialDiverged: loss inf").status == "diverged"
    assert trial_outcome(tmp_path, {"epoch": 2}, epochs=5, interrupted=True).status == "interrupted"
    (tmp_path / "result.json").write_text(json.dumps({"status": "early_stopped", "selected_epoch": 2,
                                                      "epochs": [{}, {}, {}]}))
    outcome = trial_outcome(tmp_path, {"epoch": 3}, epochs=5)
    assert (outcome.status, outcome.epochs_run, outcome.selected_epoch) == ("early_stopped", 3, 2)


def test_table_ranks_by_the_metric_and_best_config_runs_with_vad_train(tmp_path):
    space = make_space(tmp_path, {"optim.weight_decay": {"loguniform": [1e-5, 1e-2]}})
    done = TrialOutcome("completed", 3, 2)
    rows = [TrialRow("aaa", 1, {"optim.weight_decay": 5e-4}, done, 1.5, {"auc": 0.6}),
            TrialRow("bbb", 2, {"optim.weight_decay": 1e-3}, done, 1.2, {"auc": 0.7}),
            TrialRow("ccc", 3, {"optim.weight_decay": 2e-3}, TrialOutcome("diverged", 1, None), None, {})]
    assert [r.trial_id for r in ranked(rows, "min")] == ["bbb", "aaa", "ccc"]
    table = results_table(rows, space).splitlines()
    assert "best_val_ref_loss" in table[0] and "t002" in table[1] and "diverged" in table[3]
    files = write_summary(tmp_path / "out", rows, space, "S")
    config = TrainConfig.from_yaml(files["best_config.yaml"])
    assert config.optim.weight_decay == 1e-3 and config.train.epochs == 3
    assert config.data.dataset == "synthetic:tiny" and config.train.evaluate_selected == "end"
    # the best config selects as the sweep did, and scores val_ref_loss with the sweep's reference loss
    assert config.train.selection == "val_ref_loss" and config.train.reference_loss["margin"] == 100.0
    assert json.loads(files["summary.json"].read_text())["best_trial_id"] == "bbb"
    assert best_config(space, rows[0])["optim"]["weight_decay"] == 5e-4


def test_the_table_shows_validation_metrics_and_test_metrics_only_when_asked(tmp_path):
    space = make_space(tmp_path, {"optim.weight_decay": {"loguniform": [1e-5, 1e-2]}})
    done = TrialOutcome("completed", 3, 2)
    rows = [TrialRow("aaa", 1, {"optim.weight_decay": 5e-4}, done, 1.5, {"auc": 0.6123},
                     {"val_loss": 1.25, "val_video_auc": 0.875}),
            TrialRow("bbb", 2, {"optim.weight_decay": 1e-3}, done, 1.2, {"auc": 0.7321}, {"val_loss": 1.5})]
    plain = results_table(rows, space)
    header = plain.splitlines()[0]
    assert "val_video_auc" in header and "val_loss" in header and "test" not in header
    assert "0.8750" in plain and "0.6123" not in plain and "0.7321" not in plain
    assert "NOT used for choosing" not in table_caption(space)
    shown = results_table(rows, space, show_test=True)
    assert "test auc" in shown.splitlines()[0] and "0.6123" in shown and "0.7321" in shown
    assert "NOT used for choosing" in table_caption(space, show_test=True)
    summary = write_summary(tmp_path / "out", rows, space, "S")["summary.md"].read_text()
    assert "0.6123" not in summary and "val_video_auc" in summary
    summary = write_summary(tmp_path / "out", rows, space, "S", show_test=True)["summary.md"].read_text()
    assert "0.6123" in summary and "NOT used for choosing" in summary
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["trial_chosen_by"] == "val"


def test_a_test_selected_sweep_says_so_in_its_table_and_best_config(tmp_path):
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(BASE))
    path = tmp_path / "diag.yaml"
    path.write_text(yaml.safe_dump({"base": "base.yaml", "search": {"num_samples": 2, "metric": "test_auc"},
                                    "params": {"model.dropout": {"uniform": [0.3, 0.8]}}}))
    space = load_space(path, diagnostic=True)
    rows = [TrialRow("aaa", 1, {"model.dropout": 0.7}, TrialOutcome("completed", 3, 2), 0.8, {"auc": 0.8})]
    assert "TEST-SELECTED" in table_caption(space)
    files = write_summary(tmp_path / "out", rows, space, "S")
    assert "TEST-SELECTED" in files["summary.md"].read_text()
    assert "TEST-SELECTED" in files["best_config.yaml"].read_text().splitlines()[0]
    assert json.loads(files["summary.json"].read_text())["protocol"] == "test-selected"


def test_the_split_hash_is_the_split_files_and_the_list_hash_has_its_own_name():
    import hashlib

    from vad.prepare import prepare_data

    config = TrainConfig.from_dict({**BASE, "train": {"epochs": 1}})
    facts = prepare_data(config).describe()
    split_file = Path(str(facts["split_file"]))
    assert facts["split_sha256"] == hashlib.sha256(split_file.read_bytes()).hexdigest()
    assert facts["train_list_sha256"] == json.loads(split_file.read_text())["list_sha256"]
    assert facts["split_sha256"] != facts["train_list_sha256"]
