"""A float32 ``.npy`` cache of a dataset's videos with its JSON meta beside it (``.json``): opened memory-mapped
read-only, built once under a file lock (see :mod:`vad.data.cache_io`). The training cache and the test
features are both kept this way."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from vad.atomic import atomic_output
from vad.data.cache_io import file_lock, read_json, write_json_atomic
from vad.data.dataset import Video
from vad.data.errors import DataError

Cache = TypeVar("Cache")


def open_or_build(path: Path, open_cache: Callable[[], Cache | None], build: Callable[[], None], what: str) -> Cache:
    """``open_cache()``; when that gives None, ``build()`` under ``path``'s lock (concurrent callers wait, then
    open what the first one built) and open again."""
    cache = open_cache()
    if cache is None:
        with file_lock(path):
            cache = open_cache()
            if cache is None:
                build()
                cache = open_cache()
    if cache is None:  # pragma: no cover - only if the file vanished between writing and reading
        raise DataError(f"{what} {path} could not be opened after building it")
    return cache


def open_array(path: Path, key: str, videos: Sequence[Video]) -> tuple[dict[str, Any], np.ndarray] | None:
    """``(meta, array)``: the array memory-mapped read-only; None when the meta is missing or names another key or
    other videos, or the array is missing or unreadable."""
    meta = read_json(path.with_suffix(".json"))
    if meta is None or meta.get("key") != key or meta.get("video_ids") != video_ids(videos) or not path.is_file():
        return None
    try:
        return meta, np.load(path, mmap_mode="r")
    except (OSError, ValueError):
        return None


def write_array(path: Path, shape: tuple[int, ...], fill: Callable[[np.ndarray], None], meta: dict[str, Any],
                videos: Sequence[Video]) -> None:
    """A float32 ``.npy`` of ``shape`` filled by ``fill(out)`` in a temp file renamed to ``path``, then ``meta``
    and the videos' ids, labels and classes as its JSON meta."""
    with atomic_output(path) as tmp:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=shape)
        fill(out)
        out.flush()
        del out
    write_json_atomic(path.with_suffix(".json"), {
        **meta, "video_ids": video_ids(videos), "labels": [video.label for video in videos],
        "classes": [video.anomaly_class for video in videos],
    })


def video_ids(videos: Sequence[Video]) -> list[str]:
    """The videos' ids, in order."""
    return [video.id for video in videos]


def video_facts(videos: Sequence[Video]) -> tuple[list[str], np.ndarray, list[str | None]]:
    """``(ids, labels (V,) int64 0 normal / 1 abnormal, anomaly classes)`` of the videos, in order."""
    labels = np.array([video.label for video in videos], dtype=np.int64)
    return video_ids(videos), labels, [video.anomaly_class for video in videos]
