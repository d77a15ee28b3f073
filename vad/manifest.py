"""The prepared-data manifest: what :func:`vad.prepare.prepare_data` found, written once, opened by a sweep's trials.

``prepare_data`` validates everything (parses both lists, finds and stats every feature file, hashes the lists,
builds the ground truth from the annotations, opens or builds the caches), which costs time in proportion to the
dataset's files. It then writes this manifest: one JSON file under ``cache_root()/prepared/`` named by a hash of
the data settings, plus the frame ground truth (and a model's prepared state) as ``.npy`` and the videos' feature-file
paths as JSON beside it. A trial opens it with :func:`read_manifest`: a few small reads and ``stat`` calls
whatever the dataset's size, no feature file touched, the arrays memory-mapped, the file paths read only if asked
for. Freshness: the files it names (dataset YAML, lists, ground-truth source, caches) must still have the size
and mtime recorded; otherwise it is ignored. A feature file replaced in place after the preparation goes
unnoticed until the next ``prepare_data`` (each sweep runs one, and rewrites the manifest).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, overload

import numpy as np

from vad.data import DatasetConfig, FeatureDataset, GroundTruth, Split, TestFeatures, TrainCache, Video
from vad.data.cache_io import cache_dir, inputs_key, slug, write_array_atomic, write_json_atomic

FORMAT_VERSION = 2
FOLDER = "prepared"


@dataclass(frozen=True)
class DataSettings:
    """What a prepared run's data depends on besides the dataset's files."""

    dataset_yaml: Path
    n_segments: int
    method: str
    val_fraction: float | None
    split_seed: int
    prepared_for: str | None = None
    """The model whose ``prepare`` hook made the model state; None when the model prepares nothing."""
    model_options: dict[str, Any] = field(default_factory=dict)
    """The model's own ``data`` options (what its prepared state depends on)."""

    def key(self, dataset: DatasetConfig) -> str:
        """sha256 of these settings and the dataset's (resolved) description."""
        return inputs_key({
            "format": FORMAT_VERSION, "dataset_yaml": str(self.dataset_yaml), "dataset": dataset.to_dict(),
            "n_segments": self.n_segments, "method": self.method, "val_fraction": self.val_fraction,
            "split_seed": self.split_seed, "prepared_for": self.prepared_for,
            "model_options": self.model_options,
        })


@dataclass
class ManifestContents:
    """What a manifest records: the arrays one run needs, all memory-mapped or small (``PreparedData`` of
    :mod:`vad.prepare` adds how long preparing them took)."""

    dataset: FeatureDataset
    train_cache: TrainCache
    split: Split
    train_rows: np.ndarray
    """Rows of ``train_cache`` used for training, ``(V_train,)``."""
    val_rows: np.ndarray
    """Rows of ``train_cache`` held out for validation, ``(V_val,)``."""
    test: TestFeatures
    ground_truth: GroundTruth
    model_state: dict[str, np.ndarray] = field(default_factory=dict)
    """The model's prepared state (named arrays; S3R: ``dictionary (n_atoms, C)``); empty for most models."""


def manifest_path(settings: DataSettings, dataset: DatasetConfig) -> Path:
    """``cache_root()/prepared/<dataset>-<key>.json``."""
    return cache_dir(FOLDER) / f"{slug(dataset.name)}-{settings.key(dataset)[:24]}.json"


def _signature(path: Path | None) -> list[int] | None:
    """``[size, mtime_ns]`` of a file or folder (None when ``path`` is None)."""
    if path is None:
        return None
    stat = os.stat(path)
    return [stat.st_size, stat.st_mtime_ns]


def _watched(dataset: DatasetConfig, extra: dict[str, Path | None]) -> dict[str, Path | None]:
    """The files whose change makes a manifest stale: the dataset's own small files and the caches it names."""
    return {"dataset_yaml": dataset.source, "train_list": dataset.train_list, "test_list": dataset.test_list,
            "ground_truth": dataset.ground_truth, "annotations": dataset.annotations, **extra}


def _facts(videos: Sequence[Video]) -> dict[str, list[Any]]:
    return {"ids": [video.id for video in videos], "labels": [int(video.label) for video in videos],
            "classes": [video.anomaly_class for video in videos]}


class _VideoFiles:
    """The feature files of every video, read from the manifest's side file on first use (a trial never uses
    them, and building tens of thousands of paths is what would make opening scale with the dataset)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @cached_property
    def lists(self) -> dict[str, list[list[str]]]:
        return json.loads(self.path.read_text())


class LazyVideos(Sequence[Video]):
    """A dataset's train or test videos, as :class:`FeatureDataset` holds them, with the file paths loaded
    only when a video is looked at."""

    def __init__(self, facts: dict[str, list[Any]], files: _VideoFiles, split: str) -> None:
        self._ids, self._labels, self._classes = facts["ids"], facts["labels"], facts["classes"]
        self._files, self._split = files, split

    def __len__(self) -> int:
        return len(self._ids)

    @overload
    def __getitem__(self, index: int) -> Video: ...

    @overload
    def __getitem__(self, index: slice) -> list[Video]: ...

    def __getitem__(self, index: int | slice) -> Video | list[Video]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        files = self._files.lists[self._split][index]
        return Video(self._ids[index], int(self._labels[index]), self._classes[index],
                     tuple(Path(file) for file in files))

    def __add__(self, other: Sequence[Video]) -> list[Video]:
        return list(self) + list(other)

    def __radd__(self, other: Sequence[Video]) -> list[Video]:
        return list(other) + list(self)


def write_manifest(settings: DataSettings, contents: ManifestContents) -> Path:
    """Write the manifest of freshly prepared data (atomically; the arrays beside it first)."""
    config = contents.dataset.config
    path = manifest_path(settings, config)
    stem = path.with_suffix("")
    gt_file = stem.with_name(stem.name + ".gt.npy")
    write_array_atomic(gt_file, np.ascontiguousarray(contents.ground_truth.labels, dtype=np.uint8))
    state_files = {}
    for name, array in contents.model_state.items():
        state_files[name] = stem.with_name(f"{stem.name}.state-{slug(name)}.npy")
        write_array_atomic(state_files[name], np.asarray(array))
    videos_file = stem.with_name(stem.name + ".videos.json")
    write_json_atomic(videos_file, {split: [[str(file) for file in video.files] for video in videos]
                                    for split, videos in (("train", contents.dataset.train),
                                                          ("test", contents.dataset.test))})
    cache, test, split, gt = contents.train_cache, contents.test, contents.split, contents.ground_truth
    files = _watched(config, {"train_cache": cache.path, "test_cache": test.path, "split": split.path,
                              "gt": gt_file, "videos": videos_file,
                              **{f"state:{name}": file for name, file in state_files.items()}})
    write_json_atomic(path, {
        "format": FORMAT_VERSION,
        "key": settings.key(config),
        "dataset_yaml": str(settings.dataset_yaml),
        "dataset": config.to_dict(),
        "train_videos": _facts(contents.dataset.train),
        "test_videos": _facts(contents.dataset.test),
        "videos_file": str(videos_file),
        "train_cache": {"path": str(cache.path), "key": cache.key, "n_segments": cache.n_segments,
                        "method": cache.method, "shape": list(cache.features.shape)},
        "split": {"train_ids": split.train_ids, "val_ids": split.val_ids, "seed": split.seed,
                  "val_fraction": split.val_fraction, "list_sha256": split.list_sha256,
                  "path": str(split.path) if split.path else None},
        "train_rows": np.asarray(contents.train_rows).tolist(),
        "val_rows": np.asarray(contents.val_rows).tolist(),
        "test": {"path": str(test.path), "key": test.key, "offsets": np.asarray(test.offsets).tolist(),
                 "shape": list(test.features.shape)},
        "ground_truth": {"path": str(gt_file), "offsets": np.asarray(gt.offsets).tolist(),
                         "source": str(gt.source) if gt.source else None},
        "model_state": {name: str(file) for name, file in state_files.items()},
        "files": {name: [str(file), *_signature(file)] for name, file in files.items() if file is not None},
    })
    return path


def read_manifest(settings: DataSettings, dataset: DatasetConfig) -> ManifestContents | None:
    """The prepared data a manifest describes, or None when there is none, it is stale, or it cannot be read."""
    path = manifest_path(settings, dataset)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    try:
        if data.get("format") != FORMAT_VERSION or data.get("key") != settings.key(dataset):
            return None
        for file, size, mtime in data["files"].values():
            if _signature(Path(file)) != [size, mtime]:
                return None
        return _contents(data, dataset)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _contents(data: dict[str, Any], config: DatasetConfig) -> ManifestContents | None:
    files = _VideoFiles(Path(data["videos_file"]))
    train, test_videos = data["train_videos"], data["test_videos"]
    dataset = FeatureDataset(config, LazyVideos(train, files, "train"), LazyVideos(test_videos, files, "test"))
    c = data["train_cache"]
    features = np.load(c["path"], mmap_mode="r")
    if list(features.shape) != c["shape"] or features.dtype != np.float32:
        return None
    cache = TrainCache(features, np.array(train["labels"], dtype=np.int64), list(train["ids"]),
                       list(train["classes"]), Path(c["path"]), c["key"], int(c["n_segments"]), c["method"])
    s = data["split"]
    split = Split(list(s["train_ids"]), list(s["val_ids"]), int(s["seed"]), float(s["val_fraction"]),
                  s["list_sha256"], Path(s["path"]) if s["path"] else None)
    t = data["test"]
    test_array = np.load(t["path"], mmap_mode="r")
    if list(test_array.shape) != t["shape"] or test_array.dtype != np.float32:
        return None
    test = TestFeatures(test_array, np.asarray(t["offsets"], dtype=np.int64), list(test_videos["ids"]),
                        np.array(test_videos["labels"], dtype=np.int64), list(test_videos["classes"]),
                        Path(t["path"]), t["key"])
    g = data["ground_truth"]
    gt = GroundTruth(np.load(g["path"]), np.asarray(g["offsets"], dtype=np.int64), list(test_videos["ids"]),
                     Path(g["source"]) if g["source"] else None)
    state = {name: np.load(file) for name, file in data["model_state"].items()}
    return ManifestContents(dataset, cache, split, np.asarray(data["train_rows"], dtype=np.int64),
                            np.asarray(data["val_rows"], dtype=np.int64), test, gt, state)
