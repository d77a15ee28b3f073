"""What a run is built from: the device, the model (with its prepared state), the optimizer, the resolved config
and the batches of an epoch. Library code shared by ``vad.train`` and ``vad.scoring.evaluate_model``."""

from __future__ import annotations

import numpy as np
import torch

from vad.config import ConfigError, TrainConfig
from vad.data import BalancedBatchSampler
from vad.metrics.catalogue import get_metric
from vad.models import create_model
from vad.models.registry import attach_state, data_options, state_arguments
from vad.prepare import SYNTHETIC_PREFIX, PreparedData, resolve_dataset


def pick_device(name: str) -> torch.device:
    """``auto``: CUDA when available, else CPU; chosen once per run."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"train.device: {name!r} asked for CUDA but no GPU is visible to torch")
    return device


def build_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """Adam / AdamW / SGD over all parameters with the configured weight decay."""
    o = config.optim
    if o.name in ("adam", "adamw"):
        cls = torch.optim.Adam if o.name == "adam" else torch.optim.AdamW
        return cls(model.parameters(), lr=o.lr, betas=o.betas, weight_decay=o.weight_decay, fused=o.fused or None)
    return torch.optim.SGD(model.parameters(), lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)


def epoch_batches(sampler: BalancedBatchSampler, epoch: int, steps_per_epoch: int | None) -> list[np.ndarray]:
    """The batches of ``epoch`` (1-based): one pass of the sampler, or a window of ``steps_per_epoch`` batches
    of the endless stream of sampler passes (the papers count iterations, not passes)."""
    if steps_per_epoch is None:
        return list(sampler.epoch(epoch))
    per_pass = len(sampler)
    first, last = (epoch - 1) * steps_per_epoch, epoch * steps_per_epoch
    out: list[np.ndarray] = []
    for pass_index in range(first // per_pass, (last - 1) // per_pass + 1):
        batches = list(sampler.epoch(pass_index + 1))
        lo, hi = max(first - pass_index * per_pass, 0), min(last - pass_index * per_pass, per_pass)
        out.extend(batches[lo:hi])
    return out


def build_model(config: TrainConfig, prepared: PreparedData, device: torch.device) -> torch.nn.Module:
    """The configured model on ``device``, given its prepared state (the registry's ``attach`` hook)."""
    model = create_model(config.model_name, **config.model)
    attach_state(model, prepared.model_state)
    return model.to(device)


def resolve_config(config: TrainConfig, prepared: PreparedData) -> TrainConfig:
    """Every default filled in, the dataset's width and crops (and the arguments the model's prepared state
    fixes, e.g. S3R's ``n_atoms``) checked and set."""
    resolved = config.resolved(prepared.feature_dim, prepared.n_crops)
    if not config.data.dataset.startswith(SYNTHETIC_PREFIX):  # stored configs must not depend on the cwd
        resolved.data.dataset = str(resolve_dataset(config.data.dataset, config.source))
    for key, value in state_arguments(config.model_name, prepared.model_state).items():
        if key in config.model and config.model[key] != value:
            hint = ", ".join(f"data.{name}" for name in data_options(config.model_name)) or "the data"
            raise ConfigError(f"model.{key}: the config says {config.model[key]} but the prepared model state "
                              f"gives {value} (set {hint} instead)")
        resolved.model[key] = value
    if get_metric(resolved.train.selection).uses_test_data:  # test-set selection needs test metrics every epoch
        resolved.train.test_every_epoch = True
    return resolved
