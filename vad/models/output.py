"""The one output type every model returns, so losses, training and evaluation never depend on a model class."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
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

    def select(self, rows: Tensor) -> ModelOutput:
        """The output restricted to the videos ``rows`` (a ``(b,)`` index tensor)."""
        return ModelOutput(
            scores=self.scores[rows],
            magnitudes=self.magnitudes[rows],
            features=self.features[rows],
            topk_dropout=self.topk_dropout,
            extras={k: v[rows] for k, v in self.extras.items()},
        )

    def float(self) -> ModelOutput:
        """The output in float32 (losses run outside autocast)."""
        return ModelOutput(
            scores=self.scores.float(),
            magnitudes=self.magnitudes.float(),
            features=self.features.float(),
            topk_dropout=self.topk_dropout,
            extras={k: v.float() for k, v in self.extras.items()},
        )

    @staticmethod
    def cat(outputs: list[ModelOutput]) -> ModelOutput:
        """Concatenate outputs of several batches along the video axis (eval-mode outputs only)."""
        first = outputs[0]
        return ModelOutput(
            scores=torch.cat([o.scores for o in outputs]),
            magnitudes=torch.cat([o.magnitudes for o in outputs]),
            features=torch.cat([o.features for o in outputs]),
            topk_dropout=first.topk_dropout,
            extras={k: torch.cat([o.extras[k] for o in outputs]) for k in first.extras},
        )
