"""Where the toolkit keeps generated files (synthetic datasets, feature caches, dictionaries)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """The cache folder: ``$VAD_CACHE_DIR`` if set, else ``~/.cache/wsvad``; always absolute."""
    root = os.environ.get("VAD_CACHE_DIR") or str(Path.home() / ".cache" / "wsvad")
    path = Path(root).expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path
