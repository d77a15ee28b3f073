"""RTFM (Tian et al., ICCV 2021): multi-scale temporal network + snippet classifier, as in the authors' code."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import Tensor, nn

from vad.coerce import POSITIVE_INT, PROBABILITY, Limit
from vad.models.components.layout_dropout import dropout_channels_first_order
from vad.models.output import ModelOutput
from vad.models.rtfm.aggregate import Aggregate


def _xavier_init(module: nn.Module) -> None:
    """The authors' init: Xavier-uniform weights and zero biases on every Conv and Linear layer."""
    if isinstance(module, (nn.Conv1d, nn.Linear)):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def _positive_ints(name: str, values: Sequence[int], allow_empty: bool) -> tuple[int, ...]:
    values = tuple(values)
    valid = all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values)
    if not valid or (not values and not allow_empty):
        raise ValueError(f"RTFM: {name} must be a {'' if allow_empty else 'non-empty '}list of positive ints, "
                         f"got {list(values)}")
    return values


class RTFM(nn.Module):
    """RTFM snippet scorer; ``forward(x (B, N, T, C)) -> ModelOutput``.

    ``features = Dropout(Aggregate(x))`` (per crop, ``(B, N, T, C)``); ``magnitudes`` = their L2 norms averaged
    over crops; ``scores = sigmoid(fc3(Dropout(ReLU(fc2(Dropout(ReLU(fc1(features))))))))`` averaged over crops.
    One ``nn.Dropout(dropout)`` serves all three places, as in the original. Top-k selection is the loss's job.

    Arguments (defaults = the authors'): ``feature_dim`` C, ``n_crops`` N, ``dropout``, ``hidden_dim`` (width of
    each Aggregate branch), ``dilations`` (one dilated-conv branch per entry: the searchable block count),
    ``non_local_inner`` (``None``: ``hidden_dim // 2``), ``head_dims`` (hidden widths of the classifier).

    state_dict (47 keys at the defaults, the authors' layout; ``L = len(dilations)``):
    ``Aggregate.conv_{1..L}.0.{weight,bias}``, ``Aggregate.conv_{1..L}.2.{weight,bias,running_mean,running_var,
    num_batches_tracked}``, ``Aggregate.conv_{L+1}.0.weight``, ``Aggregate.conv_{L+2}.0.weight``,
    ``Aggregate.conv_{L+2}.2.*``, ``Aggregate.non_local.{g,theta,phi}.{weight,bias}``,
    ``Aggregate.non_local.W.0.{weight,bias}``, ``Aggregate.non_local.W.1.*`` (BatchNorm), ``fc1``, ``fc2``, ``fc3``
    ``.{weight,bias}`` (``fc{len(head_dims)+1}`` is the 1-unit output layer).
    Parameters: 24,718,849 at C=2048 (UCF-Crime), 12,658,177 at C=1024 (XD-Violence).
    """

    ARG_LIMITS: ClassVar[dict[str, Limit]] = {
        "feature_dim": POSITIVE_INT, "n_crops": POSITIVE_INT, "dropout": PROBABILITY, "hidden_dim": POSITIVE_INT,
        "dilations": POSITIVE_INT, "non_local_inner": POSITIVE_INT, "head_dims": POSITIVE_INT,
    }
    """What a config may set (checked before any work, see :func:`vad.coerce.check_limits`)."""

    def __init__(
        self,
        *,
        feature_dim: int = 2048,
        n_crops: int = 10,
        dropout: float = 0.7,
        hidden_dim: int = 512,
        dilations: Sequence[int] = (1, 2, 4),
        non_local_inner: int | None = None,
        head_dims: Sequence[int] = (512, 128),
    ) -> None:
        super().__init__()
        for name, value in (("feature_dim", feature_dim), ("n_crops", n_crops), ("hidden_dim", hidden_dim)):
            _positive_ints(name, [value], allow_empty=False)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"RTFM: dropout must be in [0, 1), got {dropout}")
        dilations = _positive_ints("dilations", dilations, allow_empty=True)
        head_dims = _positive_ints("head_dims", head_dims, allow_empty=True)
        if non_local_inner is None:
            non_local_inner = max(hidden_dim // 2, 1)
        _positive_ints("non_local_inner", [non_local_inner], allow_empty=False)

        self.feature_dim = feature_dim
        self.n_crops = n_crops
        self.dropout = dropout
        self.dilations = dilations
        self.head_dims = head_dims
        self.Aggregate = Aggregate(feature_dim, hidden_dim, dilations, non_local_inner)
        widths = (feature_dim, *head_dims, 1)
        self.head_names = [f"fc{i}" for i in range(1, len(widths))]
        for name, width_in, width_out in zip(self.head_names, widths[:-1], widths[1:]):
            self.add_module(name, nn.Linear(width_in, width_out))
        self.drop_out = nn.Dropout(dropout)
        self.relu = nn.ReLU()
        self.apply(_xavier_init)

    def _check_input(self, x: Tensor) -> None:
        expected = f"(B, N={self.n_crops}, T, C={self.feature_dim})"
        if x.dim() != 4:
            raise ValueError(f"RTFM expects features of shape {expected} (videos, crops, snippets, channels); "
                             f"got a {x.dim()}-d tensor of shape {tuple(x.shape)}")
        if x.shape[3] != self.feature_dim:
            raise ValueError(f"RTFM was built for feature_dim={self.feature_dim} channels; got C={x.shape[3]} "
                             f"(input shape {tuple(x.shape)}, expected {expected})")
        if x.shape[1] != self.n_crops:
            raise ValueError(f"RTFM was built for n_crops={self.n_crops}; got N={x.shape[1]} crops "
                             f"(input shape {tuple(x.shape)}, expected {expected})")

    def forward(self, x: Tensor) -> ModelOutput:
        """``x (B, N, T, C)`` -> scores, magnitudes ``(B, T)``, features ``(B, N, T, C)``."""
        self._check_input(x)
        b, n, t, c = x.shape
        # the authors' Aggregate returns a channels-first tensor seen as (B*N, T, C): draw the mask in that order
        features = dropout_channels_first_order(self.Aggregate(x.reshape(b * n, t, c)), self.drop_out.p, self.training)
        hidden = features
        for name in self.head_names[:-1]:
            hidden = self.drop_out(self.relu(getattr(self, name)(hidden)))
        scores = torch.sigmoid(getattr(self, self.head_names[-1])(hidden))  # (B*N, T, 1)
        scores = scores.view(b, n, t).mean(dim=1)
        magnitudes = torch.linalg.vector_norm(features, ord=2, dim=2).view(b, n, t).mean(dim=1)
        return ModelOutput(
            scores=scores,
            magnitudes=magnitudes,
            features=features.view(b, n, t, c),
            topk_dropout=self.dropout if self.training else 0.0,
        )
