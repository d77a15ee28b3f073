"""The training cache: every training video resampled once into one contiguous float32 array on disk.

``(V, N, n_segments, C)`` rows in train-list order, memory-mapped read-only, so many trials share one copy
through the page cache instead of re-reading thousands of feature files. Keyed by a hash of the list bytes,
each feature file's (name, size, mtime_ns), the resampling settings, crops, width and the format version.
"""

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
from vad.data.resample import METHODS, resample_segments

FORMAT_VERSION = 1


@dataclass(frozen=True)
class TrainCache:
    """The resampled training videos: ``features`` ``(V, N, n_segments, C)`` float32 read-only memmap."""

    features: np.ndarray
    labels: np.ndarray
    """``(V,)`` int64, 0 normal / 1 abnormal."""
    video_ids: list[str]
    classes: list[str | None]
    path: Path
    """The ``.npy`` file (its JSON meta sits next to it, ``.json``)."""
    key: str
    n_segments: int
    method: str

    def __len__(self) -> int:
        return len(self.video_ids)


def build_train_cache(dataset: FeatureDataset, n_segments: int = 32, method: str = "mean") -> TrainCache:
    """Build the cache once (under a lock; concurrent callers wait and reuse), then just open it."""
    if method not in METHODS:
        raise ValueError(f"method: {method!r} is not one of {', '.join(METHODS)}")
    if not isinstance(n_segments, int) or n_segments < 1:
        raise ValueError(f"n_segments: expected a positive integer, got {n_segments!r}")
    config = dataset.config
    files = [file for video in dataset.train for file in video.files]
    key = inputs_key({
        "format": FORMAT_VERSION, "kind": "train", "list_sha256": dataset.train_list_sha256,
        "files": file_signatures(files), "n_segments": n_segments, "method": method, "layout": config.layout,
        "n_crops": config.n_crops, "feature_dim": config.feature_dim,
    })
    path = cache_dir("features") / f"{slug(config.name)}-train-{method}{n_segments}-{key[:20]}.npy"
    cache = _open(dataset, path, key, n_segments, method)
    if cache is None:
        with file_lock(path):
            cache = _open(dataset, path, key, n_segments, method)
            if cache is None:
                _build(dataset, path, key, n_segments, method)
                cache = _open(dataset, path, key, n_segments, method)
    if cache is None:  # pragma: no cover - only if the file vanished between writing and reading
        raise DataError(f"train cache {path} could not be opened after building it")
    return cache


def _expected_shape(dataset: FeatureDataset, n_segments: int) -> tuple[int, int, int, int]:
    config = dataset.config
    return (len(dataset.train), config.n_crops, n_segments, config.feature_dim)


def _open(dataset: FeatureDataset, path: Path, key: str, n_segments: int, method: str) -> TrainCache | None:
    meta = read_json(path.with_suffix(".json"))
    ids = [video.id for video in dataset.train]
    if meta is None or meta.get("key") != key or meta.get("video_ids") != ids or not path.is_file():
        return None
    try:
        features = np.load(path, mmap_mode="r")
    except (OSError, ValueError):
        return None
    if features.shape != _expected_shape(dataset, n_segments) or features.dtype != np.float32:
        return None
    labels = np.array([video.label for video in dataset.train], dtype=np.int64)
    classes = [video.anomaly_class for video in dataset.train]
    return TrainCache(features, labels, ids, classes, path, key, n_segments, method)


def _build(dataset: FeatureDataset, path: Path, key: str, n_segments: int, method: str) -> None:
    tmp = temp_path(path)
    try:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=_expected_shape(dataset, n_segments))
        for row, video in enumerate(tqdm(dataset.train, desc=f"train cache ({dataset.config.name})", unit="video",
                                         disable=None)):
            features = dataset.read_video(video)  # (N, T, C)
            out[row] = resample_segments(features.transpose(1, 0, 2), n_segments, method).transpose(1, 0, 2)
        out.flush()
        del out
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    write_json_atomic(path.with_suffix(".json"), {
        "format": FORMAT_VERSION, "key": key, "dataset": dataset.config.name, "n_segments": n_segments,
        "method": method, "shape": list(_expected_shape(dataset, n_segments)),
        "video_ids": [video.id for video in dataset.train],
        "labels": [video.label for video in dataset.train],
        "classes": [video.anomaly_class for video in dataset.train],
    })
