"""The test features, cached like the training cache but at full length: all test videos concatenated along time
into one ``(sum T, N, C)`` float32 array on disk (memory-mapped read-only) plus per-video offsets."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from vad.data.cache_io import (
    cache_dir,
    file_lock,
    file_signatures,
    inputs_key,
    read_json,
    slug,
    temp_path,
    write_json_atomic,
)
from vad.data.dataset import FeatureDataset
from vad.data.errors import DataError

FORMAT_VERSION = 1


@dataclass(frozen=True)
class TestFeatures:
    """Test videos in list order: ``features`` ``(sum T_i, N, C)`` memmap, ``offsets`` ``(V+1,)`` snippet offsets."""

    __test__ = False  # not a pytest test class

    features: np.ndarray
    offsets: np.ndarray
    video_ids: list[str]
    labels: np.ndarray
    """``(V,)`` int64, 0 normal / 1 abnormal."""
    classes: list[str | None]
    path: Path
    key: str

    @property
    def lengths(self) -> np.ndarray:
        """``(V,)`` int64 snippets per test video."""
        return np.diff(self.offsets)

    def video(self, index: int) -> np.ndarray:
        """``(N, T_i, C)`` read-only view of test video ``index``."""
        return self.features[self.offsets[index]:self.offsets[index + 1]].transpose(1, 0, 2)

    def __len__(self) -> int:
        return len(self.video_ids)


def load_test_features(dataset: FeatureDataset) -> TestFeatures:
    """Build the test cache once (under a lock; concurrent callers wait and reuse), then just open it."""
    config = dataset.config
    files = [file for video in dataset.test for file in video.files]
    key = inputs_key({
        "format": FORMAT_VERSION, "kind": "test", "list_sha256": dataset.test_list_sha256,
        "files": file_signatures(files), "layout": config.layout, "n_crops": config.n_crops,
        "feature_dim": config.feature_dim,
    })
    path = cache_dir("features") / f"{slug(config.name)}-test-{key[:20]}.npy"
    cache = _open(dataset, path, key)
    if cache is None:
        with file_lock(path):
            cache = _open(dataset, path, key)
            if cache is None:
                _build(dataset, path, key)
                cache = _open(dataset, path, key)
    if cache is None:  # pragma: no cover - only if the file vanished between writing and reading
        raise DataError(f"test feature cache {path} could not be opened after building it")
    return cache


def _open(dataset: FeatureDataset, path: Path, key: str) -> TestFeatures | None:
    meta = read_json(path.with_suffix(".json"))
    ids = [video.id for video in dataset.test]
    if meta is None or meta.get("key") != key or meta.get("video_ids") != ids or not path.is_file():
        return None
    offsets = np.asarray(meta.get("offsets", []), dtype=np.int64)
    try:
        features = np.load(path, mmap_mode="r")
    except (OSError, ValueError):
        return None
    config = dataset.config
    if (features.dtype != np.float32 or len(offsets) != len(ids) + 1
            or features.shape != (int(offsets[-1]), config.n_crops, config.feature_dim)):
        return None
    labels = np.array([video.label for video in dataset.test], dtype=np.int64)
    classes = [video.anomaly_class for video in dataset.test]
    return TestFeatures(features, offsets, ids, labels, classes, path, key)


def _build(dataset: FeatureDataset, path: Path, key: str) -> None:
    config = dataset.config
    lengths = [dataset.video_length(video) for video in dataset.test]  # file headers only
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    tmp = temp_path(path)
    try:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32,
                                        shape=(int(offsets[-1]), config.n_crops, config.feature_dim))
        for index, video in enumerate(tqdm(dataset.test, desc=f"test features ({config.name})", unit="video",
                                           disable=None)):
            features = dataset.read_video(video)  # (N, T, C)
            if features.shape[1] != lengths[index]:
                raise DataError(f"{video.files[0]}: video {video.id} changed while the test cache was built "
                                f"({lengths[index]} snippets, then {features.shape[1]})")
            out[offsets[index]:offsets[index + 1]] = features.transpose(1, 0, 2)
        out.flush()
        del out
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    write_json_atomic(path.with_suffix(".json"), {
        "format": FORMAT_VERSION, "key": key, "dataset": config.name, "offsets": offsets.tolist(),
        "video_ids": [video.id for video in dataset.test],
        "labels": [video.label for video in dataset.test],
        "classes": [video.anomaly_class for video in dataset.test],
    })
