"""How the data layer's caches are keyed and written: a sha256 of their inputs, built under a file lock (the
first process builds, the others wait and reuse) into a temp file renamed into place (so a killed process never
leaves a half-written cache under the final name)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vad.atomic import atomic_output, atomic_write_json
from vad.paths import cache_root

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: rely on atomic renames alone
    fcntl = None


def cache_dir(kind: str) -> Path:
    """``cache_root()/<kind>``, created."""
    path = cache_root() / kind
    path.mkdir(parents=True, exist_ok=True)
    return path


def slug(name: str) -> str:
    """A file-name-safe form of a dataset name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "dataset"


def inputs_key(inputs: dict[str, Any]) -> str:
    """sha256 hex digest of a JSON-serialisable description of a cache's inputs."""
    text = json.dumps(inputs, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def file_signatures(files: Sequence[Path]) -> list[tuple[str, int, int]]:
    """``(name, size, mtime_ns)`` of each file: changes when a feature file is replaced or edited."""
    out = []
    for file in files:
        stat = os.stat(file)
        out.append((file.name, stat.st_size, stat.st_mtime_ns))
    return out


@contextlib.contextmanager
def file_lock(target: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``<target>.lock`` (blocks while another process holds it)."""
    lock_path = target.with_name(target.name + ".lock")
    with open(lock_path, "a+") as handle:
        if fcntl is not None:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write JSON to a temp file and rename it over ``path`` (:func:`vad.atomic.atomic_write_json`)."""
    atomic_write_json(path, data, indent=1)


def write_array_atomic(path: Path, array: np.ndarray) -> None:
    """``np.save`` into a temp file renamed over ``path`` (readers never see half an array)."""
    with atomic_output(path) as tmp:
        np.save(tmp, array)


def cached_array(path: Path, build: Callable[[], np.ndarray]) -> np.ndarray:
    """The array saved at ``path``, built by ``build()`` and saved atomically on the first call: under
    :func:`file_lock`, so parallel processes asking for the same ``path`` build it once."""
    if path.exists():
        return np.load(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(path):
        if path.exists():  # another process built it while we waited
            return np.load(path)
        array = build()
        write_array_atomic(path, array)
        return array


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``, or None if it is missing or unreadable."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
