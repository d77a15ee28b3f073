"""The MIL ranking baseline's scorer (Sultani et al., CVPR 2018): a 3-layer MLP applied to each segment."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import Tensor, nn

from vad.coerce import POSITIVE_INT, PROBABILITY, Limit
from vad.models.output import ModelOutput


class MILScorer(nn.Module):
    """Segment scorer of Sultani et al.; ``forward(x (B, N, T, C)) -> ModelOutput``.

    As the authors' Keras model (``TrainingAnomalyDetector_public.py``): ``Dense(512, relu) -> Dropout(0.6) ->
    Dense(32) -> Dropout(0.6) -> Dense(1, sigmoid)`` over each segment's feature vector, Glorot-normal weights and
    zero biases. The 32-unit layer is linear there (the paper: "ReLU ... for the first ... FC layer");
    ``relu_all=True`` puts a ReLU after every hidden layer instead. Their ``l2(0.001)`` kernel penalty is not part
    of the model: configure it as the optimizer's weight decay (see ``configs/mil_ucf.yaml``).

    Crops: the authors used one C3D feature vector per segment, no crops. Here each of the ``N`` crops
    is scored by the same MLP and ``scores`` is the mean over crops, as RTFM averages its crop scores; the loss
    ranks these crop-averaged scores (one bag per video, not one per crop).

    Output: ``scores (B, T)`` in [0, 1]; ``features (B, N, T, H)`` the last hidden layer per crop
    (``H = hidden_dims[-1]``); ``magnitudes (B, T)`` their L2 norms averaged over crops, as the output type
    defines them (MIL's loss ranks the scores themselves and never reads them).

    Arguments: ``feature_dim`` C (the authors' C3D: 4096), ``n_crops`` N (the authors': 1), ``hidden_dims`` the
    hidden widths, ``dropout``, ``relu_all``.

    state_dict: ``layers.{0..L}.{weight,bias}`` (``L = len(hidden_dims)``; ``layers.L`` is the 1-unit output).
    Parameters: 1,065,537 at C=2048, 541,249 at C=1024 (the defaults' hidden widths).
    """

    ARG_LIMITS: ClassVar[dict[str, Limit]] = {
        "feature_dim": POSITIVE_INT, "n_crops": POSITIVE_INT, "hidden_dims": Limit(1, min_items=1),
        "dropout": PROBABILITY,
    }
    """What a config may set (checked before any work, see :func:`vad.coerce.check_limits`)."""

    def __init__(
        self,
        *,
        feature_dim: int = 4096,
        n_crops: int = 1,
        hidden_dims: Sequence[int] = (512, 32),
        dropout: float = 0.6,
        relu_all: bool = False,
    ) -> None:
        super().__init__()
        hidden_dims = tuple(hidden_dims)
        for name, value in (("feature_dim", feature_dim), ("n_crops", n_crops), *(("hidden_dims", h) for h in
                                                                                   hidden_dims)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"MIL: {name} must be positive ints, got {value!r}")
        if not hidden_dims:
            raise ValueError("MIL: hidden_dims must name at least one hidden layer")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"MIL: dropout must be in [0, 1), got {dropout}")
        self.feature_dim = feature_dim
        self.n_crops = n_crops
        self.dropout = dropout
        self.relu_all = relu_all
        widths = (feature_dim, *hidden_dims, 1)
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.drop_out = nn.Dropout(dropout)
        for layer in self.layers:
            nn.init.xavier_normal_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: Tensor) -> ModelOutput:
        """``x (B, N, T, C)`` -> ``scores``, ``magnitudes (B, T)``, ``features (B, N, T, H)``."""
        expected = f"(B, N={self.n_crops}, T, C={self.feature_dim})"
        if x.dim() != 4 or x.shape[1] != self.n_crops or x.shape[3] != self.feature_dim:
            raise ValueError(f"MIL expects features of shape {expected} (videos, crops, snippets, channels); "
                             f"got {tuple(x.shape)}")
        hidden = x
        for index, layer in enumerate(self.layers[:-1]):
            hidden = layer(hidden)
            if index == 0 or self.relu_all:
                hidden = torch.relu(hidden)
            hidden = self.drop_out(hidden)
        scores = torch.sigmoid(self.layers[-1](hidden)).squeeze(-1).mean(dim=1)  # (B, N, T) -> (B, T)
        magnitudes = torch.linalg.vector_norm(hidden, ord=2, dim=-1).mean(dim=1)
        return ModelOutput(scores=scores, magnitudes=magnitudes, features=hidden)
