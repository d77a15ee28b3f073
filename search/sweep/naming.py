"""Readable names: run names ``<model>-<dataset>-t<NNN> wd=.. do=..``, short values, trial numbers."""

from __future__ import annotations

from typing import Any

ABBREVIATIONS = {"weight_decay": "wd", "dropout": "do", "lr": "lr", "dilations": "dil", "depths": "depths",
                 "smoothness_weight": "smooth", "sparsity_weight": "sparse", "magnitude_weight": "mag",
                 "contrastive_weight": "contr", "separation_weight": "sep", "macro_weight": "macro",
                 "batch_per_class": "bpc", "hidden_dim": "hid", "margin": "margin", "k": "k"}
"""Short names of searched keys in run names (``rtfm-ucf-crime-t003 wd=0.0005 do=0.7``)."""


def short_value(value: Any) -> str:
    """``0.0005`` -> ``0.0005``, ``0.123456`` -> ``0.1235``, ``[3, 3, 2]`` -> ``3-3-2``."""
    if isinstance(value, (list, tuple)):
        return "-".join(short_value(v) for v in value)
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def run_name(model: str, dataset: str, number: int, params: dict[str, Any], *, label: str | None = None) -> str:
    """``<model>-<dataset>-t<NNN> wd=.. do=..`` (searched values in the space's order); ``label`` replaces
    ``t<NNN>`` (``rtfm-demo-t003-retrain seed=1``)."""
    values = " ".join(f"{ABBREVIATIONS.get(k.split('.')[-1], k.split('.')[-1])}={short_value(v)}"
                      for k, v in params.items())
    return f"{model}-{dataset}-{label or f't{number:03d}'} {values}".strip()


def trial_number(trial: Any) -> int:
    """The 1-based creation order of a trial (the leading counter of Tune's experiment tag)."""
    head = str(getattr(trial, "experiment_tag", "") or "").split("_", 1)[0]
    return int(head) if head.isdigit() else 0
