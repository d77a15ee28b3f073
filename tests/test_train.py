"""Training end to end on synthetic data: learning, exact resume, divergence, selection, evaluation."""

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from vad.builders import epoch_batches
from vad.checkpoint import load_checkpoint
from vad.config import TrainConfig
from vad.data import BalancedBatchSampler
from vad.evaluate import main as evaluate_main
from vad.metrics.catalogue import frame_metric_names
from vad.training import train

TINY = {
    "data": {"dataset": "synthetic:tiny"},
    "model": {"name": "rtfm", "hidden_dim": 32, "head_dims": [16, 8]},
    "optim": {"lr": 1e-3},
    "train": {"epochs": 4, "batch_per_class": 4, "seed": 3},
}
TIMING = {"epoch_time", "videos_per_s"}


def tiny(**overrides) -> TrainConfig:
    return TrainConfig.from_dict(TINY).with_overrides(overrides)


def same_history(a: list[dict], b: list[dict]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert {k: v for k, v in x.items() if k not in TIMING} == {k: v for k, v in y.items() if k not in TIMING}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny")
    return train(tiny(), report=lambda m, o: None, out_dir=out)


def test_result_json_has_the_documented_fields(tiny_run):
    data = json.loads((Path(tiny_run.out_dir) / "result.json").read_text())
    assert data["status"] == "completed" and len(data["epochs"]) == 4
    for epoch in data["epochs"]:
        assert {"epoch", "train_loss", "val_loss", "val_video_auc", "val_video_ap", "epoch_time",
                "videos_per_s", "train_classification", "val_magnitude"} <= set(epoch)
    assert data["selected_epoch"] == min(data["epochs"], key=lambda e: e["val_loss"])["epoch"]
    assert set(data["test"]) >= {"auc", "ap", "pr_auc", "f1", "f1_macro", "precision", "recall", "accuracy",
                                 "test_loss", "train_loss"}
    assert data["config"]["model"]["feature_dim"] == 32 and data["config"]["model"]["dilations"] == [1, 2, 4]


def test_resume_equals_uninterrupted_training(tiny_run, tmp_path):
    part = tiny(**{"train.epochs": 2})
    train(part, report=lambda m, o: None, out_dir=tmp_path)
    resumed = train(tiny(), report=lambda m, o: None, out_dir=tmp_path, resume=tmp_path / "last.pt")
    same_history(resumed.epochs, tiny_run.epochs)
    a = load_checkpoint(f"{tiny_run.out_dir}/last.pt")["model"]
    b = load_checkpoint(tmp_path / "last.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.test == tiny_run.test


def test_same_seed_same_run_and_other_seed_differs(tiny_run, tmp_path):
    again = train(tiny(), report=lambda m, o: None, out_dir=tmp_path / "a")
    same_history(again.epochs, tiny_run.epochs)
    other = train(tiny(**{"train.seed": 4}), report=lambda m, o: None, out_dir=tmp_path / "b")
    assert other.epochs[0]["train_loss"] != tiny_run.epochs[0]["train_loss"]


def test_resume_refuses_a_different_config(tiny_run, tmp_path):
    from vad.config import ConfigError

    with pytest.raises(ConfigError, match="optim.lr"):
        train(tiny(**{"optim.lr": 0.1}), out_dir=tmp_path, resume=f"{tiny_run.out_dir}/last.pt")


def test_non_finite_loss_stops_with_a_clear_status(tmp_path):
    result = train(tiny(**{"optim.lr": 1e30}), report=lambda m, o: None, out_dir=tmp_path)
    assert result.status == "diverged" and "non-finite" in result.message
    assert json.loads((tmp_path / "result.json").read_text())["status"] == "diverged"


def test_test_selection_picks_the_epoch_with_the_best_test_auc(tmp_path):
    result = train(tiny(**{"train.selection": "test_auc"}), report=lambda m, o: None, out_dir=tmp_path)
    aucs = [e["test_auc"] for e in result.epochs]
    assert result.selected_epoch == 1 + int(np.nanargmax(aucs))
    assert math.isclose(result.test["auc"], max(aucs))


def test_report_is_called_every_epoch_after_the_checkpoint(tmp_path):
    seen = []

    def report(metrics, out_dir):
        assert load_checkpoint(out_dir / "last.pt")["epoch"] == metrics["epoch"]
        seen.append(metrics["epoch"])

    train(tiny(**{"train.epochs": 2, "train.evaluate_selected": "on_improvement"}), report=report, out_dir=tmp_path)
    assert seen == [1, 2]


def test_patience_stops_early(tmp_path):
    result = train(tiny(**{"train.epochs": 30, "train.patience": 1, "optim.lr": 1e-12, "train.min_delta": 1.0}),
                   report=lambda m, o: None, out_dir=tmp_path)
    assert result.status == "early_stopped" and len(result.epochs) < 30


def test_steps_per_epoch_walks_the_stream_of_sampler_passes():
    sampler = BalancedBatchSampler(np.array([0] * 10 + [1] * 6), batch_per_class=3, seed=0)
    stream = [b for p in range(1, 5) for b in sampler.epoch(p)]
    windows = [b for e in range(1, 6) for b in epoch_batches(sampler, e, steps_per_epoch=3)]
    assert all(np.array_equal(a, b) for a, b in zip(stream, windows)) and len(windows) == 15
    assert len(epoch_batches(sampler, 1, None)) == len(sampler) == 4


def test_evaluate_cli_reproduces_the_training_metrics(tiny_run, tmp_path):
    assert evaluate_main(["--checkpoint", f"{tiny_run.out_dir}/best.pt", "--out", str(tmp_path)]) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    for name, value in tiny_run.test.items():
        assert metrics[name] == pytest.approx(value, nan_ok=True, rel=1e-6, abs=1e-9), name
    assert (tmp_path / "scores.png").stat().st_size > 1000 and (tmp_path / "scores.npz").is_file()
    # re-scoring the saved per-video scores without the model gives the same frame metrics
    rescored = tmp_path / "rescored"
    assert evaluate_main(["--scores", str(tmp_path / "scores.npz"), "--dataset", "synthetic:tiny",
                          "--out", str(rescored)]) == 0
    again = json.loads((rescored / "metrics.json").read_text())
    assert again["auc"] == metrics["auc"] and again["f1"] == metrics["f1"]


def test_evaluate_prints_and_writes_bootstrap_intervals(tiny_run, tmp_path, capsys):
    out = tmp_path / "ci"
    assert evaluate_main(["--checkpoint", f"{tiny_run.out_dir}/best.pt", "--out", str(out), "--n-boot", "200"]) == 0
    printed = capsys.readouterr().out
    row = next(line for line in printed.splitlines() if line.startswith("| rtfm"))
    cells = [c.strip() for c in row.strip("|").split("|")][1:]
    with_interval = [c for c in cells if re.fullmatch(r"-?\d+\.\d+ \[-?\d+\.\d+, -?\d+\.\d+\]", c)]
    assert len(with_interval) == len(frame_metric_names()), row  # every frame metric, not the two losses
    metrics = json.loads((out / "metrics.json").read_text())
    for name in frame_metric_names():
        low, high = metrics[f"{name}_ci_low"], metrics[f"{name}_ci_high"]
        assert 0.0 <= low <= high <= 1.0, name
    assert metrics["auc_ci_high"] - metrics["auc_ci_low"] > 0  # videos differ: resampling them moves the AUC
    assert "200 replicates" in printed
    # seeded: the same call gives the same intervals; --n-boot 0 gives none
    assert evaluate_main(["--checkpoint", f"{tiny_run.out_dir}/best.pt", "--out", str(out), "--n-boot", "200"]) == 0
    assert json.loads((out / "metrics.json").read_text())["auc_ci_low"] == metrics["auc_ci_low"]
    assert evaluate_main(["--checkpoint", f"{tiny_run.out_dir}/best.pt", "--out", str(out), "--n-boot", "0"]) == 0
    assert not any(k.endswith("_ci_low") for k in json.loads((out / "metrics.json").read_text()))


def test_evaluate_original_weights_in_the_authors_layout(tiny_run, tmp_path):
    state = load_checkpoint(f"{tiny_run.out_dir}/best.pt")["model"]
    weights = tmp_path / "rtfm_authors.pkl"
    torch.save({f"module.{k}": v for k, v in state.items()}, weights)
    out = tmp_path / "orig"
    assert evaluate_main(["--original", "rtfm", str(weights), "--dataset", "synthetic:tiny", "--set",
                          "model.hidden_dim=32", "model.head_dims=[16,8]", "train.batch_per_class=4",
                          "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["auc"] == pytest.approx(tiny_run.test["auc"])


@pytest.mark.slow
def test_demo_config_learns_the_planted_anomalies(tmp_path):
    from pathlib import Path

    config = TrainConfig.from_yaml(Path(__file__).resolve().parents[1] / "configs" / "demo.yaml")
    result = train(config, report=lambda m, o: None, out_dir=tmp_path)
    assert result.status in {"completed", "early_stopped"}
    assert result.test["auc"] >= 0.75, result.test


def test_no_library_module_imports_a_command_line_module():
    """``vad.evaluate`` is imported by nothing; ``vad.train`` only for its ``train`` function."""
    import ast

    root = Path(__file__).resolve().parents[1]
    offenders = []
    for path in sorted([*root.glob("vad/**/*.py"), *root.glob("search/**/*.py")]):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names if alias.name in ("vad.evaluate", "vad.train")]
            elif isinstance(node, ast.ImportFrom) and node.module in ("vad.evaluate", "vad.train"):
                names = [f"{node.module}.{a.name}" for a in node.names
                         if (node.module, a.name) != ("vad.train", "train")]
            elif isinstance(node, ast.ImportFrom) and node.module == "vad":
                names = [f"vad.{a.name}" for a in node.names if a.name in ("evaluate", "train")]
            else:
                continue
            offenders += [f"{path.relative_to(root)}:{node.lineno}: {name}" for name in names]
    assert not offenders, offenders
