"""The validation split carved out of the training videos (the test set is never touched).

Stratified by label and anomaly class (where names carry one), seeded and deterministic; at least one video of
each label goes to validation when that label has two or more videos. Written once to a JSON split file
(video ids, the train list's sha256, seed, fraction) and reused; a split file made for another train list, seed or
fraction is refused.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from vad.coerce import ConfigError
from vad.data.cache_io import cache_dir, slug, write_json_atomic
from vad.data.dataset import FeatureDataset, Video
from vad.data.errors import DataError

FORMAT_VERSION = 1


class _HasVideoIds(Protocol):
    video_ids: list[str]


@dataclass(frozen=True)
class Split:
    """Training and validation video ids (train-list order) of one split."""

    train_ids: list[str]
    val_ids: list[str]
    seed: int
    val_fraction: float
    list_sha256: str
    path: Path | None = None

    def file_sha256(self) -> str | None:
        """sha256 of the split file's bytes (what a run's provenance names), or None without a readable file."""
        if self.path is None or not Path(self.path).is_file():
            return None
        return hashlib.sha256(Path(self.path).read_bytes()).hexdigest()

    def train_index(self, cache: _HasVideoIds) -> np.ndarray:
        """``(V_train,)`` int64 rows of ``cache`` (a TrainCache) holding the training videos."""
        return _rows(self.train_ids, cache)

    def val_index(self, cache: _HasVideoIds) -> np.ndarray:
        """``(V_val,)`` int64 rows of ``cache`` holding the validation videos."""
        return _rows(self.val_ids, cache)


def _rows(ids: Sequence[str], cache: _HasVideoIds) -> np.ndarray:
    position = {video: row for row, video in enumerate(cache.video_ids)}
    missing = [video for video in ids if video not in position]
    if missing:
        raise DataError(f"{len(missing)} video(s) of the split are not rows of the cache (first: {missing[0]}); "
                        "was the cache built from another train list?")
    return np.array([position[video] for video in ids], dtype=np.int64)


def stratified_val_positions(videos: Sequence[Video], val_fraction: float, seed: int) -> np.ndarray:
    """Sorted positions of the validation videos: per (label, class) stratum ``val_fraction`` of its videos
    (largest-remainder rounding to ``round(val_fraction * V)`` in total), drawn with ``default_rng(seed)``."""
    strata: dict[tuple[int, str], list[int]] = {}
    for position, video in enumerate(videos):
        strata.setdefault((video.label, video.anomaly_class or ""), []).append(position)
    keys = sorted(strata)
    if val_fraction <= 0:
        return np.zeros(0, dtype=np.int64)
    exact = {key: val_fraction * len(strata[key]) for key in keys}
    quota = {key: math.floor(exact[key]) for key in keys}
    target = math.floor(val_fraction * len(videos) + 0.5)
    by_remainder = sorted(keys, key=lambda key: (-(exact[key] - quota[key]), key))
    for key in by_remainder[:max(0, target - sum(quota.values()))]:
        quota[key] += 1
    for label in (0, 1):
        label_keys = [key for key in keys if key[0] == label]
        if sum(len(strata[key]) for key in label_keys) >= 2 and not any(quota[key] for key in label_keys):
            largest = max(label_keys, key=lambda key: (len(strata[key]), key))
            quota[largest] += 1
    rng = np.random.default_rng(seed)
    chosen = []
    for key in keys:
        members = np.asarray(strata[key], dtype=np.int64)
        chosen.append(members[rng.permutation(len(members))[:quota[key]]])
    return np.sort(np.concatenate(chosen))


def make_split(dataset: FeatureDataset, val_fraction: float | None = None, seed: int = 0,
               path: str | Path | None = None) -> Split:
    """The split of ``dataset.train`` (``val_fraction`` defaults to the dataset config's), read from ``path``
    (default: a file in the cache folder keyed by dataset, list, seed and fraction) or made and written there."""
    fraction = float(dataset.config.val_fraction if val_fraction is None else val_fraction)
    if not 0.0 < fraction < 1.0:
        raise ConfigError(f"data.val_fraction: must be in (0, 1), got {fraction!r}"
                          + ("" if val_fraction is not None else f" (the default of dataset {dataset.config.name})"))
    seed = int(seed)
    list_sha256 = dataset.train_list_sha256
    if path is None:
        path = cache_dir("splits") / f"{slug(dataset.config.name)}-{list_sha256[:12]}-seed{seed}-val{fraction:g}.json"
    path = Path(path)
    ids = [video.id for video in dataset.train]
    if path.exists():
        return _read_split(path, ids, list_sha256, seed, fraction, dataset.config.train_list)
    val = set(stratified_val_positions(dataset.train, fraction, seed).tolist())
    _check_both_labels(dataset.train, val, fraction)
    split = Split([v for i, v in enumerate(ids) if i not in val], [v for i, v in enumerate(ids) if i in val],
                  seed, fraction, list_sha256, path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, {
        "format": FORMAT_VERSION, "dataset": dataset.config.name, "train_list": str(dataset.config.train_list),
        "list_sha256": list_sha256, "seed": seed, "val_fraction": fraction,
        "train_ids": split.train_ids, "val_ids": split.val_ids,
    })
    return split


def _check_both_labels(videos: Sequence[Video], val: set[int], fraction: float) -> None:
    """Refuse a split leaving either side without a normal or an abnormal video (nothing to train or validate)."""
    for side, members in (("validation", [v for i, v in enumerate(videos) if i in val]),
                          ("training", [v for i, v in enumerate(videos) if i not in val])):
        labels = {video.label for video in members}
        missing = [name for label, name in ((0, "normal"), (1, "abnormal")) if label not in labels]
        if missing:
            counts = f"{sum(v.label == 0 for v in videos)} normal, {sum(v.label == 1 for v in videos)} abnormal"
            raise ConfigError(
                f"data.val_fraction: {fraction:g} leaves the {side} side without a {' or '.join(missing)} video "
                f"({len(members)} of the {len(videos)} training videos: {counts}); each side needs at least one "
                f"of each: {'raise' if side == 'validation' else 'lower'} data.val_fraction")


def _read_split(path: Path, ids: list[str], list_sha256: str, seed: int, fraction: float, train_list: Path) -> Split:
    try:
        data = json.loads(path.read_text())
        train_ids, val_ids = list(data["train_ids"]), list(data["val_ids"])
        file_sha, file_seed, file_fraction = data["list_sha256"], int(data["seed"]), float(data["val_fraction"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"split file {path} is not a readable split (train_ids, val_ids, list_sha256, seed, "
                        f"val_fraction): {exc}") from None
    if file_sha != list_sha256:
        raise DataError(f"split file {path} was made for another train list (sha256 {file_sha[:12]}..., "
                        f"{train_list} has {list_sha256[:12]}...); delete it or give another path")
    if file_seed != seed or not math.isclose(file_fraction, fraction):
        raise DataError(f"split file {path} has seed {file_seed} and val_fraction {file_fraction}; asked for seed "
                        f"{seed} and val_fraction {fraction}")
    if sorted(train_ids + val_ids) != sorted(ids) or set(train_ids) & set(val_ids):
        raise DataError(f"split file {path}: train_ids and val_ids must partition the {len(ids)} training videos")
    return Split(train_ids, val_ids, seed, fraction, list_sha256, path)
