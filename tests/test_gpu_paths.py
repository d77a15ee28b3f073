"""The GPU paths, checked where they can be: on the CPU, what a GPU-less machine does with GPU settings (bf16 falls
back to float32 with a warning and the same numbers, CUDA asked for without one is a clear error, a sweep's trials
ask for CUDA only when they get GPUs); with CUDA, that a resident training array needs no host-to-device copy per
step and that bf16 trains."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml

from search.sweep.resources import NodeResources, plan_resources
from search.sweep.space import load_space
from vad.config import ConfigError, TrainConfig
from vad.training import train

TINY = {
    "data": {"dataset": "synthetic:tiny"},
    "model": {"name": "rtfm", "dropout": 0.7, "hidden_dim": 16, "head_dims": [16, 8]},
    "train": {"epochs": 1, "batch_per_class": 4, "steps_per_epoch": 2, "num_threads": 1, "device": "cpu"},
}
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def tiny(**train_settings) -> TrainConfig:
    return TrainConfig.from_dict({**TINY, "train": {**TINY["train"], **train_settings}})


def test_bf16_on_the_cpu_falls_back_to_float32_with_a_warning(tmp_path):
    fp32 = train(tiny(), lambda m, f: None, out_dir=tmp_path / "fp32")
    with pytest.warns(UserWarning, match="bf16 needs CUDA"):
        bf16 = train(tiny(precision="bf16"), lambda m, f: None, out_dir=tmp_path / "bf16")
    assert [e["train_loss"] for e in bf16.epochs] == [e["train_loss"] for e in fp32.epochs]
    assert bf16.test == fp32.test


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without CUDA")
def test_cuda_without_a_gpu_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="train.device"):
        train(tiny(device="cuda"), lambda m, f: None, out_dir=tmp_path)


def test_sweep_trials_ask_for_cuda_only_when_they_get_gpus(tmp_path):
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(TINY))
    (tmp_path / "space.yaml").write_text(yaml.safe_dump({
        "base": "base.yaml", "search": {"num_samples": 4, "epochs": 1},
        "resources": {"cpus_per_trial": 1, "gpus_per_trial": 0.25},
        "params": {"optim.weight_decay": {"loguniform": [1e-5, 1e-2]}}}))
    space = load_space(tmp_path / "space.yaml")
    assert space.sweep_config().train.device == "cuda"
    packed = plan_resources(space.resources, [NodeResources(cpus=16, gpus=1)])
    assert packed.concurrent == 4 and space.with_settings(
        gpus_per_trial=packed.resources.gpus_per_trial).sweep_config().train.device == "cuda"
    cpu_only = plan_resources(space.resources, [NodeResources(cpus=2, gpus=0)])
    on_cpu = space.with_settings(gpus_per_trial=cpu_only.resources.gpus_per_trial)
    assert on_cpu.sweep_config().train.device == "cpu" and on_cpu.sweep_config().train.num_threads == 1


@cuda
def test_a_resident_training_array_needs_no_copy_per_step():
    from torch.profiler import ProfilerActivity, profile

    from vad.engine import train_one_epoch
    from vad.models import create_loss, create_model

    device = torch.device("cuda")
    model = create_model("rtfm", feature_dim=32, n_crops=2, hidden_dim=16, head_dims=(16, 8)).to(device)
    criterion = create_loss("rtfm")
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    features = torch.rand(16, 2, 32, 32, device=device)
    labels = torch.tensor([0] * 8 + [1] * 8)
    batches = [np.r_[np.arange(4) + 4 * (step % 2), 8 + np.arange(4)] for step in range(6)]
    train_one_epoch(model, criterion, optimizer, batches[:2], features, labels, device=device, check_every=25)
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        train_one_epoch(model, criterion, optimizer, batches[2:], features, labels, device=device, check_every=25)
        torch.cuda.synchronize()
    copies = [event.name for event in prof.events() if "HtoD" in event.name]
    assert len(copies) <= 1, copies  # at most the epoch's row indices, once


@cuda
def test_bf16_trains_on_cuda(tmp_path):
    result = train(tiny(device="cuda", precision="bf16"), lambda m, f: None, out_dir=tmp_path)
    assert result.status == "completed" and np.isfinite(result.epochs[0]["train_loss"])
