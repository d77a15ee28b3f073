"""Helpers of the end-to-end sweep tests (``test_search_sweep``, ``test_search_resume``): the tiny RTFM config the
sweeps search around, a space file beside it, and a sweep's MLflow runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from mlflow import MlflowClient

REPO = Path(__file__).resolve().parents[1]


def base_config(**train: Any) -> dict[str, Any]:
    """The tiny synthetic RTFM config; ``train`` adds to its ``train`` section."""
    return {
        "data": {"dataset": "synthetic:tiny"},
        "model": {"name": "rtfm", "dropout": 0.7, "hidden_dim": 16, "head_dims": [16, 8]},
        "loss": {"k": 3},
        "optim": {"lr": 1.0e-3, "weight_decay": 5.0e-4},
        "train": {"epochs": 4, "batch_per_class": 4, **train},
    }


def write_space(folder: Path, space: dict[str, Any], base: dict[str, Any]) -> Path:
    """``folder/base.yaml`` (``base``) and ``folder/space.yaml`` (``space`` over that base); the space file."""
    (folder / "base.yaml").write_text(yaml.safe_dump(base))
    path = folder / "space.yaml"
    path.write_text(yaml.safe_dump({"base": "base.yaml", **space}))
    return path


def sweep_runs(client: MlflowClient, name: str) -> tuple[list, list, list]:
    """``(runs, parents, children)`` of sweep ``name``'s experiment: all its runs, the sweep's, the trials'."""
    experiment = client.get_experiment_by_name(name)
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    parents = [r for r in runs if r.data.tags.get("run_type") == "sweep"]
    children = [r for r in runs if r.data.tags.get("run_type") == "trial"]
    return runs, parents, children
