"""Everything a run reads, prepared once: the dataset, the resampled training cache, the validation split, the
test features and frame ground truth, and the model's own prepared state (its registry entry's ``prepare`` hook:
S3R's dictionary).

Every artefact is cached on disk keyed by its inputs, so a second call (another trial of a sweep, a resumed run)
only opens memory-maps: no feature file is read again and trials on one machine share one copy of the arrays
through the page cache. ``prepare_data`` still re-validates the dataset (lists, every feature file's size and
mtime, the ground truth); it then writes a manifest (:mod:`vad.manifest`) that :func:`open_prepared` (a sweep's
trials) opens instead, in the same few milliseconds whatever the dataset's size.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vad.config import TrainConfig
from vad.data import (
    DatasetConfig,
    build_train_cache,
    load_dataset,
    load_ground_truth,
    load_test_features,
    make_split,
)
from vad.manifest import DataSettings, ManifestContents, read_manifest, write_manifest
from vad.models.registry import PrepareContext, get_entry, prepare_model_state

SYNTHETIC_PREFIX = "synthetic:"


@dataclass
class PreparedData(ManifestContents):
    """The arrays one run needs, all memory-mapped or small, and the seconds each preparation step took."""

    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def feature_dim(self) -> int:
        return self.dataset.config.feature_dim

    @property
    def n_crops(self) -> int:
        return self.dataset.config.n_crops

    def describe(self) -> dict[str, object]:
        """Plain facts for logs and MLflow tags: sizes, cache files and keys."""
        return {
            "dataset": self.dataset.config.name,
            "dataset_yaml": str(self.dataset.config.source) if self.dataset.config.source else None,
            "train_videos": int(len(self.train_rows)),
            "val_videos": int(len(self.val_rows)),
            "test_videos": int(len(self.test.lengths)),
            "train_cache": str(self.train_cache.path),
            "train_cache_key": self.train_cache.key,
            "split_file": str(self.split.path) if getattr(self.split, "path", None) else None,
            "split_sha256": self.split.file_sha256(),
            "train_list_sha256": getattr(self.split, "list_sha256", None),
        }


def resolve_dataset(spec: str, relative_to: str | Path | None = None) -> Path:
    """The ``dataset.yaml`` for ``spec``: ``synthetic:<preset>`` is generated on first use into the cache folder;
    anything else is a path, relative to ``relative_to``'s folder (the config file) when not absolute."""
    if spec.startswith(SYNTHETIC_PREFIX):
        from vad.data.synthetic import ensure_synthetic

        return ensure_synthetic(spec[len(SYNTHETIC_PREFIX):])
    path = Path(spec).expanduser()
    if not path.is_absolute() and relative_to is not None:
        path = Path(relative_to).expanduser().resolve().parent / path
    return path.resolve()


def data_settings(config: TrainConfig) -> DataSettings:
    """What ``config``'s prepared data depends on besides the dataset's files (the manifest's key)."""
    return DataSettings(
        dataset_yaml=resolve_dataset(config.data.dataset, config.source), n_segments=config.data.n_segments,
        method=config.resample_method, val_fraction=config.data.val_fraction, split_seed=config.data.split_seed,
        prepared_for=config.model_name if get_entry(config.model_name).prepare is not None else None,
        model_options=dict(config.data.options))


def open_prepared(config: TrainConfig) -> PreparedData:
    """The data of ``config`` as the last :func:`prepare_data` left it (a sweep prepares once; its trials call
    this): opened from the manifest without reading lists, feature files or annotations; falls back to
    :func:`prepare_data` when there is no fresh manifest."""
    started = time.perf_counter()
    settings = data_settings(config)
    contents = read_manifest(settings, DatasetConfig.from_yaml(settings.dataset_yaml))
    if contents is None:
        return prepare_data(config)
    return PreparedData(**vars(contents), seconds={"manifest": time.perf_counter() - started})


def prepare_data(config: TrainConfig) -> PreparedData:
    """Build or open every cached artefact ``config`` needs (idempotent; cheap once the caches exist), and write
    the manifest that :func:`open_prepared` reads."""
    seconds: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        seconds[name] = now - clock
        clock = now

    settings = data_settings(config)
    dataset = load_dataset(settings.dataset_yaml)
    lap("dataset")
    cache = build_train_cache(dataset, n_segments=config.data.n_segments, method=config.resample_method)
    lap("train_cache")
    split = make_split(dataset, val_fraction=config.data.val_fraction, seed=config.data.split_seed)
    train_rows, val_rows = split.train_index(cache), split.val_index(cache)
    lap("split")
    test = load_test_features(dataset)
    gt = load_ground_truth(dataset, test.lengths)
    lap("test")
    state = {}
    if settings.prepared_for is not None:
        rows = np.ascontiguousarray(train_rows, dtype=np.int64)
        context = PrepareContext(features=cache.features, labels=np.asarray(cache.labels), train_rows=rows,
                                 inputs_key=hashlib.sha256(cache.key.encode() + rows.tobytes()).hexdigest(),
                                 options=settings.model_options)
        state = prepare_model_state(config.model_name, context)
        lap("model_state")
    prepared = PreparedData(dataset=dataset, train_cache=cache, split=split, train_rows=train_rows,
                            val_rows=val_rows, test=test, ground_truth=gt, model_state=state, seconds=seconds)
    write_manifest(settings, prepared)
    lap("manifest")
    return prepared
