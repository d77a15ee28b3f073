"""Every command's ``--help``: exit status 0, usage examples, no reStructuredText markup, a whole description; and
answered without importing torch, Ray, MLflow, Optuna or matplotlib (each command module is a thin parser that
imports its library after parsing; timings: README / the session report)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
COMMANDS = ["search.run", "search.retrain", "search.report", "vad.train", "vad.evaluate"]
HEAVY = ("ray", "mlflow", "optuna", "torch", "matplotlib")


def _help(module: str) -> str:
    done = subprocess.run([sys.executable, "-m", module, "--help"], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("module", COMMANDS)
def test_help_shows_examples_and_plain_text(module):
    text = _help(module)
    assert "examples:" in text
    examples = text.split("examples:", 1)[1]
    assert f"python -m {module} --" in examples
    assert "``" not in text
    description = text.split("\n\n")[1]  # after the usage block
    assert description.rstrip().endswith((".", ")", ":")), description


@pytest.mark.parametrize("module", COMMANDS)
def test_help_imports_no_heavy_library(module):
    """``python -m <module> --help`` as the interpreter runs it (``runpy``), then the modules it loaded."""
    code = (f"import runpy, sys\nsys.argv = [{module!r}, '--help']\ntry:\n"
            f"    runpy.run_module({module!r}, run_name='__main__', alter_sys=True)\nexcept SystemExit as exc:\n"
            f"    assert exc.code == 0, exc.code\n"
            f"print('heavy:' + ','.join(m for m in {HEAVY!r} if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "usage:" in done.stdout and done.stdout.strip().splitlines()[-1] == "heavy:", done.stdout[-300:]


def test_the_library_names_stay_importable_from_the_train_command():
    """``from vad.train import train`` (older code, benchmarks) still works: a lazy re-export of vad.training."""
    import vad.train
    import vad.training

    assert vad.train.train is vad.training.train and vad.train.TrainResult is vad.training.TrainResult
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        vad.train.nothing  # noqa: B018


def test_the_sweep_has_one_option_name_in_every_command():
    from search.retrain import parse_args as retrain_args
    from search.run import parse_args as run_args

    assert run_args(["--space", "s.yaml", "--sweep", "a"]).sweep == "a"
    assert run_args(["--space", "s.yaml", "--name", "a"]).sweep == "a"
    assert retrain_args(["--sweep", "a"]).sweep == "a"
    assert retrain_args(["--from", "a"]).sweep == "a"
