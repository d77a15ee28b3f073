"""What a sweep shows and leaves behind for its user: the progress bar, the next steps, tidy MLflow child runs and
an Optuna study that ``optuna.load_study`` opens."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from search.cli import description
from search.run import hide_password
from search.sweep.progress import SweepProgress
from search.sweep.tracking import PER_CLASS, logged_metrics, source_command, ui_url
from tests.sweep_helpers import REPO, base_config, sweep_runs, write_space

PLAIN = {"optim.scheduler": "none", "train.selection_rule": "min", "train.reference_loss": None}


def trial(number: int, status: str, value: float | None = None, epoch: int = 0) -> SimpleNamespace:
    result = {"best_val_loss": value, "epoch": epoch} if value is not None else {}
    return SimpleNamespace(trial_id=f"id{number}", experiment_tag=f"{number}_x", status=status, last_result=result)


def test_progress_counts_trials_and_names_the_best_so_far():
    out = io.StringIO()
    progress = SweepProgress(4, "best_val_loss", "min", 8, file=out)
    trials = [trial(1, "TERMINATED", 0.9, 8), trial(2, "RUNNING", 0.5, 3), trial(3, "RUNNING"), trial(4, "PENDING")]
    assert progress.counts(trials) == (1, 2)
    assert progress.best(trials) == (0.5, 2)
    assert progress.postfix(trials) == "2 running, best val_loss 0.5 (t002)"
    assert SweepProgress(4, "best_val_loss", "max", 8).best(trials) == (0.9, 1)

    progress.on_trial_complete(0, trials, trials[0])
    progress.on_trial_complete(0, trials, trials[0])  # Tune may call twice (complete, then the end): one line
    stopped = trial(2, "TERMINATED", 0.5, 3)
    progress.on_trial_complete(0, [trials[0], stopped], stopped)
    failed = trial(3, "ERROR", None)
    progress.on_trial_error(0, [trials[0], stopped, failed], failed)
    progress.on_experiment_end([trials[0], stopped, failed])
    text = out.getvalue()
    assert text.count("t001 finished: val_loss 0.9") == 1
    assert "t002 stopped early at epoch 3/8: val_loss 0.5" in text
    assert "t003 FAILED" in text
    assert "3/4" in text


def test_progress_pickles_its_settings_only():
    import pickle

    progress = SweepProgress(3, "best_val_loss", "min", 4, label="seeds")
    progress._open()
    copy = pickle.loads(pickle.dumps(progress))
    assert (copy.total, copy.objective, copy.mode, copy.epochs, copy.label) == (3, "best_val_loss", "min", 4, "seeds")
    assert copy._bar is None
    progress._bar.close()


def test_a_child_run_logs_the_curves_people_plot_not_the_noise():
    numbers = {"epoch": 3.0, "is_best": 1.0, "lr": 1e-3, "train_loss": 1.0, "train_eval_loss": 0.9, "val_loss": 1.1,
               "val_ref_loss": 1.1, "val_video_auc": 0.8, "selection_value": 1.1, "selected_value": 1.1,
               "selected_auc": 0.7, "selected_auc_Abuse": 0.6, "selected_false_alarm_rate": 0.1,
               "test_auc": 0.7, "test_loss": 0.5, "train_sparsity": 0.01, "epoch_time": 2.0, "videos_per_s": 50.0}
    assert set(logged_metrics(numbers, "val_loss", PLAIN)) == {
        "train_loss", "train_eval_loss", "val_loss", "val_ref_loss", "val_video_auc", "selected_auc", "test_auc"}
    own = {**PLAIN, "loss.sparsity_weight": 0.008, "train.reference_loss": {"sparsity_weight": 0.008}}
    assert "val_ref_loss" in logged_metrics(numbers, "val_loss", own)  # the comparable objective, always
    scheduled = {**own, "optim.scheduler": "cosine", "train.selection_rule": "ema", "loss.sparsity_weight": 0.0}
    assert {"lr", "selection_value", "val_ref_loss"} <= set(logged_metrics(numbers, "val_loss", scheduled))
    assert PER_CLASS.match("selected_auc_Abuse")["label"] == "Abuse"
    assert not PER_CLASS.match("selected_video_auc") and not PER_CLASS.match("test_auc")


def test_the_ui_link_opens_the_run_list_sorted_in_the_classic_view():
    url = ui_url("sqlite:////tmp/mlruns/mlflow.db", "7", "best_val_loss", "min")
    parts = urlsplit(url)
    assert url.startswith("http://127.0.0.1:5000/#/experiments/7?")
    query = parse_qs(parts.fragment.split("?", 1)[1])
    assert query == {"orderByKey": ["metrics.`best_val_loss`"], "orderByAsc": ["true"],
                     "workflowType": ["machine_learning"]}
    assert "`" not in url and unquote(url).count("`") == 2
    assert ui_url("http://mlflow:5000/", "1", "best_val_video_auc", "max").startswith("http://mlflow:5000/#/")
    assert "orderByAsc=false" in ui_url("http://mlflow:5000", "1", "m", "max")


def test_texts_shown_to_the_user():
    assert hide_password("postgresql://me:secret@db/optuna") == "postgresql://me:***@db/optuna"
    assert hide_password("sqlite:////a/optuna.db") == "sqlite:////a/optuna.db"
    assert description("``python -m x``: one.\nTwo lines.\n\nMore.") == "python -m x: one. Two lines."
    assert source_command().split()[0]


# ------------------------------------------------------------------------------------------------ end to end

@pytest.mark.slow
def test_a_sweeps_console_mlflow_runs_and_optuna_study(tmp_path):
    import optuna
    from mlflow import MlflowClient

    space = write_space(tmp_path, {
        "fixed": {"train.test_every_epoch": True},
        "search": {"sampler": "tpe", "num_samples": 4, "epochs": 3, "seed": 0},
        "scheduler": {"name": "asha", "grace_period": 1, "reduction_factor": 2},
        "resources": {"cpus_per_trial": 1, "max_concurrent": 2},
        "params": {"optim.lr": {"loguniform": [1.0e-4, 1.0e-2]}},
    }, base_config(seed=0))
    store = f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    env = {"VAD_CACHE_DIR": str(tmp_path / "cache"), "PATH": "/usr/bin:/bin", "HOME": str(Path.home())}
    done = subprocess.run([sys.executable, "-m", "search.run", "--space", str(space), "--sweep", "C",
                           "--storage", str(tmp_path / "store"), "--tracking-uri", store, "--confirm-top", "0"],
                          cwd=REPO, capture_output=True, timeout=1800, env=env)
    output = (done.stdout + done.stderr).decode()  # bytes: text mode would turn tqdm's \r into \n
    assert done.returncode == 0, output[-3000:]
    assert output.count("\n") < 40, output  # lines as a terminal shows them (tqdm redraws with \r)
    assert "trials: 4/4" in output and " running, best val_" in output
    assert "workflowType=machine_learning" in output and "search.retrain --sweep C" in output
    assert "search.report --sweep C" in output
    assert "== Status ==" not in output and "Result logdir" not in output
    assert "Creating initial MLflow database" not in output and "A new study created" not in output

    study = optuna.load_study(study_name="C", storage=f"sqlite:///{tmp_path}/store/C/search/optuna.db")
    assert f"Optuna: study 'C' in sqlite:///{tmp_path}/store/C/search/optuna.db" in output
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 4

    client = MlflowClient(tracking_uri=store)
    _, (parent,), children = sweep_runs(client, "C")
    assert len(children) == 4
    for child in children:
        keys = set(child.data.metrics)
        assert not keys & {"epoch", "is_best", "lr", "selected_value"} and len(keys) <= 25, sorted(keys)
        assert child.data.tags["mlflow.source.name"].startswith("python -m search.run --space")
        assert "epochs.csv" in {a.path for a in client.list_artifacts(child.info.run_id)}
    assert parent.data.metrics and all(key.startswith("sweep.") for key in parent.data.metrics)
    experiment = client.get_experiment_by_name("C")
    assert "tpe sampler, asha scheduler" in experiment.tags["mlflow.note.content"]


def test_notices_a_user_cannot_act_on_are_dropped_and_warnings_stay(caplog):
    import logging

    from search.sweep.session import quiet_loggers

    quiet_loggers()
    quiet_loggers()  # idempotent: one filter per logger
    slow = logging.getLogger("ray.tune.utils.util")
    assert len(slow.filters) == 1
    with caplog.at_level(logging.WARNING):
        slow.warning("The `callbacks.on_step_end` operation took 0.549 s, which may be a performance bottleneck.")
        slow.warning("something else")
    assert [r.getMessage() for r in caplog.records] == ["something else"]
    assert not logging.getLogger("mlflow.store.db.utils").isEnabledFor(logging.INFO)
    assert logging.getLogger("mlflow.store.db.utils").isEnabledFor(logging.WARNING)
