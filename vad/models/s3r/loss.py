"""S3R's training objective as the authors' ``anomaly/engine/trainer.py`` computes it: RTFM's loss plus a BCE that
pushes the macro (reconstructed-normal) scores of every video towards 0."""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from vad.coerce import NON_NEGATIVE, Limit
from vad.models.output import ModelOutput
from vad.models.rtfm.loss import RTFMLoss


class S3RLoss(RTFMLoss):
    """``criterion(out, labels) -> (loss, terms)``; ``labels (B,)`` 0 normal / 1 abnormal, as many of each.

    ``terms``: the weighted ``classification``, ``magnitude``, ``sparsity``, ``smoothness`` of :class:`RTFMLoss`
    (same defaults, same dropout-mask order) plus ``macro = macro_weight * BCE(out.extras["macro_scores"] (B,),
    0)`` over all videos of the batch, normal and abnormal alike. They sum to ``loss``.
    """

    ARG_LIMITS: ClassVar[dict[str, Limit]] = {**RTFMLoss.ARG_LIMITS, "macro_weight": NON_NEGATIVE}
    """RTFM's limits plus the macro term's weight."""

    def __init__(
        self,
        *,
        k: int = 3,
        margin: float = 100.0,
        magnitude_weight: float = 1e-4,
        sparsity_weight: float = 8e-3,
        smoothness_weight: float = 8e-4,
        macro_weight: float = 1.0,
        smoothness: str = "flat",
    ) -> None:
        super().__init__(
            k=k,
            margin=margin,
            magnitude_weight=magnitude_weight,
            sparsity_weight=sparsity_weight,
            smoothness_weight=smoothness_weight,
            smoothness=smoothness,
        )
        self.macro_weight = macro_weight

    def terms(self, out: ModelOutput, labels: Tensor) -> dict[str, Tensor]:
        """RTFM's four weighted terms and ``macro`` (scalars)."""
        if "macro_scores" not in out.extras:
            raise ValueError("S3RLoss needs out.extras['macro_scores'] (B,): pass the output of an S3R model")
        terms = super().terms(out, labels)
        macro_scores = out.extras["macro_scores"]
        terms["macro"] = self.macro_weight * F.binary_cross_entropy(macro_scores, torch.zeros_like(macro_scores))
        return terms

    def forward(self, out: ModelOutput, labels: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """``(loss, terms)``, summed in the authors' order: RTFM's loss, then ``+ macro``."""
        terms = self.terms(out, labels)
        loss = terms["classification"] + terms["magnitude"] + terms["smoothness"] + terms["sparsity"] + terms["macro"]
        return loss, terms
