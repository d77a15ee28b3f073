"""The Python API (``from search import run_sweep``): the same options as the command, a result object with the
trials as a DataFrame, the best config and where MLflow holds the runs."""

import subprocess
import sys

import pytest
from sweep_helpers import REPO, base_config, write_space

from search.api import command_line


def test_keyword_arguments_are_the_command_line_options():
    argv = command_line("s.yaml", sweep="S", num_samples=3, confirm_seeds=0, smoke_test=True, verbose=False,
                        gpus_per_trial=0.25, resume=True)
    assert argv == ["--space", "s.yaml", "--sweep", "S", "--num-samples", "3", "--confirm-seeds", "0",
                    "--smoke-test", "--gpus-per-trial", "0.25", "--resume"]
    assert command_line("s.yaml", resume="ray_results/S")[-2:] == ["--resume", "ray_results/S"]
    with pytest.raises(TypeError, match="unknown option.*num_trials"):
        command_line("s.yaml", num_trials=3)


def test_importing_search_stays_light():
    code = "import sys, search; print(any(m in sys.modules for m in ('ray', 'mlflow', 'torch', 'optuna')))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_a_refused_sweep_raises_the_commands_message(tmp_path):
    from search import SweepError, run_sweep

    space = write_space(tmp_path, {"search": {"metric": "test_auc", "epochs": 1, "num_samples": 2},
                                   "params": {"model.dropout": {"uniform": [0.3, 0.8]}}}, base_config())
    with pytest.raises(SweepError, match="--diagnostic"):
        run_sweep(space, storage=tmp_path / "store", tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")


@pytest.mark.slow
def test_run_sweep_returns_trials_best_config_and_experiment(tmp_path, monkeypatch):
    from search import run_sweep

    monkeypatch.setenv("VAD_CACHE_DIR", str(tmp_path / "cache"))
    space = write_space(tmp_path, {
        "search": {"sampler": "random", "num_samples": 2, "epochs": 2, "metric": "val_loss"},
        "scheduler": {"name": "fifo"}, "resources": {"cpus_per_trial": 1, "max_concurrent": 2},
        "confirm": {"top": 0}, "params": {"model.dropout": {"uniform": [0.3, 0.8]}},
    }, base_config())
    result = run_sweep(space, sweep="api", storage=tmp_path / "store",
                       tracking_uri=f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    assert result.finished and result.name == "api" and result.experiment_id
    assert list(result.trials["trial"]) and set(result.trials["status"]) <= {"completed", "early_stopped"}
    assert {"objective", "model.dropout"} <= set(result.trials.columns) and len(result.trials) == 2
    assert result.best_config["model"]["name"] == "rtfm" and result.best_config_path.is_file()
    assert result.confirmation is None
