"""The training cache and the test feature cache: contents, reuse, keys, atomic and concurrent building."""

from __future__ import annotations

import multiprocessing
import os
import time
from pathlib import Path

import numpy as np
import pytest
from test_data_dataset import write_dataset

from vad.data import (
    DataError,
    FeatureDataset,
    build_train_cache,
    load_dataset,
    load_test_features,
    resample_segments,
)


@pytest.fixture(params=["ucf", "xd"])
def dataset(request: pytest.FixtureRequest, tmp_path: Path) -> FeatureDataset:
    return load_dataset(write_dataset(tmp_path, request.param, n_crops=3, dim=8))


@pytest.mark.parametrize("method", ["mean", "linear"])
def test_train_cache_holds_every_resampled_video(dataset: FeatureDataset, method: str) -> None:
    cache = build_train_cache(dataset, n_segments=32, method=method)
    assert cache.features.shape == (8 if dataset.config.layout == "ucf" else 4, 3, 32, 8)
    assert cache.features.dtype == np.float32 and not cache.features.flags.writeable
    assert isinstance(cache.features, np.memmap)
    assert cache.video_ids == [v.id for v in dataset.train] and cache.labels.dtype == np.int64
    assert cache.labels.tolist() == [v.label for v in dataset.train]
    assert cache.classes == [v.anomaly_class for v in dataset.train]
    for row, video in enumerate(dataset.train):
        expected = resample_segments(dataset.read_video(video).transpose(1, 0, 2), 32, method).transpose(1, 0, 2)
        assert cache.features[row].tobytes() == expected.tobytes()
    reopened = np.load(cache.path, mmap_mode="r")
    assert reopened.shape == cache.features.shape and cache.path.with_suffix(".json").is_file()


def test_train_cache_is_reused_and_keyed_by_its_inputs(dataset: FeatureDataset,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    first = build_train_cache(dataset)

    def no_reading(video: object) -> None:
        raise AssertionError("a cached dataset must not be read again")

    with monkeypatch.context() as patch:
        patch.setattr(dataset, "read_video", no_reading)
        again = build_train_cache(dataset)
    assert again.path == first.path and again.key == first.key
    other_settings = {build_train_cache(dataset, n_segments=16).key, build_train_cache(dataset, method="linear").key}
    assert first.key not in other_settings and len(other_settings) == 2
    # rewriting one feature file (new mtime) gives a new key and a new cache with the new values
    file = dataset.train[1].files[0]
    array = np.load(file)
    np.save(file, array + 1)
    stat = os.stat(file)
    os.utime(file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    changed = build_train_cache(dataset)
    assert changed.key != first.key and changed.path != first.path
    assert not np.array_equal(changed.features[1], first.features[1])
    np.testing.assert_array_equal(changed.features[0], first.features[0])


def test_a_failed_build_leaves_nothing_that_gets_reused(dataset: FeatureDataset, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VAD_CACHE_DIR", str(tmp_path / "own-cache"))
    original = dataset.read_video
    calls = []

    def failing(video: object) -> np.ndarray:
        calls.append(video)
        if len(calls) == 3:
            raise KeyboardInterrupt  # like a process killed mid-build
        return original(video)

    monkeypatch.setattr(dataset, "read_video", failing)
    with pytest.raises(KeyboardInterrupt):
        build_train_cache(dataset)
    folder = tmp_path / "own-cache" / "features"
    assert not [p for p in folder.iterdir() if not p.name.endswith(".lock")]
    monkeypatch.setattr(dataset, "read_video", original)
    cache = build_train_cache(dataset)
    assert cache.features.shape[0] == len(dataset.train)
    assert sorted(p.name for p in folder.iterdir() if not p.name.endswith(".lock")) == \
        sorted([cache.path.name, cache.path.with_suffix(".json").name])


def test_a_cache_whose_array_is_damaged_is_rebuilt(dataset: FeatureDataset) -> None:
    cache = build_train_cache(dataset)
    expected = np.array(cache.features)
    np.save(cache.path, np.zeros((1, 2), np.float32))
    np.testing.assert_array_equal(build_train_cache(dataset).features, expected)


def test_bad_feature_file_fails_the_build_with_its_name(tmp_path: Path) -> None:
    dataset = load_dataset(write_dataset(tmp_path, "ucf"))
    np.save(dataset.train[4].files[0], np.full((3, 2, 8), np.nan, np.float32))
    with pytest.raises(DataError, match=r"Normal_Videos001_x264_i3d.npy: video Normal_Videos001_x264 has 48 NaN"):
        build_train_cache(dataset)
    with pytest.raises(ValueError, match="method"):
        build_train_cache(dataset, method="max")


def _build_in_process(config_path: str, queue: multiprocessing.Queue, reads: multiprocessing.Value,
                      start: multiprocessing.Event) -> None:
    dataset = load_dataset(config_path)
    original = dataset.read_video

    def counted(video: object) -> np.ndarray:
        with reads.get_lock():
            reads.value += 1
        time.sleep(0.02)  # widen the window in which the builders overlap
        return original(video)

    dataset.read_video = counted
    start.wait()
    cache = build_train_cache(dataset)
    test = load_test_features(dataset)
    queue.put((str(cache.path), cache.key, float(np.asarray(cache.features).sum()), str(test.path)))


def test_concurrent_builders_share_one_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VAD_CACHE_DIR", str(tmp_path / "own-cache"))
    config = write_dataset(tmp_path, "ucf")
    context = multiprocessing.get_context("fork")
    queue, reads, start = context.Queue(), context.Value("i", 0), context.Event()
    workers = [context.Process(target=_build_in_process, args=(str(config), queue, reads, start)) for _ in range(3)]
    for worker in workers:
        worker.start()
    start.set()
    results = [queue.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    assert len(set(results)) == 1
    dataset = load_dataset(config)
    assert reads.value == len(dataset.train) + len(dataset.test)  # one process built each cache, the others waited
    folder = tmp_path / "own-cache" / "features"
    assert Path(results[0][0]).parent == folder
    assert sorted(p.suffix for p in folder.iterdir()) == [".json", ".json", ".lock", ".lock", ".npy", ".npy"]
    assert build_train_cache(dataset).path == Path(results[0][0])


def test_test_features_are_concatenated_with_offsets(dataset: FeatureDataset) -> None:
    test = load_test_features(dataset)
    lengths = [dataset.video_length(v) for v in dataset.test]
    assert test.lengths.tolist() == lengths
    assert test.offsets.tolist() == np.concatenate([[0], np.cumsum(lengths)]).tolist()
    assert test.features.shape == (sum(lengths), 3, 8) and not test.features.flags.writeable
    for index, video in enumerate(dataset.test):
        view = test.video(index)
        assert view.shape == (3, lengths[index], 8)
        np.testing.assert_array_equal(view, dataset.read_video(video))
    assert test.video_ids == [v.id for v in dataset.test] and test.labels.tolist() == [v.label for v in dataset.test]
    assert test.classes == [v.anomaly_class for v in dataset.test] and len(test) == len(dataset.test)
    assert load_test_features(dataset).path == test.path


def test_test_features_validate_every_file(tmp_path: Path) -> None:
    dataset = load_dataset(write_dataset(tmp_path, "xd"))
    np.save(dataset.test[1].files[1], np.zeros((11, 5), np.float32))
    with pytest.raises(DataError, match=r"v=ghi__#3_label_A__1.npy: crop of video v=ghi__#3_label_A has shape "
                                        r"\(11, 5\)"):
        load_test_features(dataset)
