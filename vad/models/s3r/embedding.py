"""S3R's temporal embedding ("Aggregate"): RTFM's multi-scale network rebuilt with GroupNorm, as S3R codes it.

It differs from RTFM's Aggregate in every block (norm type, norm/ReLU order, bias, non-local names and width),
so it is its own module. Key layout (the authors' names, so their checkpoints load), with ``L = len(dilations)``
and ``H = hidden_dim``:

- ``conv_1`` .. ``conv_L``: ``Conv1d(C -> H, k3, dilation d, padding d, bias)`` (``.0``) -> ``GroupNorm(8, H)``
  (``.1``) -> ReLU, one per dilation;
- ``conv_{L+1}``: ``Conv1d(C -> H, k1, no bias)`` (``.0``) -> ReLU, then ``non_local``;
- ``conv_{L+2}``: ``Conv1d((L+1)*H -> C, k3, padding 1, no bias)`` (``.0``) -> ``GroupNorm(8, C)`` (``.1``) -> ReLU,
  plus the input (residual);
- ``non_local.{value,query,key}`` (1x1 convs ``H -> H/2`` with bias), ``non_local.alter.0`` (1x1 conv ``H/2 -> H``)
  and ``non_local.alter.1`` (``BatchNorm1d(H)``, scale and shift starting at 0).

At the defaults (``dilations=(1, 2, 4)``, ``H = C/4``) these are ``conv_1..conv_3``, ``conv_4``, ``conv_5``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from vad.models.components.time_major import (
    TimeMajorBlock,
    batch_norm_time_major,
    concat_channels,
    conv1d_time_major,
    group_norm_time_major,
)

GROUPS = 8
"""GroupNorm groups in every S3R norm layer (the authors' constant)."""


class NonLocal1d(TimeMajorBlock):
    """S3R's non-local block over time: ``alter((query key^T / T) value) + x``, no softmax.

    ``forward(x (b, channels, T)) -> (b, channels, T)``; ``alter`` = 1x1 conv + BatchNorm whose scale and shift
    start at 0, so the block starts as the identity.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        inner = max(channels // 2, 1)
        # Registered in the authors' order (value, alter, query, key): same seed, same initial weights.
        self.value = nn.Conv1d(channels, inner, kernel_size=1)
        self.alter = nn.Sequential(nn.Conv1d(inner, channels, kernel_size=1), nn.BatchNorm1d(channels))
        nn.init.zeros_(self.alter[1].weight)
        nn.init.zeros_(self.alter[1].bias)
        self.query = nn.Conv1d(channels, inner, kernel_size=1)
        self.key = nn.Conv1d(channels, inner, kernel_size=1)

    def forward_time_major(self, x: Tensor) -> Tensor:
        """``(b, T, channels) -> (b, T, channels)``: the same block on time-major activations (no transposes)."""
        values = conv1d_time_major(x, self.value)  # (b, T, inner)
        queries = conv1d_time_major(x, self.query)  # (b, T, inner)
        keys = conv1d_time_major(x, self.key)  # (b, T, inner)
        affinity = (queries @ keys.transpose(1, 2)) / x.shape[1]  # (b, T, T)
        attended = torch.matmul(affinity, values)  # (b, T, inner)
        return batch_norm_time_major(self.alter[1], conv1d_time_major(attended, self.alter[0])) + x


class Aggregate(nn.Module):
    """``(b, T, C) -> (b, T, C)``: dilated-conv pyramid + (1x1 conv -> non-local) branch, fused, plus residual.

    Computed time-major (a contiguous ``(b, T, C)`` output). The authors' output is the transposed view of a
    ``(b, C, T)`` tensor, so the dropout that follows must draw its mask in that order to keep training-mode runs
    identical to theirs: :func:`~vad.models.components.layout_dropout.dropout_channels_first_order`.
    """

    def __init__(self, feature_dim: int, hidden_dim: int, dilations: Sequence[int]) -> None:
        super().__init__()
        for name, width in (("feature_dim", feature_dim), ("hidden_dim", hidden_dim)):
            if width <= 0 or width % GROUPS:
                raise ValueError(f"S3R's GroupNorm({GROUPS}) needs {name} to be a positive multiple of {GROUPS}, "
                                 f"got {width}")
        if len(dilations) == 0 or any(int(d) < 1 for d in dilations):
            raise ValueError(f"dilations must be one or more positive integers, got {list(dilations)}")
        self.branch_names = [f"conv_{i}" for i in range(1, len(dilations) + 1)]
        for name, dilation in zip(self.branch_names, dilations):
            conv = nn.Conv1d(feature_dim, hidden_dim, kernel_size=3, dilation=int(dilation), padding=int(dilation))
            self.add_module(name, nn.Sequential(conv, nn.GroupNorm(GROUPS, hidden_dim), nn.ReLU()))
        self.local_name = f"conv_{len(dilations) + 1}"
        self.fuse_name = f"conv_{len(dilations) + 2}"
        self.add_module(
            self.local_name, nn.Sequential(nn.Conv1d(feature_dim, hidden_dim, kernel_size=1, bias=False), nn.ReLU())
        )
        fused_width = (len(dilations) + 1) * hidden_dim
        self.add_module(
            self.fuse_name,
            nn.Sequential(
                nn.Conv1d(fused_width, feature_dim, kernel_size=3, padding=1, bias=False),
                nn.GroupNorm(GROUPS, feature_dim),
                nn.ReLU(),
            ),
        )
        self.non_local = NonLocal1d(hidden_dim)

    def forward(self, x: Tensor) -> Tensor:
        """``x (b, T, C)`` -> ``(b, T, C)``, computed time-major (each conv one matrix product, no transposes)."""
        branches = []
        for name in self.branch_names:
            conv, norm, relu = getattr(self, name)
            branches.append(relu(group_norm_time_major(norm, conv1d_time_major(x, conv))))
        conv, relu = getattr(self, self.local_name)
        branches.append(self.non_local.forward_time_major(relu(conv1d_time_major(x, conv))))
        conv, norm, relu = getattr(self, self.fuse_name)
        fused = relu(group_norm_time_major(norm, conv1d_time_major(concat_channels(branches), conv)))  # (b, T, C)
        return fused + x
