"""Shared fixtures: an isolated cache folder for every test, and the authors' reference files when present."""

from __future__ import annotations

from pathlib import Path

import pytest

REFERENCE_DIR = Path(__file__).resolve().parents[2] / "shared" / "reference"


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory):
    """One cache folder for the whole session (set before any module fixture runs), never ~/.cache/wsvad.

    Synthetic datasets and feature caches are shared between tests, as between trials of a sweep; tests that
    need a cold cache set their own ``VAD_CACHE_DIR``."""
    patch = pytest.MonkeyPatch()
    patch.setenv("VAD_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "vad-cache"))
    yield
    patch.undo()


@pytest.fixture
def reference_dir() -> Path:
    """``../shared/reference`` (the authors' list, annotation and ground-truth files); skips when absent."""
    if not REFERENCE_DIR.is_dir():
        pytest.skip("../shared/reference is not present in this checkout")
    return REFERENCE_DIR
