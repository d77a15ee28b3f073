"""The non-local block over time that RTFM and S3R share, under each model's own attribute names."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from vad.models.components.time_major import TimeMajorBlock, conv1d_time_major, sequential_time_major


class NonLocalNames(NamedTuple):
    """A model's names for the block's layers, in the authors' registration order."""

    value: str
    out: str
    query: str
    key: str


class NonLocal1d(TimeMajorBlock):
    """Non-local block over time with the "dot product" affinity ``query key^T / T`` (no softmax).

    ``forward(x (b, channels, T)) -> out(y) + x`` with ``y = (query key^T / T) value``; ``query``, ``key`` and
    ``value`` are 1x1 convs ``channels -> inner`` (with bias), ``out`` a 1x1 conv ``inner -> channels`` and a
    BatchNorm whose scale and shift start at 0, so the block starts as the identity. The layers are registered
    under ``names`` in the order value, out, query, key (the authors'): the same seed gives the same weights.
    """

    def __init__(self, channels: int, inner: int, names: NonLocalNames) -> None:
        super().__init__()
        self.inner, self.names = inner, names
        self.add_module(names.value, nn.Conv1d(channels, inner, kernel_size=1))
        out = nn.Sequential(nn.Conv1d(inner, channels, kernel_size=1), nn.BatchNorm1d(channels))
        nn.init.zeros_(out[1].weight)
        nn.init.zeros_(out[1].bias)
        self.add_module(names.out, out)
        self.add_module(names.query, nn.Conv1d(channels, inner, kernel_size=1))
        self.add_module(names.key, nn.Conv1d(channels, inner, kernel_size=1))

    def forward_time_major(self, x: Tensor) -> Tensor:
        """``(b, T, channels) -> (b, T, channels)``: the same block on time-major activations (no transposes)."""
        values = conv1d_time_major(x, getattr(self, self.names.value))  # (b, T, inner)
        queries = conv1d_time_major(x, getattr(self, self.names.query))  # (b, T, inner)
        keys = conv1d_time_major(x, getattr(self, self.names.key))  # (b, T, inner)
        affinity = torch.matmul(queries, keys.transpose(1, 2)) / x.shape[1]  # (b, T, T)
        attended = torch.matmul(affinity, values)  # (b, T, inner)
        return sequential_time_major(getattr(self, self.names.out), attended) + x
