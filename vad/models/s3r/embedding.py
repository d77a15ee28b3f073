"""S3R's temporal embedding ("Aggregate"): RTFM's multi-scale network rebuilt with GroupNorm, as S3R codes it.

It differs from RTFM's Aggregate in every block (norm type, norm/ReLU order, non-local names and width), which
it passes to the shared :class:`~vad.models.components.multi_scale.MultiScaleAggregate`. Key layout (the authors'
names, so their checkpoints load), with ``L = len(dilations)`` and ``H = hidden_dim``:

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

from torch import nn

from vad.models.components.multi_scale import MultiScaleAggregate
from vad.models.components.non_local import NonLocal1d, NonLocalNames

GROUPS = 8
"""GroupNorm groups in every S3R norm layer (the authors' constant)."""

NON_LOCAL_NAMES = NonLocalNames(value="value", out="alter", query="query", key="key")
"""The authors' names of the non-local block's layers (built in the order value, alter, query, key)."""


def conv_norm_relu(conv: nn.Conv1d, width: int) -> nn.Sequential:
    """S3R's block: ``conv`` -> ``GroupNorm(GROUPS, width)`` -> ReLU."""
    return nn.Sequential(conv, nn.GroupNorm(GROUPS, width), nn.ReLU())


def non_local(channels: int) -> NonLocal1d:
    """S3R's non-local block: ``channels / 2`` wide (at least 1)."""
    return NonLocal1d(channels, max(channels // 2, 1), NON_LOCAL_NAMES)


class Aggregate(MultiScaleAggregate):
    """``(b, T, C) -> (b, T, C)``: dilated-conv pyramid + (1x1 conv -> non-local) branch, fused, plus residual.

    Computed time-major (a contiguous ``(b, T, C)`` output). The authors' output is the transposed view of a
    ``(b, C, T)`` tensor, so the dropout that follows must draw its mask in that order to keep training-mode runs
    identical to theirs: :func:`~vad.models.components.layout_dropout.dropout_channels_first_order`.
    """

    def __init__(self, feature_dim: int, hidden_dim: int, dilations: Sequence[int]) -> None:
        for name, width in (("feature_dim", feature_dim), ("hidden_dim", hidden_dim)):
            if width <= 0 or width % GROUPS:
                raise ValueError(f"S3R's GroupNorm({GROUPS}) needs {name} to be a positive multiple of {GROUPS}, "
                                 f"got {width}")
        if len(dilations) == 0 or any(int(d) < 1 for d in dilations):
            raise ValueError(f"dilations must be one or more positive integers, got {list(dilations)}")
        super().__init__(feature_dim, hidden_dim, dilations, conv_norm_relu, non_local)
