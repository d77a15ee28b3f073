"""The fast components behind the models' training step, each against the plain PyTorch op (values and gradients).

``vad/models/components``: time-major convolutions and norms (``time_major.py``), dropout in the authors' mask order
(``layout_dropout.py``), the subnormal-free softmax (``subnormal_softmax.py``) and copy-free class rows
(``class_rows.py``).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vad.models.components.class_rows import class_rows
from vad.models.components.layout_dropout import dropout_channels_first_order
from vad.models.components.subnormal_softmax import SMALLEST_NORMAL, softmax_flush_subnormal
from vad.models.components.time_major import (
    CONV_PATHS,
    TimeMajorBlock,
    batch_norm_time_major,
    concat_channels,
    conv1d_time_major,
    conv_path,
    group_norm_time_major,
    unfold_time,
)


def grads(output: torch.Tensor, inputs: tuple[torch.Tensor, ...], seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Gradients of ``sum(output * g)`` for a fixed random ``g``."""
    g = torch.randn(output.shape, generator=torch.Generator().manual_seed(seed), dtype=output.dtype)
    return torch.autograd.grad(output, inputs, g)


# ----------------------------------------------------------------------------------------------- convolutions


@pytest.mark.parametrize(
    ("kernel", "dilation", "padding", "steps"),
    [(3, 1, 1, 7), (3, 2, 2, 7), (3, 4, 4, 5), (3, 4, 4, 3), (5, 1, 2, 6), (1, 1, 0, 4), (2, 1, 0, 5), (3, 2, 1, 9)],
)
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("path", [*CONV_PATHS, None])
@pytest.mark.parametrize(("in_channels", "out_channels"), [(5, 7), (7, 5)])
def test_conv1d_time_major_equals_conv1d(kernel: int, dilation: int, padding: int, steps: int, bias: bool,
                                         path: str | None, in_channels: int, out_channels: int) -> None:
    """Both paths (and the per-shape default), narrowing and widening convs: outputs and every gradient."""
    torch.manual_seed(0)
    conv = nn.Conv1d(in_channels, out_channels, kernel, dilation=dilation, padding=padding, bias=bias).double()
    x = torch.randn(3, steps, in_channels, dtype=torch.float64, requires_grad=True)
    params = (x, conv.weight) + ((conv.bias,) if bias else ())
    expected = conv(x.transpose(1, 2)).transpose(1, 2)
    got = conv1d_time_major(x, conv, path)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    for a, b in zip(grads(got, params), grads(expected, params)):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_conv1d_time_major_float32_matches_to_rounding() -> None:
    torch.manual_seed(1)
    conv = nn.Conv1d(64, 32, 3, dilation=2, padding=2)
    x = torch.randn(4, 16, 64)
    torch.testing.assert_close(conv1d_time_major(x, conv), conv(x.transpose(1, 2)).transpose(1, 2),
                               rtol=1e-5, atol=1e-5)


def test_conv_path_sums_output_taps_when_the_conv_narrows() -> None:
    assert conv_path(2048, 512) == conv_path(2048, 64) == "sum_output_taps"
    assert conv_path(1024, 1024) == conv_path(1, 64) == "unfold_input"
    with pytest.raises(ValueError, match="path must be one of"):
        conv1d_time_major(torch.zeros(1, 8, 4), nn.Conv1d(4, 4, 3, padding=1), "direct")


def test_sum_output_taps_rejects_too_short_sequences() -> None:
    with pytest.raises(ValueError, match="needs more than 2 steps"):
        conv1d_time_major(torch.zeros(1, 2, 4), nn.Conv1d(4, 4, 5), "sum_output_taps")


def test_unfold_time_layout_is_tap_major_with_zero_padding() -> None:
    x = torch.arange(1.0, 7.0).view(1, 3, 2)  # steps [1, 2], [3, 4], [5, 6]
    columns = unfold_time(x, kernel_size=3, dilation=1, padding=1)  # (1, 3, 3 * 2)
    expected = torch.tensor([[[0, 0, 1, 2, 3, 4], [1, 2, 3, 4, 5, 6], [3, 4, 5, 6, 0, 0]]], dtype=x.dtype)
    torch.testing.assert_close(columns, expected, rtol=0, atol=0)


def test_unfold_time_rejects_too_short_sequences_and_unsupported_convs() -> None:
    with pytest.raises(ValueError, match="needs more than 2 steps"):
        unfold_time(torch.zeros(1, 2, 3), kernel_size=5, dilation=1, padding=0)
    with pytest.raises(ValueError, match="stride 1"):
        conv1d_time_major(torch.zeros(1, 8, 4), nn.Conv1d(4, 4, 3, stride=2))
    with pytest.raises(ValueError, match=r"\(b, T, 4\)"):
        conv1d_time_major(torch.zeros(1, 8, 5), nn.Conv1d(4, 4, 3, padding=1))


# ----------------------------------------------------------------------------------------------- norms, concat


@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_time_major_equals_channels_first(training: bool) -> None:
    torch.manual_seed(2)
    norms = [nn.BatchNorm1d(6).double().train(training) for _ in range(2)]
    with torch.no_grad():
        for norm in norms:
            norm.weight.copy_(torch.linspace(0.5, 2.0, 6))
            norm.bias.copy_(torch.linspace(-1.0, 1.0, 6))
            norm.running_mean.fill_(0.3)
            norm.running_var.fill_(2.0)
    x = torch.randn(4, 5, 6, dtype=torch.float64, requires_grad=True)
    got = batch_norm_time_major(norms[0], x)
    expected = norms[1](x.transpose(1, 2)).transpose(1, 2)
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(norms[0].running_mean, norms[1].running_mean)  # same statistics, same n
    torch.testing.assert_close(norms[0].running_var, norms[1].running_var)
    params = (x, norms[0].weight, norms[0].bias)
    ref_params = (x, norms[1].weight, norms[1].bias)
    for a, b in zip(grads(got, params), grads(expected, ref_params)):
        torch.testing.assert_close(a, b)


def test_group_norm_time_major_equals_channels_first() -> None:
    torch.manual_seed(3)
    norm = nn.GroupNorm(4, 16).double()
    with torch.no_grad():
        norm.weight.normal_()
        norm.bias.normal_()
    x = torch.randn(3, 7, 16, dtype=torch.float64, requires_grad=True)
    got = group_norm_time_major(norm, x)
    expected = norm(x.transpose(1, 2)).transpose(1, 2)
    torch.testing.assert_close(got, expected)
    for a, b in zip(grads(got, (x, norm.weight, norm.bias)), grads(expected, (x, norm.weight, norm.bias))):
        torch.testing.assert_close(a, b)


def test_concat_channels_equals_cat_and_gives_contiguous_gradients() -> None:
    parts = [torch.randn(2, 3, width, requires_grad=True) for width in (2, 5, 1)]
    got = concat_channels(parts)
    torch.testing.assert_close(got, torch.cat(parts, dim=-1), rtol=0, atol=0)
    got_grads = grads(got, tuple(parts))
    for part_grad, expected in zip(got_grads, grads(torch.cat(parts, dim=-1), tuple(parts))):
        assert part_grad.is_contiguous()
        torch.testing.assert_close(part_grad, expected, rtol=0, atol=0)


def test_time_major_block_called_directly_is_channels_first() -> None:
    class Scale(TimeMajorBlock):
        def forward_time_major(self, x: torch.Tensor) -> torch.Tensor:
            return x * torch.arange(1.0, x.shape[-1] + 1)  # per channel: proves the axis it sees

    x = torch.randn(2, 3, 5)  # (b, C=3, T=5)
    torch.testing.assert_close(Scale()(x), x * torch.tensor([1.0, 2.0, 3.0]).view(1, 3, 1))


# ----------------------------------------------------------------------------------------------- dropout order


@pytest.mark.parametrize(("shape", "p"), [((4, 6, 5), 0.7), ((3, 512, 64), 0.3), ((2, 2048, 33), 0.7)])
def test_dropout_channels_first_order_is_the_authors_mask_bit_for_bit(shape: tuple[int, int, int], p: float) -> None:
    """Same seed: the mask F.dropout draws on the authors' (b, C, T)-laid-out view, values and gradients (small
    tensors and ones large enough for the parallel random-number kernel)."""
    channels_first = torch.randn(*shape, requires_grad=True)  # (b, C, T) memory, as the authors' Aggregate output
    torch.manual_seed(7)
    expected = F.dropout(channels_first.transpose(1, 2), p, training=True)
    time_major = channels_first.detach().transpose(1, 2).contiguous().requires_grad_()
    torch.manual_seed(7)
    got = dropout_channels_first_order(time_major, p, training=True)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    (expected_grad,) = grads(expected, (channels_first,))
    (got_grad,) = grads(got, (time_major,))
    torch.testing.assert_close(got_grad, expected_grad.transpose(1, 2), rtol=0, atol=0)
    torch.manual_seed(7)
    plain = F.dropout(time_major, p, training=True)
    assert not torch.equal(plain, got)  # a plain dropout on the time-major tensor would draw another mask


def test_dropout_channels_first_order_is_identity_when_off() -> None:
    x = torch.randn(2, 3, 4)
    assert dropout_channels_first_order(x, 0.7, training=False) is x
    assert dropout_channels_first_order(x, 0.0, training=True) is x
    with pytest.raises(ValueError, match=r"\(b, T, C\)"):
        dropout_channels_first_order(torch.randn(2, 3), 0.5, training=True)


# ----------------------------------------------------------------------------------------------- softmax


def test_softmax_flush_subnormal_equals_softmax_except_subnormals() -> None:
    torch.manual_seed(4)
    logits = torch.randn(3, 7, 50) * 40.0  # peaked: many probabilities below 2**-126
    logits.requires_grad_(True)
    expected = torch.softmax(logits, dim=-1)
    got = softmax_flush_subnormal(logits, dim=-1)
    subnormal = (expected > 0) & (expected < SMALLEST_NORMAL)
    assert bool(subnormal.any()), "the test input must produce subnormal probabilities"
    assert bool((got[subnormal] == 0).all())
    torch.testing.assert_close(got[~subnormal], expected[~subnormal], rtol=0, atol=0)
    (got_grad,) = grads(got, (logits,))
    (expected_grad,) = grads(expected, (logits,))
    assert not bool(((got_grad != 0) & (got_grad.abs() < SMALLEST_NORMAL)).any())  # no subnormal gradient left
    # equal but at the subnormal scale (entries whose probability was flushed lose a gradient below ~1e-37)
    torch.testing.assert_close(got_grad, expected_grad, rtol=1e-6, atol=1e-36)
    assert bool((expected_grad.abs() > 1e-6).any())  # the gradient is not trivially tiny everywhere


def test_softmax_flush_subnormal_other_dtypes_are_plain_softmax() -> None:
    x = torch.randn(2, 5, dtype=torch.float64) * 100
    torch.testing.assert_close(softmax_flush_subnormal(x, dim=-1), torch.softmax(x, dim=-1), rtol=0, atol=0)


# ----------------------------------------------------------------------------------------------- class rows


def test_class_rows_are_slices_for_normal_first_batches() -> None:
    normal, abnormal = class_rows(torch.tensor([0, 0, 0, 1, 1, 1]), torch.device("cpu"))
    assert normal == slice(0, 3) and abnormal == slice(3, 6)


def test_class_rows_are_index_tensors_for_mixed_batches_and_select_the_same_rows() -> None:
    labels = torch.tensor([0, 1, 0, 1])
    normal, abnormal = class_rows(labels, torch.device("cpu"))
    assert torch.equal(normal, torch.tensor([0, 2])) and torch.equal(abnormal, torch.tensor([1, 3]))
    normal_block, abnormal_block = class_rows(torch.tensor([1, 0, 0, 1]), torch.device("cpu"))
    assert normal_block == slice(1, 3) and torch.equal(abnormal_block, torch.tensor([0, 3]))


def test_class_rows_keeps_split_by_label_errors() -> None:
    with pytest.raises(ValueError, match="both normal and abnormal"):
        class_rows(torch.tensor([0, 0]), torch.device("cpu"))
    with pytest.raises(ValueError, match="one to one"):
        class_rows(torch.tensor([0, 1, 1]), torch.device("cpu"))
