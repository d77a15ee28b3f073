"""The one output type every model returns, so losses, training and evaluation never depend on a model class."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor


@dataclass
class ModelOutput:
    """What ``model(x)`` returns for ``x`` of shape ``(B, N, T, C)`` (videos, crops, snippets, channels).

    Attributes:
        scores: ``(B, T)`` per-snippet anomaly scores in [0, 1], averaged over crops.
        magnitudes: ``(B, T)`` L2 norms of ``features`` over channels, averaged over crops (what top-k ranks).
        features: ``(B, N, T, F)`` the per-crop features whose magnitudes are ranked; the loss gathers the
            selected snippets from here.
        topk_dropout: probability of the dropout mask that multiplies the magnitudes before top-k (the model's
            ``dropout`` while training, 0 in eval mode, as in the authors' code).
        extras: model-specific tensors a loss needs (S3R: ``"macro_scores"`` of shape ``(B,)``).
    """

    scores: Tensor
    magnitudes: Tensor
    features: Tensor
    topk_dropout: float = 0.0
    extras: dict[str, Tensor] = field(default_factory=dict)
