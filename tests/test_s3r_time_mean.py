"""S3R's time mean (deNormal and the macro classifier): ``avg_pool1d``'s values and gradients, bit for bit, with a
cheaper backward; the whole model's training step is unchanged by it."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vad.models import create_loss, create_model
from vad.models.s3r import normality
from vad.models.s3r.normality import time_mean


@pytest.mark.parametrize("steps", [32, 13, 1])
@pytest.mark.parametrize("time_major", [True, False])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_time_mean_equals_avg_pool1d_bit_for_bit(steps: int, time_major: bool, dtype: torch.dtype) -> None:
    generator = torch.Generator().manual_seed(steps)
    b, c = 5, 24
    if time_major:  # (b, C, T) as the transposed view of a (b, T, C) tensor, as S3R passes it
        data = torch.randn(b, steps, c, generator=generator, dtype=dtype)
        ours, ref = data.clone().requires_grad_(), data.clone().requires_grad_()
        ours_view, ref_view = ours.transpose(1, 2), ref.transpose(1, 2)
    else:
        data = torch.randn(b, c, steps, generator=generator, dtype=dtype)
        ours, ref = data.clone().requires_grad_(), data.clone().requires_grad_()
        ours_view, ref_view = ours, ref
    grad = torch.randn(b, c, 1, generator=generator, dtype=dtype)
    out, expected = time_mean(ours_view), F.avg_pool1d(ref_view, steps)
    assert out.shape == (b, c, 1)
    assert torch.equal(out, expected)
    (out * grad).sum().backward()
    (expected * grad).sum().backward()
    assert torch.equal(ours.grad, ref.grad)
    assert not torch.equal(ours.grad, torch.zeros_like(ours.grad))


def test_time_mean_other_dtypes_run_avg_pool1d() -> None:
    x = torch.randn(2, 8, 4).to(torch.bfloat16).requires_grad_()
    out = time_mean(x)
    assert "TimeMean" not in type(out.grad_fn).__name__
    assert "TimeMean" in type(time_mean(x.detach().float().requires_grad_()).grad_fn).__name__
    assert torch.equal(out, F.avg_pool1d(x, 4))


def _training_step(model: torch.nn.Module, x: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, dict]:
    torch.manual_seed(7)  # same dropout masks in both runs
    loss = create_loss("s3r")(model(x), labels)[0]
    model.zero_grad(set_to_none=True)
    loss.backward()
    return loss.detach(), {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


def test_s3r_training_step_is_bit_identical_to_avg_pool1d_time_mean(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    model = create_model("s3r", feature_dim=64, n_crops=2, n_atoms=6).train()
    model.set_dictionary(torch.relu(torch.randn(6, 64)))
    x = torch.relu(torch.randn(4, 2, 8, 64))
    labels = torch.tensor([0, 0, 1, 1])
    loss, grads = _training_step(model, x, labels)
    monkeypatch.setattr(normality, "time_mean", lambda v: F.avg_pool1d(v, v.shape[-1]))
    from vad.models.s3r import model as model_module

    monkeypatch.setattr(model_module, "time_mean", lambda v: F.avg_pool1d(v, v.shape[-1]))
    ref_loss, ref_grads = _training_step(model, x, labels)
    assert torch.equal(loss, ref_loss)
    assert grads.keys() == ref_grads.keys() and len(grads) > 20
    for name, grad in grads.items():
        assert torch.equal(grad, ref_grads[name]), name
