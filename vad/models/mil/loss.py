"""The MIL ranking objective of Sultani et al. (CVPR 2018), as their ``custom_objective`` computes it."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

from vad.coerce import NON_NEGATIVE, Limit
from vad.models.components.batch import split_by_label
from vad.models.output import ModelOutput


class MILRankingLoss(nn.Module):
    """``criterion(out, labels) -> (loss, terms)``; ``labels (B,)`` 0 normal / 1 abnormal (any counts of each).

    With ``a_i`` the highest segment score of abnormal video ``i`` and ``n_j`` that of normal video ``j``:
    ``ranking = mean_j sum_i max(0, margin - a_i + n_j)`` (the authors sum over the abnormal videos for each
    normal one, then average over the normal ones), ``smoothness = smoothness_weight * sum_i sum_t (s_i,t -
    s_i,t+1)^2`` and ``sparsity = sparsity_weight * sum_i sum_t s_i,t`` over the abnormal videos' scores ``s``.
    Defaults are the paper's: ``margin=1``, both weights ``8e-5``. ``terms`` holds the three weighted
    contributions (they sum to ``loss``). The normal/abnormal split comes from ``labels``, never batch positions.
    """

    ARG_LIMITS: ClassVar[dict[str, Limit]] = {
        "margin": NON_NEGATIVE, "smoothness_weight": NON_NEGATIVE, "sparsity_weight": NON_NEGATIVE,
    }
    """What a config may set (checked before any work, see :func:`vad.coerce.check_limits`)."""

    def __init__(self, *, margin: float = 1.0, smoothness_weight: float = 8e-5, sparsity_weight: float = 8e-5) -> None:
        super().__init__()
        for name, value in (("margin", margin), ("smoothness_weight", smoothness_weight),
                            ("sparsity_weight", sparsity_weight)):
            if not value >= 0:
                raise ValueError(f"MILRankingLoss: {name} must be >= 0, got {value}")
        self.margin = margin
        self.smoothness_weight = smoothness_weight
        self.sparsity_weight = sparsity_weight

    def forward(self, out: ModelOutput, labels: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """``(loss, terms)`` from ``out.scores (B, T)``."""
        normal, abnormal = split_by_label(labels.cpu(), paired=False)
        scores = out.scores
        normal_scores = scores[normal.to(scores.device)]      # (b_n, T)
        abnormal_scores = scores[abnormal.to(scores.device)]  # (b_a, T)
        a_max = abnormal_scores.max(dim=1).values  # (b_a,)
        n_max = normal_scores.max(dim=1).values    # (b_n,)
        hinge = torch.clamp(self.margin - a_max[None, :] + n_max[:, None], min=0)  # (b_n, b_a)
        terms = {
            "ranking": hinge.sum(dim=1).mean(),
            "smoothness": self.smoothness_weight * (abnormal_scores[:, :-1] - abnormal_scores[:, 1:]).square().sum(),
            "sparsity": self.sparsity_weight * abnormal_scores.sum(),
        }
        return terms["ranking"] + terms["smoothness"] + terms["sparsity"], terms
