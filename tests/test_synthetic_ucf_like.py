"""The ``synthetic:ucf-like`` preset: the UCF layout through the real loaders, UCF-Crime's proportions, class
patterns that shift between training and test, label noise, determinism, and the benchmark script."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from vad.data import load_dataset
from vad.data.config import DatasetConfig
from vad.data.split import stratified_val_positions
from vad.data.synthetic import (
    PRESETS,
    UCF_CLASSES,
    UCF_LIKE_SHIFTED,
    _plan_ucf_like,
    _settings_for,
    _UcfLikeWorld,
    generate_synthetic,
)

PRESET = {key: value for key, value in PRESETS["ucf-like"].items()}


@pytest.fixture(scope="module")
def ucf_like(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The full preset (a few seconds), generated once for this module."""
    return generate_synthetic(tmp_path_factory.mktemp("ucf-like") / "data", name="ucf-like", **PRESET)


def test_the_preset_loads_through_the_real_loaders_with_ucf_crime_proportions(ucf_like: Path) -> None:
    dataset = load_dataset(ucf_like)
    config = dataset.config
    assert (config.layout, config.n_crops, config.feature_dim) == ("ucf", 2, 64)
    val = stratified_val_positions(dataset.train, config.val_fraction, 0)
    assert len(val) >= 150 and len(dataset.train) - len(val) >= 400
    assert len(dataset.test) >= 290
    assert 0.4 < np.mean([v.label for v in dataset.test]) < 0.55  # 140 / 290 abnormal, like the real test set
    assert {v.anomaly_class for v in dataset.test if v.label} == set(UCF_CLASSES)
    gt = np.load(config.ground_truth)
    lengths = [dataset.read_video(v).shape[1] for v in dataset.test]
    assert gt.size == 16 * sum(lengths)
    assert 0.05 <= gt.mean() <= 0.10  # UCF-Crime: 7.5% of the test frames are abnormal
    offsets = np.cumsum([0, *(16 * t for t in lengths)])
    abnormal_shares = [gt[offsets[i]:offsets[i + 1]].mean() for i, v in enumerate(dataset.test) if v.label]
    assert max(abnormal_shares) < 0.6 and np.median(abnormal_shares) < 0.35  # anomalies are a minority
    assert all(gt[offsets[i]:offsets[i + 1]].sum() == 0 for i, v in enumerate(dataset.test) if not v.label)


def test_some_class_patterns_differ_between_training_and_test() -> None:
    world = _UcfLikeWorld.create(64, 0)
    cosines = {name: float(world.train_patterns[name] @ world.test_patterns[name]) for name in UCF_CLASSES}
    assert cosines["Abuse"] < 0.3  # rotated by 75 degrees, as UCF-Crime's Abuse differs between its splits
    for name in UCF_CLASSES:
        expected = np.cos(np.radians(UCF_LIKE_SHIFTED.get(name, 0.0)))
        assert cosines[name] == pytest.approx(expected, abs=1e-9)
    between = [abs(float(world.train_patterns[a] @ world.train_patterns[b]))
               for a in UCF_CLASSES for b in UCF_CLASSES if a < b]
    assert max(between) < 0.95  # class-specific, not one direction for all


def test_the_shift_shows_in_the_written_features(ucf_like: Path) -> None:
    """The mean anomalous-minus-normal snippet of Abuse videos points another way in test than in training;
    an unshifted class keeps its direction (signs are random per video, so compare absolute projections)."""
    dataset = load_dataset(ucf_like)
    world = _UcfLikeWorld.create(64, PRESET.get("seed", 0))
    gt = np.load(dataset.config.ground_truth)
    offset, projections = 0, {"Abuse": [], "Explosion": []}
    for video in dataset.test:
        features = dataset.read_video(video).mean(axis=0)  # (T, C)
        frames = 16 * features.shape[0]
        labels = gt[offset:offset + frames].reshape(-1, 16).mean(axis=1) > 0.5
        offset += frames
        if video.anomaly_class in projections and labels.any() and (~labels).any():
            deviation = (features[labels].mean(axis=0) - features[~labels].mean(axis=0)) / world.mean
            deviation /= np.linalg.norm(deviation)
            name = video.anomaly_class
            projections[name].append((abs(deviation @ world.train_patterns[name]),
                                      abs(deviation @ world.test_patterns[name])))
    abuse = np.mean(projections["Abuse"], axis=0)
    explosion = np.mean(projections["Explosion"], axis=0)
    assert abuse[1] > abuse[0] + 0.1  # test anomalies follow the rotated pattern
    assert explosion[0] == pytest.approx(explosion[1])


def test_label_noise_only_in_training() -> None:
    rng = np.random.default_rng(np.random.SeedSequence([0, 100]))
    train, test = _plan_ucf_like(640, 300, 48, rng)
    flipped = [v for v in train if v.planted != v.abnormal]
    assert 0.01 * len(train) <= len(flipped) <= 0.06 * len(train)
    assert any(v.planted and not v.abnormal and v.events for v in flipped)  # a "normal" video with an anomaly
    assert all(v.planted == v.abnormal for v in test)


def _digest(folder: Path) -> str:
    sha = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        sha.update(str(path.relative_to(folder)).encode())
        sha.update(path.read_bytes())
    return sha.hexdigest()


def test_generation_is_deterministic(tmp_path: Path) -> None:
    small = {**PRESET, "videos": 40, "test_videos": 20}
    first = _digest(generate_synthetic(tmp_path / "a", **small).parent)
    assert _digest(generate_synthetic(tmp_path / "b", **small).parent) == first
    assert _digest(generate_synthetic(tmp_path / "c", **{**small, "seed": 1}).parent) != first
    settings = json.loads((tmp_path / "a" / "synthetic.json").read_text())
    assert settings["style"] == "ucf-like"


def test_the_simple_style_keeps_its_settings() -> None:
    """The demo's settings (and so its cache folder and files) do not change with the new style."""
    assert "style" not in _settings_for("demo", {})
    assert _settings_for("ucf-like", {})["style"] == "ucf-like"


@pytest.mark.parametrize("arguments", [{"style": "real"}, {"style": "ucf-like", "layout": "xd"}])
def test_bad_style_is_a_clear_error(tmp_path: Path, arguments: dict) -> None:
    with pytest.raises(ValueError, match="style"):
        generate_synthetic(tmp_path / "out", videos=4, n_crops=1, feature_dim=4, **arguments)


def test_dataset_yaml_sets_the_validation_share(ucf_like: Path) -> None:
    config = DatasetConfig.from_yaml(ucf_like)
    assert config.val_fraction == 0.25 and config.split_index == PRESET["videos"] // 2


@pytest.mark.slow
def test_benchmark_script_quick(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from benchmarks import realistic_data

    monkeypatch.setenv("VAD_CACHE_DIR", str(tmp_path / "cache"))
    results = tmp_path / "RESULTS.md"
    report = realistic_data.main(["--quick", "--epochs", "2", "--workdir", str(tmp_path / "runs"),
                                  "--json", str(tmp_path / "r.json"), "--results", str(results)])
    assert report["counts"]["test"] == 60 and len(report["runs"]) == 1
    run = report["runs"][0]
    assert len(run["history"]) == 2 and run["auc"][1] <= run["auc"][0] <= run["auc"][2]
    assert run["overfitting"]["min_epoch"] in (1, 2)
    assert "## realistic_data" in results.read_text()
    assert json.loads((tmp_path / "r.json").read_text())["acceptance"]["runs"] == 1
