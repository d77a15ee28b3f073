"""The training cache: every training video resampled once into one contiguous float32 array on disk.

``(V, N, n_segments, C)`` rows in train-list order, memory-mapped read-only, so many trials share one copy
through the page cache instead of re-reading thousands of feature files. Keyed by a hash of the list bytes,
each feature file's (name, size, mtime_ns), the resampling settings, crops, width and the format version.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
from tqdm import tqdm

from vad.data.array_cache import open_array, open_or_build, video_facts, write_array
from vad.data.cache_io import cache_dir, file_signatures, inputs_key, slug
from vad.data.dataset import FeatureDataset
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
    return open_or_build(path, partial(_open, dataset, path, key, n_segments, method),
                         partial(_build, dataset, path, key, n_segments, method), "train cache")


def _expected_shape(dataset: FeatureDataset, n_segments: int) -> tuple[int, int, int, int]:
    config = dataset.config
    return (len(dataset.train), config.n_crops, n_segments, config.feature_dim)


def _open(dataset: FeatureDataset, path: Path, key: str, n_segments: int, method: str) -> TrainCache | None:
    opened = open_array(path, key, dataset.train)
    if opened is None:
        return None
    _, features = opened
    if features.shape != _expected_shape(dataset, n_segments) or features.dtype != np.float32:
        return None
    ids, labels, classes = video_facts(dataset.train)
    return TrainCache(features, labels, ids, classes, path, key, n_segments, method)


def _build(dataset: FeatureDataset, path: Path, key: str, n_segments: int, method: str) -> None:
    def fill(out: np.ndarray) -> None:
        for row, video in enumerate(tqdm(dataset.train, desc=f"train cache ({dataset.config.name})", unit="video",
                                         disable=None)):
            features = dataset.read_video(video)  # (N, T, C)
            out[row] = resample_segments(features.transpose(1, 0, 2), n_segments, method).transpose(1, 0, 2)

    shape = _expected_shape(dataset, n_segments)
    write_array(path, shape, fill, {"format": FORMAT_VERSION, "key": key, "dataset": dataset.config.name,
                                    "n_segments": n_segments, "method": method, "shape": list(shape)}, dataset.train)
