"""RTFM's multi-scale temporal network ("Aggregate"): a pyramid of dilated convs beside a non-local branch.

Key layout (names kept from the authors' code so their checkpoints load), with ``L = len(dilations)``:

- ``conv_1`` .. ``conv_L``: ``Conv1d(C -> hidden, k3, dilation d, padding d, bias)`` (``.0``) -> ReLU ->
  ``BatchNorm1d(hidden)`` (``.2``), one per dilation;
- ``conv_{L+1}``: ``Conv1d(C -> hidden, k1, no bias)`` (``.0``) -> ReLU, then ``non_local``;
- ``conv_{L+2}``: ``Conv1d((L+1)*hidden -> C, k3, padding 1, no bias)`` (``.0``) -> ReLU -> ``BatchNorm1d(C)``
  (``.2``), plus the input (residual);
- ``non_local.{g,theta,phi}`` (1x1 convs with bias), ``non_local.W.0`` (1x1 conv) and ``non_local.W.1`` (BatchNorm).

At the defaults (``dilations=(1, 2, 4)``) these are ``conv_1..conv_3``, ``conv_4``, ``conv_5`` as in the original.
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
)


class NonLocalBlock1d(TimeMajorBlock):
    """Non-local block over time with the "dot product" affinity ``theta^T phi / T`` (no softmax).

    ``forward(x (b, channels, T)) -> W(y) + x`` with ``y = (theta^T phi / T) g``; ``W`` = 1x1 conv + BatchNorm
    whose scale and shift start at 0, so the block starts as the identity.
    """

    def __init__(self, channels: int, inner: int) -> None:
        super().__init__()
        self.inner = inner
        # Built in the authors' order (g, W, theta, phi) so the same seed gives the same initial weights.
        self.g = nn.Conv1d(channels, inner, kernel_size=1)
        self.W = nn.Sequential(nn.Conv1d(inner, channels, kernel_size=1), nn.BatchNorm1d(channels))
        nn.init.zeros_(self.W[1].weight)
        nn.init.zeros_(self.W[1].bias)
        self.theta = nn.Conv1d(channels, inner, kernel_size=1)
        self.phi = nn.Conv1d(channels, inner, kernel_size=1)

    def forward_time_major(self, x: Tensor) -> Tensor:
        """``(b, T, channels) -> (b, T, channels)``: the same block on time-major activations (no transposes)."""
        values = conv1d_time_major(x, self.g)  # (b, T, inner)
        queries = conv1d_time_major(x, self.theta)  # (b, T, inner)
        keys = conv1d_time_major(x, self.phi)  # (b, T, inner)
        affinity = torch.matmul(queries, keys.transpose(1, 2)) / x.shape[1]  # (b, T, T)
        attended = torch.matmul(affinity, values)  # (b, T, inner)
        return batch_norm_time_major(self.W[1], conv1d_time_major(attended, self.W[0])) + x


class Aggregate(nn.Module):
    """``(b, T, C) -> (b, T, C)``: dilated-conv pyramid + (1x1 conv -> non-local) branch, fused, plus residual."""

    def __init__(
        self, feature_dim: int, hidden_dim: int, dilations: Sequence[int], non_local_inner: int
    ) -> None:
        super().__init__()
        self.branch_names = [f"conv_{i}" for i in range(1, len(dilations) + 1)]
        for name, dilation in zip(self.branch_names, dilations):
            conv = nn.Conv1d(feature_dim, hidden_dim, kernel_size=3, dilation=dilation, padding=dilation)
            self.add_module(name, nn.Sequential(conv, nn.ReLU(), nn.BatchNorm1d(hidden_dim)))
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
                nn.ReLU(),
                nn.BatchNorm1d(feature_dim),
            ),
        )
        self.non_local = NonLocalBlock1d(hidden_dim, non_local_inner)

    def forward(self, x: Tensor) -> Tensor:
        """``x (b, T, C)`` -> ``(b, T, C)``, computed time-major (each conv one matrix product, no transposes)."""
        branches = []
        for name in self.branch_names:
            conv, relu, norm = getattr(self, name)
            branches.append(batch_norm_time_major(norm, relu(conv1d_time_major(x, conv))))
        conv, relu = getattr(self, self.local_name)
        branches.append(self.non_local.forward_time_major(relu(conv1d_time_major(x, conv))))
        conv, relu, norm = getattr(self, self.fuse_name)
        fused = batch_norm_time_major(norm, relu(conv1d_time_major(concat_channels(branches), conv)))  # (b, T, C)
        return fused + x
