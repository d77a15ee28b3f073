"""Values that pass a type check but fail later are refused before any work; failures end in one sentence.

Config and space values against the models' and losses' own limits, the validation split, the learning rate and
the loop's counts; a non-finite step at an epoch's end; checkpoints that are not ours, truncated or inconsistent;
a .npy with a foreign header; and every command's ``error:`` line (exit 2, a traceback only with ``--debug``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from test_data_dataset import write_dataset

from search.sweep.space import SpaceError, load_space
from vad.checkpoint import CheckpointError, load_checkpoint, load_model_state, save_checkpoint
from vad.cli_errors import error_line, run_main
from vad.coerce import ConfigError, Limit, limits_of
from vad.config import TrainConfig
from vad.data import DataError, load_dataset, make_split
from vad.engine import NonFiniteLossError, train_one_epoch
from vad.models import create_loss, create_model, list_models
from vad.models.registry import get_entry, read_checkpoint

ROOT = Path(__file__).resolve().parents[1]


def config(model: str = "rtfm", **overrides) -> TrainConfig:
    return TrainConfig.from_dict({"model": {"name": model}}).with_overrides(overrides)


# ---------------------------------------------------------------- config values


@pytest.mark.parametrize(("model", "key", "value", "words"), [
    ("rtfm", "model.dropout", 1.5, "must be in [0, 1)"),
    ("rtfm", "model.hidden_dim", 0, "must be >= 1"),
    ("rtfm", "model.dilations", [1, 0], "item 1 of [1, 0]"),
    ("rtfm", "loss.k", 0, "must be >= 1"),
    ("rtfm", "loss.sparsity_weight", -1e-3, "must be >= 0"),
    ("rtfm", "loss.smoothness", "wavy", "one of 'flat', 'per_video'"),
    ("mgfn", "model.attention_dropout", 1.0, "must be in [0, 1)"),
    ("mgfn", "model.dims", [], "needs at least 1 item"),
    ("mgfn", "loss.margin", -5, "must be >= 0"),
    ("mgfn", "loss.variant", "newest", "one of 'current', 'paper'"),
    ("s3r", "model.n_atoms", 0, "must be >= 1"),
    ("s3r", "model.feature_dim", 8, "must be >= 16"),
    ("s3r", "loss.macro_weight", -1, "must be >= 0"),
    ("mil", "model.hidden_dims", [512, 0], "item 1"),
    ("mil", "model.dropout", -0.1, "must be in [0, 1)"),
    ("mil", "loss.smoothness_weight", float("nan"), "finite"),
    ("s3r", "data.dictionary_ratio", 0, "must be > 0"),
])
def test_model_and_loss_limits_are_checked_when_the_config_is_built(model, key, value, words):
    with pytest.raises(ConfigError) as info:
        config(model, **{key: value})
    assert str(info.value).startswith(f"{key}: ") and words in str(info.value)


@pytest.mark.parametrize(("overrides", "key", "words"), [
    ({"model.dims": [64, 128]}, "model.dims", "one entry per stage in dims, depths and block_types; got 2, 3 and 3"),
    ({"model.heads": [1, 2]}, "model.heads", "one count per stage (3)"),
    ({"model.dims": [32, 128, 1024]}, "model.dims", "at least dim_head=64"),
    ({"model.focus_kernel": 4}, "model.focus_kernel", "must be odd"),
])
def test_relations_between_mgfn_arguments_are_checked_with_the_defaults_filled_in(overrides, key, words):
    with pytest.raises(ConfigError) as info:
        config("mgfn", **overrides)
    assert str(info.value).startswith(f"{key}: ") and words in str(info.value)
    consistent = config("mgfn", **{"model.dims": [64, 128], "model.depths": [1, 1],
                                   "model.block_types": ["glance", "focus"]})
    create_model("mgfn", **consistent.resolved(16, 2).model)  # what passes the check builds


def test_every_model_and_loss_declares_limits_that_its_defaults_satisfy():
    for name in list_models():
        entry = get_entry(name)
        for cls in (entry.model_cls, entry.loss_cls):
            limits = limits_of(cls)
            assert limits and all(isinstance(limit, Limit) for limit in limits.values()), cls
            resolved = config(name).resolved(64, 2)  # every default filled in and checked again
            assert resolved.model and resolved.loss
        assert "dropout" in limits_of(entry.model_cls)
        probability = limits_of(entry.model_cls)["dropout"]
        assert probability.problem(0.0) is None and probability.problem(1.0) and probability.problem(0.5) is None


@pytest.mark.parametrize(("key", "value", "words"), [
    ("optim.lr", "inf", "finite"),
    ("optim.lr", 0, "must be > 0"),
    ("optim.weight_decay", -1e-4, "must be >= 0"),
    ("optim.weight_decay", float("nan"), "finite"),
    ("train.epochs", 0, "must be >= 1"),
    ("train.steps_per_epoch", 0, "must be >= 1"),
    ("train.batch_per_class", 0, "must be >= 1"),
    ("train.threshold", 2, "must be in (0, 1)"),
    ("train.threshold", 0, "must be in (0, 1)"),
    ("train.patience", 0, "must be >= 1"),
    ("train.min_delta", -0.1, "must"),
    ("data.val_fraction", 0, "must be in (0, 1)"),
    ("data.val_fraction", 1, "must be in (0, 1)"),
    ("loss.k", 40, "data.n_segments=32"),
])
def test_section_values_are_checked_when_the_config_is_built(key, value, words):
    with pytest.raises(ConfigError) as info:
        config(**{key: value})
    assert str(info.value).startswith(f"{key}: ") and words in str(info.value)


def test_nulls_and_in_range_values_are_accepted():
    c = config(**{"train.steps_per_epoch": None, "train.patience": None, "model.non_local_inner": None,
                  "optim.lr": 1e-4, "train.threshold": 0.3, "data.val_fraction": 0.5, "loss.k": 32})
    assert c.train.steps_per_epoch is None and c.optim.lr == 1e-4 and c.k == 32


def test_a_config_file_error_names_the_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"model": {"name": "rtfm", "dropout": 1.5}}))
    with pytest.raises(ConfigError, match=r"c\.yaml: model\.dropout: must be in \[0, 1\)"):
        TrainConfig.from_yaml(path)


# ---------------------------------------------------------------- space values


def _space(folder: Path, params: dict) -> Path:
    (folder / "base.yaml").write_text(yaml.safe_dump({"model": {"name": "rtfm"}, "train": {"epochs": 3}}))
    path = folder / "space.yaml"
    path.write_text(yaml.safe_dump({"base": "base.yaml", "search": {"num_samples": 3, "epochs": 3},
                                    "params": params}))
    return path


@pytest.mark.parametrize(("params", "key", "words"), [
    ({"model.dropout": {"uniform": [0.5, 1.5]}}, "params.model.dropout", "must be in [0, 1)"),
    ({"model.dilations": {"choice": [[1, 2], [1, -2]]}}, "params.model.dilations", "item 1"),
    ({"loss.k": {"int": [1, 64]}}, "params.loss.k", "data.n_segments"),
    ({"loss.margin": {"uniform": [-10, 100]}}, "params.loss.margin", "must be >= 0"),
    ({"optim.lr": {"choice": [1e-3, 0]}}, "params.optim.lr", "must be > 0"),
])
def test_space_ranges_and_choices_outside_the_limits_are_refused_before_any_trial(tmp_path, params, key, words):
    with pytest.raises(SpaceError) as info:
        load_space(_space(tmp_path, params))
    text = str(info.value)
    assert text.startswith(str(tmp_path / "space.yaml")) and key in text and words in text


def test_a_space_inside_the_limits_loads(tmp_path):
    space = load_space(_space(tmp_path, {"model.dropout": {"uniform": [0.0, 0.9]}}))
    assert space.params["model.dropout"].values == (0.0, 0.9)


# ---------------------------------------------------------------- the validation split


def test_a_split_without_a_video_of_each_label_on_each_side_is_refused(tmp_path):
    videos = [("Abuse001_x264", 1, 1)] + [(f"Normal_Videos{i:03d}_x264", 1, 0) for i in range(1, 11)]
    dataset = load_dataset(write_dataset(tmp_path, "ucf", train=videos, n_crops=1, dim=2, val_fraction=0.2))
    with pytest.raises(ConfigError, match=r"data\.val_fraction: 0\.2 leaves the (training|validation) side "
                                          r"without a abnormal video .*1 abnormal"):
        make_split(dataset, seed=0, path=tmp_path / "split.json")
    assert not (tmp_path / "split.json").exists()
    with pytest.raises(ConfigError, match=r"data\.val_fraction: must be in \(0, 1\), got 0\.0"):
        make_split(dataset, val_fraction=0.0, path=tmp_path / "split0.json")


# ---------------------------------------------------------------- divergence on the last step


def _tiny_mil() -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = create_model("mil", feature_dim=4, n_crops=1, hidden_dims=(8, 4), dropout=0.0)
    features = torch.randn(4, 1, 6, 4)
    labels = torch.tensor([0, 0, 1, 1])
    return model, features, labels


def test_an_update_that_overflows_on_the_last_step_is_a_divergence():
    model, features, labels = _tiny_mil()
    criterion = create_loss("mil")

    def huge(out, batch_labels):  # a finite loss (1e30 fits float32) whose update overflows
        loss, terms = criterion(out, batch_labels)
        return loss * 1e30, terms

    optimizer = torch.optim.SGD(model.parameters(), lr=1e15)
    batches = [np.array([0, 2])]
    with pytest.raises(NonFiniteLossError, match="weights became non-finite after step 1"):
        train_one_epoch(model, huge, optimizer, batches, features, labels, device=torch.device("cpu"))


def test_a_non_finite_loss_on_the_last_step_is_caught_at_that_step_whatever_check_every():
    model, features, labels = _tiny_mil()
    criterion = create_loss("mil")
    calls = []

    def nan_on_third(out, batch_labels):
        calls.append(1)
        loss, terms = criterion(out, batch_labels)
        return (loss * float("nan") if len(calls) == 3 else loss), terms

    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    batches = [np.array([0, 2]), np.array([1, 3]), np.array([0, 3])]
    with pytest.raises(NonFiniteLossError, match="at step 3 of the epoch"):
        train_one_epoch(model, nan_on_third, optimizer, batches, features, labels, device=torch.device("cpu"),
                        check_every=25)
    assert all(bool(torch.isfinite(p).all()) for p in model.parameters())  # refused before the optimizer step


# ---------------------------------------------------------------- checkpoints


def test_random_bytes_are_not_a_checkpoint_of_this_toolkit(tmp_path):
    path = tmp_path / "best.pt"
    path.write_bytes(os.urandom(4096))
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    text = str(info.value)
    assert text.startswith(f"{path}: not a checkpoint of this toolkit") and "weights_only" not in text
    with pytest.raises(CheckpointError, match="not a PyTorch weights file"):
        read_checkpoint(path)


def test_a_truncated_checkpoint_says_so(tmp_path):
    path = save_checkpoint(tmp_path / "best.pt", {"model": create_model("mil", feature_dim=4).state_dict()})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"best\.pt: truncated or damaged") as info:
        load_checkpoint(path)
    assert "weights_only" not in str(info.value)


def test_a_pickled_object_is_refused_without_suggesting_to_unpickle(tmp_path):
    path = tmp_path / "obj.pt"
    torch.save({"format": "wsvad-checkpoint-1", "thing": Path("x")}, path)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert "not a checkpoint of this toolkit" in str(info.value) and "weights_only" not in str(info.value)


def test_weights_that_do_not_fit_the_stored_config_name_the_key():
    weights = create_model("mil", feature_dim=4, hidden_dims=(16, 4)).state_dict()
    model = create_model("mil", feature_dim=4, hidden_dims=(8, 4))
    with pytest.raises(CheckpointError) as info:
        load_model_state(model, weights, "runs/x/best.pt")
    text = str(info.value)
    assert text.startswith("runs/x/best.pt: the config stored in the checkpoint does not fit its weights")
    assert "layers.0.weight has shape [16, 4] in the weights, the config builds [8, 4]" in text


# ---------------------------------------------------------------- .npy headers


def test_random_bytes_in_a_feature_file_are_not_a_numpy_file(tmp_path):
    videos = [("Abuse001_x264", 1, 1), ("Normal_Videos001_x264", 1, 0)]
    dataset = load_dataset(write_dataset(tmp_path, "ucf", train=videos, n_crops=1, dim=2))
    file = dataset.train[0].files[0]
    file.write_bytes(os.urandom(256))
    with pytest.raises(DataError) as info:
        dataset.read_video(dataset.train[0])
    assert str(info.value).startswith(f"{file}: not a NumPy .npy file") and "pickled" not in str(info.value)
    np.save(file, np.zeros((3, 2), np.float32))
    header = bytearray(file.read_bytes())
    header[10:40] = os.urandom(30)  # the magic survives, the header is garbage
    file.write_bytes(bytes(header))
    with pytest.raises(DataError, match=f"{file}: cannot read the features of video Abuse001_x264"):
        dataset.read_video(dataset.train[0])


# ---------------------------------------------------------------- one error line per command


def test_run_main_turns_any_failure_into_one_line_and_status_2(capsys):
    def broken(argv):
        raise KeyError("no such thing")

    assert run_main(broken, []) == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 1 and "Traceback" not in err and "--debug" in err
    with pytest.raises(KeyError):
        run_main(broken, ["--debug"])


def test_exit_now_keeps_the_status_the_output_the_atexit_work_and_the_threads(tmp_path):
    script = f"""
import atexit, pathlib, sys, threading, time, logging
from vad.cli_errors import exit_now
out = pathlib.Path({str(tmp_path)!r})
logging.basicConfig(filename=out / "log.txt", level=logging.INFO)
logging.info("logged")  # flushed by logging's atexit handler
atexit.register(lambda: (out / "atexit.txt").write_text("ran"))
threading.Thread(target=lambda: (time.sleep(0.3), (out / "thread.txt").write_text("done"))).start()
sys.stdout.write("no newline, still buffered")
print("to stderr", file=sys.stderr, end="")
exit_now(3)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert result.returncode == 3
    assert result.stdout == "no newline, still buffered" and result.stderr == "to stderr"
    assert (tmp_path / "atexit.txt").read_text() == "ran" and (tmp_path / "thread.txt").read_text() == "done"
    assert "logged" in (tmp_path / "log.txt").read_text()


def test_error_lines_for_the_libraries_and_the_disk():
    class MlflowException(Exception):
        message = "RESOURCE_DOES_NOT_EXIST: Run 'abc' not found\nmore detail"

    assert error_line(MlflowException("x")).startswith("MLflow refused a request: RESOURCE_DOES_NOT_EXIST")
    assert "\n" not in error_line(MlflowException("x"))
    full = OSError(28, "No space left on device", "/data/sweep/state.json")
    assert error_line(full).startswith("No space left on device (/data/sweep/state.json)")
    assert error_line(FileNotFoundError(2, "No such file", "x.yaml")) == "file not found: x.yaml; check the path"

    class ReportError(Exception):
        pass

    refused = ReportError("no MLflow experiment 'x'\nknown: Default")
    assert error_line(refused, refusal=True) == "no MLflow experiment 'x'; known: Default"
    assert error_line(refused).startswith("unexpected ReportError")


def test_run_command_prints_a_refusal_as_its_sentence_and_debug_raises(capsys):
    import argparse

    from search.cli import run_command

    class Refused(Exception):
        pass

    def command(args):
        raise Refused("sweep 'x' is not in the store; pass --tracking-uri")

    assert run_command(command, argparse.Namespace(debug=False), (Refused,)) == 2
    assert capsys.readouterr().err == "error: sweep 'x' is not in the store; pass --tracking-uri\n"
    with pytest.raises(Refused):
        run_command(command, argparse.Namespace(debug=True), (Refused,))


def test_the_synthetic_generator_command_fails_in_one_line(tmp_path, capsys):
    from vad.data.synthetic import main

    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "other.txt").write_text("not ours")
    assert run_main(main, ["--out", str(tmp_path / "busy"), "--videos", "4"]) == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 1 and "Traceback" not in err


def _command(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_commands_print_one_error_line_and_exit_2_with_a_traceback_only_under_debug(tmp_path):
    bad = tmp_path / "best.pt"
    bad.write_bytes(os.urandom(2048))
    evaluate = _command("vad.evaluate", "--checkpoint", str(bad), "--out", str(tmp_path / "eval"))
    assert evaluate.returncode == 2, evaluate.stderr
    assert evaluate.stderr.count("error:") == 1 and "Traceback" not in evaluate.stderr
    assert "not a checkpoint of this toolkit" in evaluate.stderr

    train = _command("vad.train", "--config", "configs/demo.yaml", "--set", "data.val_fraction=0",
                     "--out", str(tmp_path / "run"))
    assert train.returncode == 2 and train.stderr.strip().splitlines() == [
        line for line in train.stderr.strip().splitlines() if line.startswith("error:")]
    assert "data.val_fraction" in train.stderr and "Traceback" not in train.stderr

    resume = _command("vad.train", "--config", "configs/demo.yaml", "--resume", str(bad), "--out",
                      str(tmp_path / "run"), "--debug")
    assert resume.returncode != 0 and "Traceback" in resume.stderr and "CheckpointError" in resume.stderr

    space = _space(tmp_path, {"model.dropout": {"uniform": [0.5, 1.5]}})
    sweep = _command("search.run", "--space", str(space), "--tracking-uri", f"sqlite:///{tmp_path}/m.db")
    assert sweep.returncode == 2 and sweep.stderr.count("error:") == 1 and "Traceback" not in sweep.stderr
    assert "params.model.dropout" in sweep.stderr
