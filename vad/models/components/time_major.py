"""Temporal layers on time-major ``(b, T, C)`` tensors: convolutions as one matrix product each, and norms.

The models keep their ``nn.Conv1d`` / ``nn.BatchNorm1d`` / ``nn.GroupNorm`` modules (so parameters, state_dict
keys, initialisation and checkpoints are unchanged) but run them on ``(b, T, C)`` activations, the layout the
features arrive in and the one the snippet classifiers want: no ``permute``/``contiguous`` copies between the
blocks, and each convolution is a single large GEMM (``(b*T, k*C_in) @ (k*C_in, C_out)``) that the BLAS runs
close to the machine's float32 matmul peak, forward and backward. The results equal the modules applied to the
channels-first ``(b, C, T)`` input up to float32 rounding (the sums are taken in another order).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _check_supported(conv: nn.Conv1d) -> None:
    """The convolutions the models use: stride 1, no groups, zero padding."""
    if conv.stride != (1,) or conv.groups != 1 or conv.padding_mode != "zeros" or isinstance(conv.padding, str):
        raise ValueError(
            f"conv1d_time_major supports stride 1, groups 1, numeric zero padding; got stride={conv.stride}, "
            f"groups={conv.groups}, padding={conv.padding!r}, padding_mode={conv.padding_mode!r}"
        )


def output_steps(steps: int, kernel_size: int, dilation: int, padding: int) -> int:
    """``T_out = T + 2 * padding - dilation * (kernel_size - 1)`` of a stride-1 temporal conv; an error below 1."""
    steps_out = steps + 2 * padding - dilation * (kernel_size - 1)
    if steps_out < 1:
        raise ValueError(f"temporal conv (kernel {kernel_size}, dilation {dilation}, padding {padding}) needs more "
                         f"than {steps} steps")
    return steps_out


def _tap_ranges(steps: int, kernel_size: int, dilation: int, padding: int) -> list[tuple[int, int, int]]:
    """Per tap ``j``: ``(shift, first, stop)``: output steps ``first..stop-1`` read input step ``t + shift``."""
    steps_out = output_steps(steps, kernel_size, dilation, padding)
    ranges = []
    for j in range(kernel_size):
        shift = j * dilation - padding
        first, stop = max(0, -shift), min(steps_out, steps - shift)
        ranges.append((shift, first, max(first, stop)))
    return ranges


class _UnfoldTime(torch.autograd.Function):
    """``(b, T, C) -> (b, T_out, k, C)`` zero-padded taps; backward sums the taps' gradients back (no padding copy)."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: Tensor, kernel_size: int, dilation: int,
                padding: int) -> Tensor:
        b, t, c = x.shape
        ranges = _tap_ranges(t, kernel_size, dilation, padding)
        columns = x.new_empty(b, output_steps(t, kernel_size, dilation, padding), kernel_size, c)
        for j, (shift, first, stop) in enumerate(ranges):
            columns[:, first:stop, j] = x[:, first + shift : stop + shift]
            columns[:, :first, j] = 0.0
            columns[:, stop:, j] = 0.0
        ctx.ranges, ctx.steps = ranges, t
        return columns

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: Tensor) -> tuple[Tensor, None, None, None]:
        b, _, _, c = grad.shape
        grad_x = grad.new_zeros(b, ctx.steps, c)
        for j, (shift, first, stop) in enumerate(ctx.ranges):
            grad_x[:, first + shift : stop + shift] += grad[:, first:stop, j]
        return grad_x, None, None, None


def unfold_time(x: Tensor, kernel_size: int, dilation: int, padding: int) -> Tensor:
    """``(b, T, C) -> (b, T_out, kernel_size * C)``: the zero-padded taps of every output step, tap-major.

    Column ``j * C + c`` of step ``t`` holds ``x[t - padding + j * dilation, c]`` (0 outside the sequence);
    ``T_out = T + 2 * padding - dilation * (kernel_size - 1)``. One copy forward, one accumulation backward.
    """
    b, t, c = x.shape
    steps_out = output_steps(t, kernel_size, dilation, padding)
    return _UnfoldTime.apply(x, kernel_size, dilation, padding).view(b, steps_out, kernel_size * c)


class _SumTaps(torch.autograd.Function):
    """``(b, T, k, C) -> (b, T_out, C)``: output step ``t`` sums tap ``j``'s row ``t + shift_j`` (the adjoint of
    :class:`_UnfoldTime`'s layout on the output side); backward places each gradient row back in its tap slot."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, taps: Tensor, kernel_size: int, dilation: int,
                padding: int) -> Tensor:
        b, t, _, c = taps.shape
        ranges = _tap_ranges(t, kernel_size, dilation, padding)
        steps_out = output_steps(t, kernel_size, dilation, padding)
        full = [j for j, (_, first, stop) in enumerate(ranges) if first == 0 and stop == steps_out]
        if full:  # a tap that covers every output step starts the sum: no zero fill, one pass less
            shift = ranges[full[0]][0]
            out = taps[:, shift : shift + steps_out, full[0]].clone(memory_format=torch.contiguous_format)
        else:
            out = taps.new_zeros(b, steps_out, c)
        for j, (shift, first, stop) in enumerate(ranges):
            if full and j == full[0]:
                continue
            out[:, first:stop] += taps[:, first + shift : stop + shift, j]
        ctx.ranges, ctx.steps = ranges, t
        return out

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: Tensor) -> tuple[Tensor, None, None, None]:
        b, _, c = grad.shape
        grad_taps = grad.new_empty(b, ctx.steps, len(ctx.ranges), c)
        for j, (shift, first, stop) in enumerate(ctx.ranges):
            grad_taps[:, first + shift : stop + shift, j] = grad[:, first:stop]
            grad_taps[:, : first + shift, j] = 0.0
            grad_taps[:, stop + shift :, j] = 0.0
        return grad_taps, None, None, None


CONV_PATHS = ("unfold_input", "sum_output_taps")
"""How :func:`conv1d_time_major` runs a temporal convolution (``k > 1``), both one GEMM over ``b * T`` rows:

- ``unfold_input``: ``(b*T_out, k*C_in) @ (k*C_in, C_out)`` on the zero-padded taps of the input (a copy of
  ``k * C_in`` columns per step, kept for the weight gradient);
- ``sum_output_taps``: ``(b*T, C_in) @ (C_in, k*C_out)`` gives every tap's product at once, then each output step
  sums its ``k`` shifted rows (a pass over ``k * C_out`` columns; the input itself is kept for the gradients).

The copies scale with ``C_in`` in the first and with ``C_out`` in the second, and the second keeps only the input
for the backward pass (the first keeps its ``k``-times wider copy). Timed on every conv shape of the shipped configs
(``benchmarks/conv_paths.py``, ``benchmarks/RESULTS.md`` ``## conv_paths``): the second takes 0.41-0.43x the time on
MGFN's ``2048 -> 64`` embedding and 0.88-0.92x on XD-size ``1024 -> 512`` branches; at equal widths the runs disagree
(0.80-1.18x, within this machine's noise), so those keep the first. :func:`conv_path` encodes that rule."""


def conv_path(in_channels: int, out_channels: int) -> str:
    """The path of :data:`CONV_PATHS` for a temporal conv of these widths: ``sum_output_taps`` when the conv narrows
    (a fixed rule, so a run's float32 sums never depend on timings)."""
    return "sum_output_taps" if out_channels < in_channels else "unfold_input"


def conv1d_time_major(x: Tensor, conv: nn.Conv1d, path: str | None = None) -> Tensor:
    """``conv`` applied over time to ``x (b, T, C_in)`` -> ``(b, T_out, C_out)``, as one matrix product.

    Equals ``conv(x.transpose(1, 2)).transpose(1, 2)`` up to float32 rounding, with the same parameters (so the
    same gradients reach ``conv.weight`` and ``conv.bias``). ``path`` (one of :data:`CONV_PATHS`; default
    :func:`conv_path` of the conv's widths) only changes how the sums are taken.
    """
    _check_supported(conv)
    out_channels, in_channels, kernel_size = conv.weight.shape
    if x.dim() != 3 or x.shape[2] != in_channels:
        raise ValueError(f"conv1d_time_major expects (b, T, {in_channels}) input, got {tuple(x.shape)}")
    if kernel_size == 1 and conv.padding[0] == 0:
        return F.linear(x, conv.weight.view(out_channels, in_channels), conv.bias)
    path = path or conv_path(in_channels, out_channels)
    output_steps(x.shape[1], kernel_size, conv.dilation[0], conv.padding[0])  # a too-short input fails before any work
    if path == "sum_output_taps":
        weight = conv.weight.permute(2, 0, 1).reshape(kernel_size * out_channels, in_channels)  # row j*C_out + o
        taps = F.linear(x, weight).view(x.shape[0], x.shape[1], kernel_size, out_channels)  # (b, T, k, C_out)
        out = _SumTaps.apply(taps, kernel_size, conv.dilation[0], conv.padding[0])
        return out if conv.bias is None else out + conv.bias
    if path != "unfold_input":
        raise ValueError(f"conv1d_time_major: path must be one of {', '.join(CONV_PATHS)}; got {path!r}")
    columns = unfold_time(x, kernel_size, conv.dilation[0], conv.padding[0])  # (b, T_out, k * C_in), tap-major
    weight = conv.weight.permute(0, 2, 1).reshape(out_channels, kernel_size * in_channels)  # same order
    return F.linear(columns, weight, conv.bias)


class _ConcatChannels(torch.autograd.Function):
    """``torch.cat(dim=-1)`` whose backward hands each input a contiguous gradient (norm backwards run ~10x slower
    on the strided slices a plain ``cat`` gives back)."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, *tensors: Tensor) -> Tensor:
        ctx.widths = [t.shape[-1] for t in tensors]
        ctx.dtypes = [t.dtype for t in tensors]  # cat may promote (e.g. bf16 + float32 under autocast)
        return torch.cat(tensors, dim=-1)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: Tensor) -> tuple[Tensor, ...]:
        parts = grad.split(ctx.widths, dim=-1)
        return tuple(part.to(dtype).contiguous() for part, dtype in zip(parts, ctx.dtypes))


def concat_channels(tensors: list[Tensor]) -> Tensor:
    """``torch.cat(tensors, dim=-1)`` for ``(b, T, C_i)`` tensors, with contiguous gradients for each input."""
    return _ConcatChannels.apply(*tensors)


def batch_norm_time_major(norm: nn.BatchNorm1d, x: Tensor) -> Tensor:
    """``norm`` on ``x (b, T, C)``: per channel, statistics over ``b`` and ``T`` exactly as on ``(b, C, T)``."""
    return norm(x.reshape(-1, x.shape[-1])).view(x.shape)


def group_norm_time_major(norm: nn.GroupNorm, x: Tensor) -> Tensor:
    """``norm`` on ``x (b, T, C)`` as on ``(b, C, T)``: statistics per video and group of channels, over time.

    Runs PyTorch's channels-last GroupNorm kernel on a ``(b, C, T, 1)`` view of the same memory: no copies.
    """
    b, t, c = x.shape
    channels_last = x.reshape(b, t, 1, c).permute(0, 3, 1, 2)  # (b, C, T, 1), channels-last strides
    return norm(channels_last).permute(0, 2, 3, 1).reshape(b, t, c)


def sequential_time_major(block: nn.Sequential, x: Tensor) -> Tensor:
    """``block``'s layers in turn on ``x (b, T, C)``: ``Conv1d``, ``BatchNorm1d`` and ``GroupNorm`` time-major (as
    above), any other layer (an activation) called as it is."""
    for layer in block:
        if isinstance(layer, nn.Conv1d):
            x = conv1d_time_major(x, layer)
        elif isinstance(layer, nn.BatchNorm1d):
            x = batch_norm_time_major(layer, x)
        elif isinstance(layer, nn.GroupNorm):
            x = group_norm_time_major(layer, x)
        else:
            x = layer(x)
    return x


class TimeMajorBlock(nn.Module):
    """A block computed on time-major ``(b, T, C)`` tensors by :meth:`forward_time_major`.

    Calling the module itself keeps the channels-first ``(b, C, T)`` convention of ``nn.Conv1d`` (it transposes
    around :meth:`forward_time_major`), so it can stand alone like the authors' block; the models chain the
    time-major forwards and never transpose.
    """

    def forward(self, x: Tensor) -> Tensor:
        """``(b, C, T) -> (b, C', T)``."""
        return self.forward_time_major(x.transpose(1, 2)).transpose(1, 2)

    def forward_time_major(self, x: Tensor) -> Tensor:
        """``(b, T, C) -> (b, T, C')``."""
        raise NotImplementedError
