"""Shared fixtures: an isolated cache folder for every test, and the authors' reference files when present."""

from __future__ import annotations

from pathlib import Path

import pytest

REFERENCE_DIR = Path(__file__).resolve().parents[2] / "shared" / "reference"


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VAD_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "vad-cache"))


@pytest.fixture
def reference_dir() -> Path:
    """``../shared/reference`` (the authors' list, annotation and ground-truth files); skips when absent."""
    if not REFERENCE_DIR.is_dir():
        pytest.skip("../shared/reference is not present in this checkout")
    return REFERENCE_DIR
