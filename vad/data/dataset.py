"""A feature dataset on disk: its videos (train and test, in list order) and validated reading of their features.

```python
ds = load_dataset("dataset.yaml")          # or a DatasetConfig
ds.train[0]                                # Video(id, label, anomaly_class, files)
ds.read_video(ds.train[0])                 # (N, T, C) float32, checked
```
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vad.data.config import DatasetConfig
from vad.data.errors import DataError
from vad.data.feature_index import FeatureIndex
from vad.data.lists import ListedVideo, parse_list, with_labels
from vad.data.npy import read_npy

_MISSING_SHOWN = 5


@dataclass(frozen=True)
class Video:
    """One video: ``id`` (``Abuse001_x264``; XD: the name without ``__<k>.npy``), ``label`` 0 normal / 1 abnormal,
    ``anomaly_class`` (UCF class name or ``Normal``, XD first label code, None if the name has none) and its
    feature ``files`` (one ``(T, N, C)`` file in the ``ucf`` layout, N ``(T, C)`` files in the ``xd`` layout)."""

    id: str
    label: int
    anomaly_class: str | None
    files: tuple[Path, ...]


class FeatureDataset:
    """The train and test videos of a dataset (in list order) and validated access to their features."""

    def __init__(self, config: DatasetConfig, train: list[Video], test: list[Video]) -> None:
        self.config = config
        self.train = train
        self.test = test

    def __repr__(self) -> str:
        return (f"FeatureDataset({self.config.name!r}, layout={self.config.layout!r}, train={len(self.train)}, "
                f"test={len(self.test)})")

    @property
    def train_list_sha256(self) -> str:
        """sha256 of the train list file's bytes (identifies the training set for splits and caches)."""
        return file_sha256(self.config.train_list)

    @property
    def test_list_sha256(self) -> str:
        return file_sha256(self.config.test_list)

    def video_length(self, video: Video) -> int:
        """T (snippets) of a video, read from the file header(s) only; shapes checked as in :meth:`read_video`."""
        return self._mapped(video)[0].shape[0]

    def read_video(self, video: Video) -> np.ndarray:
        """The video's features, ``(N, T, C)`` float32, checked: files exist and load, shape ``(T, N, C)`` (ucf)
        or N files of ``(T, C)`` (xd) with N = ``n_crops`` and C = ``feature_dim``, T >= 1, all values finite."""
        mapped = self._mapped(video)
        if self.config.layout == "ucf":
            features = np.array(mapped[0].reshape(mapped[0].shape[0], self.config.n_crops, -1).transpose(1, 0, 2),
                                dtype=np.float32)
        else:
            features = np.stack([np.asarray(crop, dtype=np.float32) for crop in mapped])
        bad = ~np.isfinite(features)
        if bad.any():
            crop, snippet, channel = np.argwhere(bad)[0]
            file = video.files[0] if len(video.files) == 1 else video.files[crop]
            raise DataError(f"{file}: video {video.id} has {int(bad.sum())} NaN/inf value(s), the first at crop "
                            f"{crop}, snippet {snippet}, channel {channel}; expected finite features")
        return features

    def _mapped(self, video: Video) -> list[np.ndarray]:
        """The video's files memory-mapped, shapes checked: ``[(T, N, C)]`` (ucf) or N arrays ``(T, C)`` (xd)."""
        n_crops, width = self.config.n_crops, self.config.feature_dim
        if self.config.layout == "ucf":
            if len(video.files) != 1:
                raise DataError(f"video {video.id}: expected one feature file in the ucf layout, got "
                                f"{len(video.files)}")
            array = _load(video.files[0], video)
            valid = ((array.ndim == 3 and array.shape[1:] == (n_crops, width))
                     or (array.ndim == 2 and n_crops == 1 and array.shape[1] == width))
            if not valid or array.shape[0] < 1:
                raise DataError(f"{video.files[0]}: video {video.id} has features of shape {array.shape}; expected "
                                f"(T, {n_crops}, {width}) = (snippets, crops, feature_dim) with T >= 1")
            return [array]
        if len(video.files) != n_crops:
            raise DataError(f"video {video.id}: {len(video.files)} crop file(s); expected n_crops = {n_crops}")
        crops: list[np.ndarray] = []
        for file in video.files:
            array = _load(file, video)
            if array.ndim != 2 or array.shape[1] != width or array.shape[0] < 1:
                raise DataError(f"{file}: crop of video {video.id} has shape {array.shape}; expected "
                                f"(T, {width}) = (snippets, feature_dim) with T >= 1")
            if crops and array.shape[0] != crops[0].shape[0]:
                raise DataError(f"{file}: crop of video {video.id} has {array.shape[0]} snippets but its crop "
                                f"{video.files[0].name} has {crops[0].shape[0]}; expected all crops equally long")
            crops.append(array)
        return crops


def _load(file: Path, video: Video) -> np.ndarray:
    if not file.is_file():
        raise DataError(f"feature file {file} of video {video.id} is missing")
    array = read_npy(file, f"the features of video {video.id}", mmap_mode="r")
    if array.dtype.kind not in "fiu":
        raise DataError(f"{file}: features of video {video.id} have dtype {getattr(array, 'dtype', '?')}; "
                        "expected float32")
    return array


def file_sha256(path: Path) -> str:
    """sha256 hex digest of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_dataset(config: DatasetConfig | str | Path) -> FeatureDataset:
    """Read a dataset: parse and validate both lists (readable, non-empty, crops complete, labels consistent with
    the split index), find every feature file under its root by name, refuse videos listed in both."""
    if not isinstance(config, DatasetConfig):
        config = DatasetConfig.from_yaml(config)
    indexes: dict[Path, FeatureIndex] = {}

    def index_for(root: Path, field: str) -> FeatureIndex:
        if root not in indexes:
            indexes[root] = FeatureIndex(root, field)
        return indexes[root]

    train_listed = with_labels(parse_list(config.train_list, config.layout, config.n_crops),
                               config.split_index, config.train_list)
    test_listed = with_labels(parse_list(config.test_list, config.layout, config.n_crops),
                              config.test_split_index, config.test_list)
    train = _resolve(train_listed, index_for(config.feature_root, "feature_root"), config.train_list)
    test_field = "test_feature_root" if config.test_feature_root else "feature_root"
    test = _resolve(test_listed, index_for(config.test_root, test_field), config.test_list)
    shared = sorted({video.id for video in train} & {video.id for video in test})
    if shared:
        raise DataError(f"{config.test_list}: {len(shared)} test video(s) are also in the train list "
                        f"{config.train_list} (first: {shared[0]}); the test set must stay unseen")
    return FeatureDataset(config, train, test)


def _resolve(listed: Sequence[ListedVideo], index: FeatureIndex, list_path: Path) -> list[Video]:
    videos, missing = [], []
    for item in listed:
        files = []
        for name, entry in zip(item.file_names, item.entries):
            path = index.find(name, entry)
            if path is None:
                missing.append(f"{name} (video {item.id}, line {item.line})")
            files.append(path)
        if item.label is None:  # with_labels fills every label; guard against misuse
            raise DataError(f"{list_path}: line {item.line}: video {item.id} has no label")
        videos.append(Video(item.id, item.label, item.anomaly_class, tuple(files)))
    if missing:
        shown = "; ".join(missing[:_MISSING_SHOWN]) + (" ..." if len(missing) > _MISSING_SHOWN else "")
        raise DataError(f"{list_path}: {len(missing)} listed feature file(s) not found under {index.root} "
                        f"(searched by file name, recursively): {shown}")
    return videos
