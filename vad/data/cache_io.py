"""How the data layer's caches are keyed and written: a sha256 of their inputs, built under a file lock (the
first process builds, the others wait and reuse) into a temp file renamed into place (so a killed process never
leaves a half-written cache under the final name)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

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


def temp_path(final: Path) -> Path:
    """A unique sibling of ``final`` to build into (same folder, so the rename is atomic); keeps the suffix."""
    return final.with_name(f".{final.stem}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}{final.suffix}")


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
    """Write JSON to a temp file and rename it over ``path``."""
    tmp = temp_path(path)
    try:
        tmp.write_text(json.dumps(data, indent=1) + "\n")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``, or None if it is missing or unreadable."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
