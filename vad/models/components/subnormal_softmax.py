"""Softmax whose output and input gradient carry no subnormal floats (CPU), so the matrix products around it stay fast.

S3R's enNormal takes an unscaled softmax over hundreds of atoms: a large share of the attention weights (and of
their gradients) falls below float32's smallest normal number (2**-126, about 1.2e-38). x86 CPUs handle such
subnormal operands in microcode, and the batched matrix products that read them run 20-70x slower (measured 4
instead of 290 GFLOP/s on the training step's ``attention @ values``). Setting the CPU's flush-to-zero mode is not
an option from PyTorch (``torch.set_flush_denormal`` only reaches the calling thread, not the worker threads).

:func:`softmax_flush_subnormal` is ``torch.softmax`` with every output and input-gradient entry below 2**-126
replaced by 0, what a flush-to-zero CPU or GPU computes: every other entry is bit-identical to ``torch.softmax``
and its backward, and the dropped values are more than 2**100 times smaller than the row sums they belong to.
On other devices it is plain ``torch.softmax``.
"""

from __future__ import annotations

import torch
from torch import Tensor

SMALLEST_NORMAL = torch.finfo(torch.float32).tiny
"""2**-126: float32 values below this (in magnitude) are subnormal."""


class _SoftmaxFlushSubnormal(torch.autograd.Function):
    """``softmax(x, dim)`` and its backward, subnormal results set to 0 (both directions)."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: Tensor, dim: int) -> Tensor:
        probabilities = torch.softmax(x, dim=dim)
        probabilities.masked_fill_(probabilities < SMALLEST_NORMAL, 0.0)
        ctx.save_for_backward(probabilities)
        ctx.dim = dim
        return probabilities

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: Tensor) -> tuple[Tensor, None]:
        (probabilities,) = ctx.saved_tensors
        grad_input = torch._softmax_backward_data(grad.contiguous(), probabilities, ctx.dim, probabilities.dtype)
        grad_input.masked_fill_(grad_input.abs() < SMALLEST_NORMAL, 0.0)
        return grad_input, None


def softmax_flush_subnormal(x: Tensor, dim: int) -> Tensor:
    """``torch.softmax(x, dim)`` without subnormal values in its output or gradient on float32 CPU tensors.

    ``x``: any shape; the result has the same shape. Other dtypes and devices get plain ``torch.softmax``.
    """
    if x.device.type != "cpu" or x.dtype != torch.float32:
        return torch.softmax(x, dim=dim)
    return _SoftmaxFlushSubnormal.apply(x, dim)
