"""The test features, cached like the training cache but at full length: all test videos concatenated along time
into one ``(sum T, N, C)`` float32 array on disk (memory-mapped read-only) plus per-video offsets."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
from tqdm import tqdm

from vad.data.array_cache import open_array, open_or_build, video_facts, write_array
from vad.data.cache_io import cache_dir, file_signatures, inputs_key, slug
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
    return open_or_build(path, partial(_open, dataset, path, key), partial(_build, dataset, path, key),
                         "test feature cache")


def _open(dataset: FeatureDataset, path: Path, key: str) -> TestFeatures | None:
    opened = open_array(path, key, dataset.test)
    if opened is None:
        return None
    meta, features = opened
    offsets = np.asarray(meta.get("offsets", []), dtype=np.int64)
    ids, labels, classes = video_facts(dataset.test)
    config = dataset.config
    if (features.dtype != np.float32 or len(offsets) != len(ids) + 1
            or features.shape != (int(offsets[-1]), config.n_crops, config.feature_dim)):
        return None
    return TestFeatures(features, offsets, ids, labels, classes, path, key)


def _build(dataset: FeatureDataset, path: Path, key: str) -> None:
    config = dataset.config
    lengths = [dataset.video_length(video) for video in dataset.test]  # file headers only
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)

    def fill(out: np.ndarray) -> None:
        for index, video in enumerate(tqdm(dataset.test, desc=f"test features ({config.name})", unit="video",
                                           disable=None)):
            features = dataset.read_video(video)  # (N, T, C)
            if features.shape[1] != lengths[index]:
                raise DataError(f"{video.files[0]}: video {video.id} changed while the test cache was built "
                                f"({lengths[index]} snippets, then {features.shape[1]})")
            out[offsets[index]:offsets[index + 1]] = features.transpose(1, 0, 2)

    meta = {"format": FORMAT_VERSION, "key": key, "dataset": config.name, "offsets": offsets.tolist()}
    write_array(path, (int(offsets[-1]), config.n_crops, config.feature_dim), fill, meta, dataset.test)
