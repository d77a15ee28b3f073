"""RTFM's training objective as the authors' ``train.py`` computes it (also the main term of S3R's loss).

``loss = BCE(video scores) + magnitude_weight * magnitude + smoothness_weight * smoothness
+ sparsity_weight * sparsity``, where the video score is the mean score of the k snippets with the largest
(dropout-masked, in training) feature magnitudes, the magnitude term is :func:`rtfm_magnitude_loss` on the
selected per-crop features, and sparsity/smoothness act on the abnormal videos' snippet scores.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vad.coerce import NON_NEGATIVE, POSITIVE_INT, Limit
from vad.models.components.class_rows import Rows, class_rows
from vad.models.components.magnitude import rtfm_magnitude_loss
from vad.models.components.regularizers import smoothness_flat, smoothness_per_video, sparsity_l2
from vad.models.components.topk import gather_features, select_topk
from vad.models.output import ModelOutput

SMOOTHNESS_OPTIONS = {"flat": smoothness_flat, "per_video": smoothness_per_video}


@dataclass
class Selection:
    """The top-k snippets of the ``b`` videos of one class, in batch order.

    ``rows``: their batch rows (a slice or a ``(b,)`` index tensor, see :func:`class_rows`); ``idx (b, k)`` the
    chosen snippets; ``video_scores (b,)`` mean score of the chosen snippets; ``features (b, N, k, F)`` their
    per-crop features.
    """

    rows: Rows
    idx: Tensor
    video_scores: Tensor
    features: Tensor


class RTFMLoss(nn.Module):
    """``criterion(out, labels) -> (loss, terms)``; ``labels (B,)`` 0 normal / 1 abnormal, as many of each.

    ``terms`` holds the weighted contributions ``classification``, ``magnitude``, ``sparsity``, ``smoothness``
    (they sum to ``loss``). Defaults are the authors': ``k=3``, ``margin=100``, weights 1e-4 / 8e-3 / 8e-4, and
    ``smoothness="flat"`` (over the abnormal scores flattened into one vector, crossing video boundaries);
    ``smoothness="per_video"`` keeps it within each video (the reference study's fix).
    """

    ARG_LIMITS: ClassVar[dict[str, Limit]] = {
        "k": POSITIVE_INT, "margin": NON_NEGATIVE, "magnitude_weight": NON_NEGATIVE,
        "sparsity_weight": NON_NEGATIVE, "smoothness_weight": NON_NEGATIVE,
        "smoothness": Limit(choices=tuple(SMOOTHNESS_OPTIONS)),
    }
    """What a config may set (checked before any work, see :func:`vad.coerce.check_limits`)."""

    def __init__(
        self,
        *,
        k: int = 3,
        margin: float = 100.0,
        magnitude_weight: float = 1e-4,
        sparsity_weight: float = 8e-3,
        smoothness_weight: float = 8e-4,
        smoothness: str = "flat",
    ) -> None:
        super().__init__()
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise ValueError(f"RTFMLoss: k must be a positive int, got {k!r}")
        if smoothness not in SMOOTHNESS_OPTIONS:
            raise ValueError(
                f"RTFMLoss: smoothness must be one of {', '.join(SMOOTHNESS_OPTIONS)}; got {smoothness!r}"
            )
        self.k = k
        self.margin = margin
        self.magnitude_weight = magnitude_weight
        self.sparsity_weight = sparsity_weight
        self.smoothness_weight = smoothness_weight
        self.smoothness = smoothness

    def select(self, out: ModelOutput, labels: Tensor) -> tuple[Selection, Selection]:
        """``(normal, abnormal)`` top-k snippets by magnitude for each class.

        In training (``out.topk_dropout > 0``) the magnitudes are multiplied by a dropout mask, drawn for the
        abnormal videos first and then for the normal ones: the order of the authors' forward (same RNG stream).
        """
        normal_rows, abnormal_rows = class_rows(labels, out.scores.device)  # slices for normal-first batches
        abnormal_idx, abnormal_scores = self._topk(out, abnormal_rows)
        normal_idx, normal_scores = self._topk(out, normal_rows)
        if isinstance(normal_rows, slice) and isinstance(abnormal_rows, slice):
            # one gather over the whole batch: its backward fills one (B, N, T, F) gradient, where a gather per
            # class would fill one per class plus one per slice, and add them (the same values either way)
            idx = torch.zeros(out.scores.shape[0], self.k, dtype=torch.long, device=out.scores.device)
            idx[normal_rows], idx[abnormal_rows] = normal_idx, abnormal_idx
            selected = gather_features(out.features, idx)
            normal_features, abnormal_features = selected[normal_rows], selected[abnormal_rows]
        else:
            normal_features = gather_features(out.features[normal_rows], normal_idx)
            abnormal_features = gather_features(out.features[abnormal_rows], abnormal_idx)
        return (Selection(normal_rows, normal_idx, normal_scores, normal_features),
                Selection(abnormal_rows, abnormal_idx, abnormal_scores, abnormal_features))

    def _topk(self, out: ModelOutput, rows: Rows) -> tuple[Tensor, Tensor]:
        return select_topk(out.magnitudes[rows], out.scores[rows], self.k, out.topk_dropout)

    def terms(self, out: ModelOutput, labels: Tensor) -> dict[str, Tensor]:
        """The weighted terms ``classification``, ``magnitude``, ``sparsity``, ``smoothness`` (scalars).

        Composable: S3R's loss adds its own term to these.
        """
        normal, abnormal = self.select(out, labels)
        video_scores = torch.cat((normal.video_scores, abnormal.video_scores))
        targets = torch.cat((torch.zeros_like(normal.video_scores), torch.ones_like(abnormal.video_scores)))
        abnormal_scores = out.scores[abnormal.rows]  # (b, T)
        magnitude = rtfm_magnitude_loss(abnormal.features, normal.features, self.margin)
        return {
            "classification": F.binary_cross_entropy(video_scores, targets),
            "magnitude": self.magnitude_weight * magnitude,
            "sparsity": self.sparsity_weight * sparsity_l2(abnormal_scores),
            "smoothness": self.smoothness_weight * SMOOTHNESS_OPTIONS[self.smoothness](abnormal_scores),
        }

    def forward(self, out: ModelOutput, labels: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """``(loss, terms)``; summed in the authors' order ``(classification + magnitude) + smoothness + sparsity``."""
        terms = self.terms(out, labels)
        loss = terms["classification"] + terms["magnitude"] + terms["smoothness"] + terms["sparsity"]
        return loss, terms
