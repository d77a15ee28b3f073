"""Training, the library: ``train(config, report)`` (the command line is :mod:`vad.train`).

The loop reads top to bottom: data, model, loss, optimizer; then per epoch train, validate, maybe test,
select, checkpoint, report. The same function runs under Ray Tune (``search.sweep.trainable`` passes ``report``).
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vad.atomic import atomic_write_json
from vad.builders import build_model, build_optimizer, epoch_batches, pick_device, resolve_config
from vad.checkpoint import capture_rng, load_checkpoint, load_model_state, restore_rng, save_checkpoint, seed_everything
from vad.config import ConfigError, TrainConfig
from vad.data import BalancedBatchSampler
from vad.engine import NonFiniteLossError, train_one_epoch
from vad.metrics.catalogue import frame_metric_names
from vad.models import create_loss
from vad.prepare import PreparedData, prepare_data
from vad.scoring import (
    as_tensor,
    frame_level_metrics,
    full_evaluation,
    resampled_test_array,
    score_test,
    table_losses,
    validate,
)
from vad.selection import Selector

Report = Callable[[dict[str, Any], Path], None]
"""``report(metrics, out_dir)``: called once per epoch after the checkpoints of that epoch are written."""

@dataclass
class TrainResult:
    """What a run produced; also written to ``<out_dir>/result.json``."""

    status: str
    """``completed``, ``early_stopped`` or ``diverged`` (a non-finite loss stopped the run)."""
    message: str
    selection: str
    selected_epoch: int | None
    epochs: list[dict[str, Any]]
    test: dict[str, float]
    config: dict[str, Any]
    out_dir: str
    data: dict[str, Any] = field(default_factory=dict)
    checkpoint_chosen_by: str = "val"
    """``test`` when the selection metric comes from the test set (the papers' protocol), else ``val``."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def write(self) -> Path:
        """Write ``result.json`` atomically."""
        return atomic_write_json(Path(self.out_dir) / "result.json", self.to_dict())


def print_report(metrics: dict[str, Any], out_dir: Path) -> None:
    """The default ``report``: one line per epoch."""
    keys = ("train_loss", "val_loss", "val_video_auc", "test_auc", "epoch_time")
    parts = [f"{k}={metrics[k]:.4g}" for k in keys if isinstance(metrics.get(k), (int, float))]
    print(f"epoch {metrics['epoch']:>4}  " + "  ".join(parts), flush=True)


def train(
    config: TrainConfig | dict | str | Path,
    report: Report | None = None,
    *,
    out_dir: str | Path = "runs/latest",
    resume: str | Path | None = None,
    prepared: PreparedData | None = None,
) -> TrainResult:
    """Train one model and select one checkpoint; returns (and writes) the :class:`TrainResult`.

    ``out_dir`` receives ``last.pt``, ``best.pt``, ``result.json`` and ``scores.npz`` (per-video test snippet
    scores of the selected checkpoint). ``resume`` continues exactly from a ``last.pt``.
    """
    # ---- data
    config = _as_config(config)
    prepared = prepared or prepare_data(config)
    config = resolve_config(config, prepared)
    report = report or print_report
    out = Path(out_dir).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    t = config.train
    if t.num_threads:
        torch.set_num_threads(t.num_threads)
    device = pick_device(t.device)
    bf16 = t.precision == "bf16"
    if bf16 and device.type != "cuda":
        warnings.warn("train.precision=bf16 needs CUDA; running in float32 on the CPU", stacklevel=2)
        bf16 = False
    cache = prepared.train_cache
    features = as_tensor(cache.features)
    if t.data_on_device and device.type == "cuda":
        features = features.to(device)  # resident: each step indexes on the device
    labels = torch.from_numpy(np.asarray(cache.labels, dtype=np.int64))
    sampler = BalancedBatchSampler(np.asarray(cache.labels)[prepared.train_rows], t.batch_per_class, seed=t.seed)

    # ---- model, loss, optimizer
    seed_everything(t.seed)
    model = build_model(config, prepared, device)
    criterion = create_loss(config.model_name, **config.loss)
    reference = None if t.reference_loss is None else create_loss(config.model_name, **t.reference_loss)
    optimizer = build_optimizer(model, config)
    scheduler = (torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=t.epochs)
                 if config.optim.scheduler == "cosine" else None)
    selector = Selector(t.selection, t.patience, t.min_delta, t.selection_rule, t.selection_window, t.selection_ema)
    test_array = functools.cache(lambda: resampled_test_array(prepared, config.data.n_segments,
                                                              config.resample_method))
    history: list[dict[str, Any]] = []
    start_epoch, status, message = 1, "completed", ""
    selected_test: dict[str, float] = {}
    if resume is not None:
        state = load_checkpoint(resume)
        _check_resume_config(state["config"], config.to_dict(), resume)
        load_model_state(model, state["model"], str(resume))
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None and state.get("scheduler"):
            scheduler.load_state_dict(state["scheduler"])
        selector = Selector.from_state_dict(state["selector"])
        history, start_epoch = list(state["history"]), int(state["epoch"]) + 1
        selected_test = dict(state.get("selected_test") or {})
        restore_rng(state["rng"])
        if selector.should_stop:
            start_epoch, status = t.epochs + 1, "early_stopped"

    # ---- epochs
    for epoch in range(start_epoch, t.epochs + 1):
        batches = [prepared.train_rows[rows] for rows in epoch_batches(sampler, epoch, t.steps_per_epoch)]
        try:
            metrics = {"epoch": epoch, **train_one_epoch(
                model, criterion, optimizer, batches, features, labels,
                device=device, bf16=bf16, check_every=1 if device.type == "cpu" else 25)}
        except NonFiniteLossError as exc:
            status, message = "diverged", f"epoch {epoch}: {exc}"
            break
        metrics["lr"] = optimizer.param_groups[0]["lr"]
        if scheduler is not None:
            scheduler.step()
        metrics.update(validate(model, criterion, features, cache.labels, prepared.val_rows, k=config.k,
                                batch_per_class=t.batch_per_class, device=device, bf16=bf16, reference=reference))
        if t.test_every_epoch:  # a diagnostic: selection only looks at it with selection test_auc / test_ap
            scores = score_test(model, prepared, device=device, bf16=bf16)
            test = frame_level_metrics(scores, prepared, t.threshold)
            metrics.update({f"test_{name}": test[name] for name in frame_metric_names()})
            losses = table_losses(model, criterion, prepared, test_array(), k=config.k,
                                  batch_per_class=t.batch_per_class, device=device, bf16=bf16)
            metrics.update(test_loss=losses["test_loss"], train_eval_loss=losses["train_loss"])
        improved = selector.update(epoch, metrics)
        metrics.update(is_best=improved, selection_value=selector.selection_value,
                       selected_value=selector.selected_value)
        if improved:
            save_checkpoint(out / "best.pt", {"model": model.state_dict(), "epoch": epoch, "history": history,
                                              "config": config.to_dict(), "model_name": config.model_name})
            if t.evaluate_selected == "on_improvement":
                selected_test = evaluate_selected(model, criterion, prepared, config, device, bf16, out, test_array())
        metrics.update({f"selected_{name}": value for name, value in selected_test.items()})
        history.append(metrics)
        save_checkpoint(out / "last.pt", {
            "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict() if scheduler is not None else None,
            "epoch": epoch, "selector": selector.state_dict(), "history": history, "rng": capture_rng(),
            "config": config.to_dict(), "model_name": config.model_name, "selected_test": selected_test})
        report(dict(metrics), out)
        if selector.should_stop:
            status = "early_stopped"
            message = f"no {t.selection} improvement for {t.patience} epochs"
            break

    # ---- the selected checkpoint on the test set
    test_metrics: dict[str, float] = {}
    if selected_test and (out / "scores.npz").is_file():
        test_metrics = selected_test
    elif selector.best_epoch is not None and (out / "best.pt").is_file():
        model.load_state_dict(load_checkpoint(out / "best.pt")["model"])
        test_metrics = evaluate_selected(model, criterion, prepared, config, device, bf16, out, test_array())
    elif status != "diverged":
        message = message or f"no epoch produced a finite {t.selection}; nothing selected"
    result = TrainResult(status, message, t.selection, selector.best_epoch, history, test_metrics,
                         config.to_dict(), str(out), prepared.describe(), selector.chosen_by)
    result.write()
    return result


def evaluate_selected(model: torch.nn.Module, criterion: torch.nn.Module, prepared: PreparedData,
                      config: TrainConfig, device: torch.device, bf16: bool, out: Path,
                      test_array: torch.Tensor) -> dict[str, float]:
    """Full test evaluation of the model as it is now (the selected checkpoint); writes ``scores.npz``."""
    t = config.train
    metrics, scores = full_evaluation(
        model, criterion, prepared, k=config.k, batch_per_class=t.batch_per_class,
        n_segments=config.data.n_segments, method=config.resample_method, threshold=t.threshold,
        device=device, bf16=bf16, test_array=test_array)
    scores.save(out / "scores.npz")
    return metrics


def _as_config(config: TrainConfig | dict | str | Path) -> TrainConfig:
    if isinstance(config, TrainConfig):
        return config
    if isinstance(config, dict):
        return TrainConfig.from_dict(config)
    return TrainConfig.from_yaml(config)


def _check_resume_config(saved: dict, current: dict, path: str | Path) -> None:
    """Refuse to resume with a different config, except for the schedule length and early stopping."""
    free = {("train", "epochs"), ("train", "patience")}
    diffs = [f"{s}.{k}: {saved[s].get(k)!r} -> {current[s].get(k)!r}" for s in current for k in current[s]
             if (s, k) not in free and saved.get(s, {}).get(k) != current[s].get(k)]
    if diffs:
        raise ConfigError(f"{path}: cannot resume with a different config ({'; '.join(diffs[:5])})")
