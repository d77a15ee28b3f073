"""The validation split: stratified, seeded, written once and reused, refused for another list; test untouched."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from test_data_dataset import write_dataset

from vad.data import (
    DataError,
    FeatureDataset,
    Video,
    build_train_cache,
    load_dataset,
    make_split,
    parse_list,
    with_labels,
)
from vad.data.split import stratified_val_positions

CLASSES = {"Abuse": 12, "Arson": 7, "Burglary": 3}


def _many_videos() -> list[tuple[str, int, int]]:
    abnormal = [(f"{cls}{i:03d}_x264", 1, 1) for cls, count in CLASSES.items() for i in range(1, count + 1)]
    normal = [(f"Normal_Videos{i:03d}_x264", 1, 0) for i in range(1, 31)]
    return abnormal + normal


@pytest.fixture
def dataset(tmp_path: Path) -> FeatureDataset:
    return load_dataset(write_dataset(tmp_path, "ucf", train=_many_videos(), n_crops=1, dim=2, val_fraction=0.2))


def test_split_is_stratified_seeded_and_leaves_the_test_set_alone(dataset: FeatureDataset) -> None:
    split = make_split(dataset, seed=3)
    ids = [v.id for v in dataset.train]
    assert sorted(split.train_ids + split.val_ids) == sorted(ids) and not set(split.train_ids) & set(split.val_ids)
    assert split.val_ids == [v for v in ids if v in split.val_ids]  # train-list order
    assert len(split.val_ids) == round(0.2 * len(ids)) == 10
    by_class = Counter(next(v.anomaly_class for v in dataset.train if v.id == vid) for vid in split.val_ids)
    for cls, count in {**CLASSES, "Normal": 30}.items():
        assert abs(by_class[cls] - 0.2 * count) < 1, (cls, by_class)
    assert not {v.id for v in dataset.test} & set(split.train_ids + split.val_ids)
    assert split.seed == 3 and split.val_fraction == 0.2 and split.list_sha256 == dataset.train_list_sha256
    assert make_split(dataset, seed=3, path=split.path.parent / "copy.json").val_ids == split.val_ids
    assert make_split(dataset, seed=4).val_ids != split.val_ids


def test_split_file_is_written_once_and_reused(dataset: FeatureDataset, tmp_path: Path) -> None:
    path = tmp_path / "split.json"
    split = make_split(dataset, val_fraction=0.25, seed=1, path=path)
    data = json.loads(path.read_text())
    assert data["train_ids"] == split.train_ids and data["val_ids"] == split.val_ids
    assert data["list_sha256"] == dataset.train_list_sha256 and data["seed"] == 1 and data["val_fraction"] == 0.25
    # a split file is authoritative: an edited (still valid) file is what comes back
    data["train_ids"], data["val_ids"] = data["train_ids"][1:], data["val_ids"] + data["train_ids"][:1]
    path.write_text(json.dumps(data))
    assert make_split(dataset, val_fraction=0.25, seed=1, path=path).val_ids == data["val_ids"]
    default = make_split(dataset)  # default fraction from the config, default file in the cache folder
    assert default.val_fraction == 0.2 and default.path.is_file() and default.path.parent.name == "splits"


def test_split_file_for_another_list_seed_or_fraction_is_refused(dataset: FeatureDataset, tmp_path: Path) -> None:
    path = tmp_path / "split.json"
    make_split(dataset, seed=0, path=path)
    with pytest.raises(DataError, match=r"split.json has seed 0 and val_fraction 0.2; asked for seed 1"):
        make_split(dataset, seed=1, path=path)
    with pytest.raises(DataError, match=r"asked for seed 0 and val_fraction 0.3"):
        make_split(dataset, val_fraction=0.3, path=path)
    list_path = dataset.config.train_list
    list_path.write_bytes(list_path.read_bytes().replace(b"\r\n", b"\n"))  # same videos, other bytes
    with pytest.raises(DataError, match=r"split file .*split.json was made for another train list"):
        make_split(load_dataset(dataset.config), seed=0, path=path)
    path.write_text(json.dumps({"train_ids": []}))
    with pytest.raises(DataError, match="is not a readable split"):
        make_split(dataset, path=path)


def test_split_file_that_does_not_partition_the_videos(dataset: FeatureDataset, tmp_path: Path) -> None:
    path = tmp_path / "split.json"
    make_split(dataset, path=path)
    data = json.loads(path.read_text())
    data["val_ids"].append(data["train_ids"][0])
    path.write_text(json.dumps(data))
    with pytest.raises(DataError, match="must partition the 52 training videos"):
        make_split(dataset, path=path)


def test_rows_of_the_cache(dataset: FeatureDataset) -> None:
    cache = build_train_cache(dataset, n_segments=4)
    split = make_split(dataset, seed=2)
    train_rows, val_rows = split.train_index(cache), split.val_index(cache)
    assert [cache.video_ids[r] for r in val_rows] == split.val_ids
    assert sorted(np.concatenate([train_rows, val_rows]).tolist()) == list(range(len(cache)))
    assert train_rows.dtype == np.int64


def test_each_label_reaches_validation_when_possible() -> None:
    videos = [Video(f"Abuse{i:03d}_x264", 1, "Abuse", ()) for i in range(1, 3)]
    videos += [Video(f"Normal_Videos{i:03d}_x264", 0, "Normal", ()) for i in range(1, 41)]
    positions = stratified_val_positions(videos, 0.05, seed=0)  # 2 val videos; 0.05 * 2 abnormal rounds to 0
    labels = Counter(videos[p].label for p in positions)
    assert labels[0] >= 1 and labels[1] == 1
    assert stratified_val_positions(videos, 0.0, seed=0).size == 0
    one_abnormal = videos[1:]
    assert all(one_abnormal[p].label == 0 for p in stratified_val_positions(one_abnormal, 0.3, seed=0))


@pytest.mark.reference
def test_stratification_on_the_real_ucf_training_list(reference_dir: Path) -> None:
    path = reference_dir / "RTFM" / "list" / "ucf-i3d.list"
    videos = [Video(v.id, v.label, v.anomaly_class, ()) for v in with_labels(parse_list(path, "ucf"), 810, path)]
    positions = stratified_val_positions(videos, 0.1, seed=0)
    assert len(positions) == 161
    per_class = Counter(videos[p].anomaly_class for p in positions)
    totals = Counter(v.anomaly_class for v in videos)
    assert all(abs(per_class[cls] - 0.1 * n) < 1 for cls, n in totals.items()), per_class
    assert np.array_equal(positions, stratified_val_positions(videos, 0.1, seed=0))
    assert not np.array_equal(positions, stratified_val_positions(videos, 0.1, seed=1))
