"""The prepared-data manifest: a sweep prepares once, its trials open the manifest without touching the dataset
(no list parsed, no feature file opened or listed, no ground truth rebuilt) and get the same data."""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import yaml

import vad.data.dataset
import vad.models.registry
import vad.prepare
from search.sweep.space import load_space
from search.sweep.trainable import TrialSetup, run_trial
from vad.builders import build_model, resolve_config
from vad.config import TrainConfig
from vad.prepare import open_prepared, prepare_data

BASE = {
    "data": {"dataset": "synthetic:tiny"},
    "model": {"name": "rtfm", "dropout": 0.7, "hidden_dim": 16, "head_dims": [16, 8]},
    "optim": {"lr": 1.0e-3, "weight_decay": 5.0e-4},
    "train": {"epochs": 1, "batch_per_class": 4, "steps_per_epoch": 2, "num_threads": 1},
}

_opened: list[str] | None = None


@pytest.fixture(autouse=True)
def own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A cache of this test's own: these tests touch the dataset's files and the caches' mtimes."""
    monkeypatch.setenv("VAD_CACHE_DIR", str(tmp_path / "cache"))


def _audit(event: str, args: tuple) -> None:
    if _opened is not None and event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
        _opened.append(os.fsdecode(args[0]))


sys.addaudithook(_audit)


@contextmanager
def opened_files() -> Iterator[list[str]]:
    """Every path opened (builtins ``open``, ``np.load``, ...) while the block runs."""
    global _opened
    _opened = []
    try:
        yield _opened
    finally:
        _opened = None


def feature_paths(prepared: vad.prepare.PreparedData) -> set[str]:
    videos = prepared.dataset.train + prepared.dataset.test
    return {str(file) for video in videos for file in video.files}


def forbid_dataset_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every path that reads the dataset itself fail loudly."""
    def refuse(*args, **kwargs):
        raise AssertionError("the dataset was read again")

    monkeypatch.setattr(vad.prepare, "prepare_data", refuse)
    monkeypatch.setattr(vad.prepare, "load_dataset", refuse)
    monkeypatch.setattr(vad.prepare, "load_ground_truth", refuse)
    monkeypatch.setattr(vad.data.dataset, "FeatureIndex", refuse)
    monkeypatch.setattr(os, "walk", refuse)


def test_open_prepared_reads_no_dataset_file_and_gives_the_same_data(monkeypatch):
    config = TrainConfig.from_dict(BASE)
    prepared = prepare_data(config)
    forbid_dataset_reads(monkeypatch)
    with opened_files() as opened:
        again = open_prepared(config)
    features, config_files = feature_paths(prepared), prepared.dataset.config
    assert not features & set(opened)
    assert not [path for path in opened if path.endswith(".videos.json")]  # file paths are read on demand only
    assert not {str(config_files.train_list), str(config_files.test_list), str(config_files.ground_truth)} & set(opened)
    assert set(again.seconds) == {"manifest"}
    assert again.describe() == prepared.describe()
    assert isinstance(again.train_cache.features, np.memmap)
    assert np.array_equal(again.train_cache.features, prepared.train_cache.features)
    assert np.array_equal(again.train_cache.labels, prepared.train_cache.labels)
    assert again.train_cache.video_ids == prepared.train_cache.video_ids
    assert np.array_equal(again.train_rows, prepared.train_rows) and np.array_equal(again.val_rows, prepared.val_rows)
    assert again.split == prepared.split
    assert np.array_equal(again.test.offsets, prepared.test.offsets)
    assert np.array_equal(again.test.features, prepared.test.features)
    assert again.test.video_ids == prepared.test.video_ids and again.test.classes == prepared.test.classes
    assert np.array_equal(again.ground_truth.labels, prepared.ground_truth.labels)
    assert np.array_equal(again.ground_truth.offsets, prepared.ground_truth.offsets)
    assert [(v.id, v.label, v.anomaly_class, v.files) for v in again.dataset.train + again.dataset.test] == [
        (v.id, v.label, v.anomaly_class, v.files) for v in prepared.dataset.train + prepared.dataset.test]
    assert again.dataset.test[-1] == prepared.dataset.test[-1] and len(again.dataset.test) == len(prepared.test)


def test_a_changed_list_or_cache_makes_the_manifest_stale(monkeypatch):
    config = TrainConfig.from_dict(BASE)
    prepared = prepare_data(config)
    assert set(open_prepared(config).seconds) == {"manifest"}
    calls = []
    original = vad.prepare.prepare_data
    monkeypatch.setattr(vad.prepare, "prepare_data", lambda c: calls.append(c) or original(c))
    train_list = prepared.dataset.config.train_list
    stat = train_list.stat()
    os.utime(train_list, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert "dataset" in open_prepared(config).seconds and len(calls) == 1  # re-prepared, manifest rewritten
    assert set(open_prepared(config).seconds) == {"manifest"}
    prepared.train_cache.path.with_suffix(".json").unlink()  # the cache is rebuilt under a new mtime
    stat = prepared.train_cache.path.stat()
    os.utime(prepared.train_cache.path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert "dataset" in open_prepared(config).seconds and len(calls) == 2


def test_other_data_settings_have_their_own_manifest(monkeypatch):
    config = TrainConfig.from_dict(BASE)
    prepare_data(config)
    other = config.with_overrides({"data.split_seed": 3})
    calls = []
    original = vad.prepare.prepare_data
    monkeypatch.setattr(vad.prepare, "prepare_data", lambda c: calls.append(c) or original(c))
    assert open_prepared(other).split.seed == 3 and len(calls) == 1
    assert open_prepared(config).split.seed == 0 and len(calls) == 1


def test_s3r_dictionary_comes_from_the_manifest(monkeypatch):
    config = TrainConfig.from_dict({**BASE, "model": {"name": "s3r"}})
    prepared = prepare_data(config)
    assert set(prepared.model_state) == {"dictionary"}
    # the ratio is the model's data option: another ratio is another manifest and another dictionary
    other = prepare_data(config.with_overrides({"data.dictionary_ratio": 0.8}))
    assert other.model_state["dictionary"].shape[0] > prepared.model_state["dictionary"].shape[0]
    forbid_dataset_reads(monkeypatch)
    monkeypatch.setitem(sys.modules, "vad.models.s3r.dictionary", None)  # importing it would fail
    again = open_prepared(config)
    assert np.array_equal(again.model_state["dictionary"], prepared.model_state["dictionary"])


def test_a_model_without_a_prepare_hook_has_no_state_and_its_own_manifest():
    rtfm = prepare_data(TrainConfig.from_dict(BASE))
    assert rtfm.model_state == {}
    s3r = TrainConfig.from_dict({**BASE, "model": {"name": "s3r"}})
    assert vad.prepare.data_settings(s3r).key(rtfm.dataset.config) != vad.prepare.data_settings(
        TrainConfig.from_dict(BASE)).key(rtfm.dataset.config)


def test_prepare_hook_sees_the_training_split_and_the_models_options(monkeypatch):
    from vad.models.registry import get_entry

    seen = []

    def fake_prepare(context):
        seen.append(context)
        return {"dictionary": np.ones((3, context.features.shape[-1]), dtype=np.float32)}

    entry = get_entry("s3r")
    monkeypatch.setitem(vad.models.registry._REGISTRY, "s3r", dataclasses.replace(entry, prepare=fake_prepare))
    config = TrainConfig.from_dict({**BASE, "model": {"name": "s3r"}, "data": {**BASE["data"],
                                                                              "dictionary_ratio": 0.7}})
    prepared = prepare_data(config)
    (context,) = seen
    assert context.options == {"dictionary_ratio": 0.7}
    assert np.array_equal(context.train_rows, prepared.train_rows)
    assert not set(context.normal_rows) & set(prepared.val_rows.tolist())
    assert (np.asarray(context.labels)[context.normal_rows] == 0).all() and len(context.normal_rows) > 0
    resolved = resolve_config(config, prepared)
    assert resolved.model["n_atoms"] == 3
    model = build_model(resolved, prepared, torch.device("cpu"))
    assert torch.equal(model.dictionary, torch.ones(3, prepared.feature_dim))


def test_a_trial_opens_the_sweeps_preparation_and_reads_no_feature_file(tmp_path, monkeypatch):
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(BASE))
    (tmp_path / "space.yaml").write_text(yaml.safe_dump({
        "base": "base.yaml", "search": {"num_samples": 2, "epochs": 1},
        "params": {"optim.weight_decay": {"loguniform": [1e-5, 1e-2]}}}))
    space = load_space(tmp_path / "space.yaml")
    prepared = prepare_data(space.sweep_config())  # the driver's one-off preparation
    reports = []
    fake_tune = SimpleNamespace(
        get_context=lambda: SimpleNamespace(get_trial_id=lambda: "abc_00000"),
        get_checkpoint=lambda: None,
        report=lambda metrics, checkpoint=None: reports.append(metrics),
        Checkpoint=SimpleNamespace(from_directory=lambda folder: folder),
    )
    monkeypatch.setattr("search.sweep.trainable.tune", fake_tune)
    forbid_dataset_reads(monkeypatch)
    with opened_files() as opened:
        run_trial({"optim.weight_decay": 1e-3}, TrialSetup(space, str(tmp_path / "experiment")))
    assert not feature_paths(prepared) & set(opened)
    assert [r["epoch"] for r in reports] == [1]
    assert Path(tmp_path / "experiment" / "trial_abc_00000" / "run" / "result.json").is_file()
