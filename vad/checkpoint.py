"""Training checkpoints: model, optimizer, epoch, RNG states, selection state, history and the resolved config.

Written atomically (temporary file, then rename) so a killed run never leaves a half-written checkpoint; read
with ``torch.load(..., weights_only=True)``: everything stored is tensors and plain Python values.
"""

from __future__ import annotations

import pickle
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vad.atomic import atomic_output

FORMAT = "wsvad-checkpoint-1"
_ZIP_MAGIC = b"PK\x03\x04"


class CheckpointError(ValueError):
    """A file that is not a checkpoint of this toolkit, is truncated, or whose stored config does not fit it."""


def read_torch_file(path: str | Path, what: str = "checkpoint of this toolkit") -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU; a file that is missing, not a PyTorch file, truncated or
    holding Python objects beyond tensors and plain values raises one sentence (:class:`CheckpointError`)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"file not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, TypeError, AttributeError, KeyError,
            IndexError, UnicodeDecodeError, OSError) as exc:
        raise CheckpointError(_unreadable(path, what, exc)) from None


def _unreadable(path: Path, what: str, exc: BaseException) -> str:
    with open(path, "rb") as handle:
        head = handle.read(4)
    if head == _ZIP_MAGIC and "weights only" not in str(exc).lower():
        return (f"{path}: truncated or damaged (a PyTorch archive that cannot be read to its end); "
                "use an intact copy or write it again")
    if "unsupported global" in str(exc).lower():
        return (f"{path}: not a {what}: it holds Python objects besides tensors and plain values, and loading "
                "those could run code, so it is refused")
    return f"{path}: not a {what} (unreadable as tensors and plain values)"


def load_model_state(model: torch.nn.Module, weights: dict[str, Any], where: str = "") -> None:
    """``model.load_state_dict(weights)`` (strict); keys or shapes that differ raise one sentence naming the first
    key: the config stored in ``where`` does not fit its weights."""
    try:
        model.load_state_dict(weights)
    except RuntimeError as exc:
        text = str(exc)
        match = re.search(r"size mismatch for ([^:]+): copying a param with shape torch.Size\((\[[^]]*\])\) from "
                          r"checkpoint, the shape in current model is torch.Size\((\[[^]]*\])\)", text)
        if match:
            key, stored, built = match.groups()
            detail = f"{key} has shape {stored} in the weights, the config builds {built}"
        else:
            keys = re.search(r"(Missing|Unexpected) key\(s\) in state_dict: ([^.]+)", text)
            detail = f"{keys.group(1).lower()} key(s) {keys.group(2)[:200]}" if keys else text.splitlines()[0]
        raise CheckpointError(f"{where + ': ' if where else ''}the config stored in the checkpoint does not fit its "
                              f"weights ({detail}); "
                              "the file was edited or assembled from two runs") from None


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
    with atomic_output(path) as tmp:
        torch.save({"format": FORMAT, **payload}, tmp)
    return path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (weights only, on the CPU)."""
    path = Path(path)
    payload = read_torch_file(path)
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
