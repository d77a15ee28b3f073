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
from functools import partial

from torch import nn

from vad.models.components.multi_scale import MultiScaleAggregate
from vad.models.components.non_local import NonLocal1d, NonLocalNames

NON_LOCAL_NAMES = NonLocalNames(value="g", out="W", query="theta", key="phi")
"""The authors' names of the non-local block's layers (built in the order g, W, theta, phi)."""


def conv_relu_norm(conv: nn.Conv1d, width: int) -> nn.Sequential:
    """RTFM's block: ``conv`` -> ReLU -> ``BatchNorm1d(width)``."""
    return nn.Sequential(conv, nn.ReLU(), nn.BatchNorm1d(width))


class Aggregate(MultiScaleAggregate):
    """``(b, T, C) -> (b, T, C)``: dilated-conv pyramid + (1x1 conv -> non-local) branch, fused, plus residual."""

    def __init__(self, feature_dim: int, hidden_dim: int, dilations: Sequence[int], non_local_inner: int) -> None:
        non_local = partial(NonLocal1d, inner=non_local_inner, names=NON_LOCAL_NAMES)
        super().__init__(feature_dim, hidden_dim, dilations, conv_relu_norm, non_local)
