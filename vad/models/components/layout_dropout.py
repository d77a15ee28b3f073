"""Dropout on time-major activations that draws its mask in the channels-first memory order of the authors' code.

In the authors' RTFM and S3R, the temporal network returns ``out.permute(0, 2, 1)``: a ``(b, T, C)`` view of a
channels-first ``(b, C, T)`` tensor. ``F.dropout`` on CPU fills its mask in *memory* order, so the random stream
lands on the elements in ``(b, C, T)`` order. Our temporal networks produce contiguous ``(b, T, C)`` tensors (no
transposes), so a plain ``F.dropout`` would give other masks for the same seed. :func:`dropout_channels_first_order`
draws the mask on a ``(b, C, T)`` tensor and applies it to the ``(b, T, C)`` input: with the same seed, the same
mask, values and gradients as ``F.dropout`` on the authors' view, bit for bit.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def dropout_channels_first_order(x: Tensor, p: float, training: bool) -> Tensor:
    """``F.dropout`` of ``x (b, T, C)`` with the mask drawn as if ``x`` were the view ``y.transpose(1, 2)`` of a
    contiguous ``y (b, C, T)``; the identity when not training or ``p == 0``.

    The mask is ``F.dropout`` of a channels-first tensor of ones (values 0 or ``1 / (1 - p)``), so the random
    stream is consumed exactly as by the authors' call; ``x * mask`` then equals their output element for element.
    On CPU the mask is drawn the way ``F.dropout`` draws its noise there (``bernoulli_(1 - p)`` on a ``(b, C, T)``
    tensor, divided by ``1 - p``; tested equal to ``F.dropout``), which skips the tensor of ones and one product:
    two passes over an activation-sized tensor per step. Other devices call ``F.dropout`` (CUDA's fused kernel
    consumes its random stream differently).
    """
    if not training or p == 0.0:
        return x
    if x.dim() != 3:
        raise ValueError(f"dropout_channels_first_order expects (b, T, C) input, got shape {tuple(x.shape)}")
    b, t, c = x.shape
    if x.device.type == "cpu":
        mask = x.new_empty(b, c, t).bernoulli_(1.0 - p).div_(1.0 - p)
    else:
        mask = F.dropout(x.new_ones(b, c, t), p, training=True)
    return x * mask.transpose(1, 2)
