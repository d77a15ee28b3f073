"""Training checkpoints: model, optimizer, epoch, RNG states, selection state, history and the resolved config.

Written atomically (temporary file, then rename) so a killed run never leaves a half-written checkpoint; read
with ``torch.load(..., weights_only=True)``: everything stored is tensors and plain Python values.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

FORMAT = "wsvad-checkpoint-1"


def capture_rng() -> dict[str, Any]:
    """The torch (CPU and CUDA) and Python RNG states."""
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": list(random.getstate()[1])}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng`."""
    torch.set_rng_state(state["torch"])
    random.setstate((3, tuple(state["python"]), None))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` (plus a format tag) to ``path`` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save({"format": FORMAT, **payload}, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (weights only, on the CPU)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(
            f"{path}: not a toolkit checkpoint (for the authors' released weights use "
            f"`python -m vad.evaluate --original <model> {path}`)"
        )
    return payload


def seed_everything(seed: int) -> np.random.Generator:
    """Seed torch and Python's RNGs; return a numpy Generator for everything numpy draws."""
    random.seed(seed)
    torch.manual_seed(seed)
    return np.random.default_rng(seed)
