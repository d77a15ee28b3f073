"""MGFN's training objective: BCE on top-k video scores, the magnitude contrastive loss, sparsity and smoothness."""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vad.coerce import NON_NEGATIVE, POSITIVE_INT, Limit
from vad.models.components.class_rows import class_rows
from vad.models.components.regularizers import smoothness_flat, smoothness_per_video, sparsity_l2
from vad.models.components.topk import gather_features, select_topk
from vad.models.output import ModelOutput

VARIANTS = ("current", "paper")
SMOOTHNESS = ("flat", "per_video")


def crop_major_rows(norms: Tensor) -> Tensor:
    """``(b, N, k)`` per-crop L1 norms of the selected snippets -> ``(N * b, k)`` rows ordered crop-major.

    Row ``c * b + v`` is crop ``c`` of video ``v``: the order in which the authors concatenate the gathered crops.
    """
    return norms.transpose(0, 1).reshape(-1, norms.shape[2])


def contrastive_parts(abnormal_rows: Tensor, normal_rows: Tensor, margin: float) -> tuple[Tensor, Tensor, Tensor]:
    """The three parts of MGFN's magnitude contrastive loss on ``(R, k)`` crop-major rows of L1 norms.

    With ``d`` = ``F.pairwise_distance`` (p = 2, eps 1e-6) between rows and ``h = R // 2``:
    ``separation = mean_r clamp(margin - d(a_r, n_r), 0)^2`` (abnormal row ``r`` against normal row ``r``) and,
    per class, ``compactness = mean_{r<h} d(x_{h+r}, x_r)^2`` (second half of the rows against the first half:
    crops 5-9 against crops 0-4 at 10 crops; at 5 crops the halves split crop 2 between videos, as the authors'
    code does). Returns ``(separation, abnormal_compactness, normal_compactness)``.
    """
    rows = abnormal_rows.shape[0]
    if rows % 2:
        raise ValueError(
            f"MGFN's contrastive loss halves the {rows} (crop, video) rows of each class; it needs an even count "
            "(n_crops * videos per class)"
        )
    half = rows // 2
    separation = torch.clamp(margin - F.pairwise_distance(abnormal_rows, normal_rows), min=0.0) ** 2
    normal_compact = F.pairwise_distance(normal_rows[half:], normal_rows[:half]) ** 2
    abnormal_compact = F.pairwise_distance(abnormal_rows[half:], abnormal_rows[:half]) ** 2
    return separation.mean(), abnormal_compact.mean(), normal_compact.mean()


class MGFNLoss(nn.Module):
    """``criterion(out, labels) -> (loss, terms)`` for :class:`~vad.models.mgfn.model.MGFN`.

    Top-k (``k``) by magnitude, with the dropout mask drawn for the abnormal videos first, then the normal ones
    (the authors' RNG order); rows are paired by their order within each class, so both classes need the same
    count. ``terms`` (weighted, summing to ``loss``):

    - ``classification``: BCE of the video scores (mean of the selected snippets' scores), normal 0, abnormal 1.
    - ``contrastive``: ``contrastive_weight * (separation_weight * separation + abnormal_compactness +
      normal_compactness)``, see :func:`contrastive_parts` (``separation`` pushes the selected abnormal and normal
      L1 magnitude rows apart up to ``margin``; the compactness parts pull each class's two crop halves together).
    - ``sparsity``: ``sparsity_weight * ||s||_2`` and ``smoothness``: ``smoothness_weight * sum (s[t+1] - s[t])^2``.

    ``variant="current"`` (default; after the merged community fix, PR #18): sparsity on the normal videos' scores,
    smoothness on all videos (normal then abnormal). ``variant="paper"`` (before it): both on the abnormal videos'
    scores, RTFM-style. The variant picks the videos; ``smoothness`` picks how they are summed: ``"per_video"``
    never compares the last snippet of a video with the next video's first, ``"flat"`` smooths the videos
    concatenated into one vector (crossing video boundaries). ``None`` (default) = as the variant is coded:
    ``"per_video"`` for ``current``, ``"flat"`` for ``paper``.
    """

    ARG_LIMITS: ClassVar[dict[str, Limit]] = {
        "k": POSITIVE_INT, "margin": NON_NEGATIVE, "contrastive_weight": NON_NEGATIVE,
        "separation_weight": NON_NEGATIVE, "sparsity_weight": NON_NEGATIVE, "smoothness_weight": NON_NEGATIVE,
        "smoothness": Limit(choices=SMOOTHNESS), "variant": Limit(choices=VARIANTS),
    }
    """What a config may set (checked before any work, see :func:`vad.coerce.check_limits`)."""

    def __init__(
        self,
        *,
        k: int = 3,
        margin: float = 200.0,
        contrastive_weight: float = 1e-3,
        separation_weight: float = 1e-3,
        sparsity_weight: float = 8e-3,
        smoothness_weight: float = 8e-4,
        smoothness: str | None = None,
        variant: str = "current",
    ) -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"unknown MGFN loss variant {variant!r}; expected one of {', '.join(VARIANTS)}")
        if smoothness is not None and smoothness not in SMOOTHNESS:
            raise ValueError(f"unknown smoothness {smoothness!r}; expected None or one of {', '.join(SMOOTHNESS)}")
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        self.k = k
        self.margin = margin
        self.contrastive_weight = contrastive_weight
        self.separation_weight = separation_weight
        self.sparsity_weight = sparsity_weight
        self.smoothness_weight = smoothness_weight
        self.variant = variant
        self.smoothness = smoothness if smoothness is not None else ("per_video" if variant == "current" else "flat")

    def forward(self, out: ModelOutput, labels: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        normal, abnormal = class_rows(labels, out.scores.device)  # slices for normal-first batches: no H2D copy

        l1_norms = torch.linalg.vector_norm(out.features, ord=1, dim=3, keepdim=True)  # (B, N, T, 1)
        selected, video_scores = {}, {}
        for name, rows in (("abnormal", abnormal), ("normal", normal)):  # the authors draw the abnormal mask first
            idx, video_scores[name] = select_topk(out.magnitudes[rows], out.scores[rows], self.k, out.topk_dropout)
            selected[name] = crop_major_rows(gather_features(l1_norms[rows], idx).squeeze(3))

        scores = torch.cat((video_scores["normal"], video_scores["abnormal"]))
        targets = torch.cat((torch.zeros_like(video_scores["normal"]), torch.ones_like(video_scores["abnormal"])))
        classification = F.binary_cross_entropy(scores, targets)

        separation, abnormal_compact, normal_compact = contrastive_parts(
            selected["abnormal"], selected["normal"], self.margin
        )
        contrastive = self.contrastive_weight * (
            self.separation_weight * separation + abnormal_compact + normal_compact
        )

        normal_scores, abnormal_scores = out.scores[normal], out.scores[abnormal]
        if self.variant == "current":
            sparse_on, smooth_on = normal_scores, torch.cat((normal_scores, abnormal_scores))
        else:
            sparse_on = smooth_on = abnormal_scores
        smooth_fn = smoothness_per_video if self.smoothness == "per_video" else smoothness_flat
        smoothness = self.smoothness_weight * smooth_fn(smooth_on)
        sparsity = self.sparsity_weight * sparsity_l2(sparse_on)

        loss = classification + contrastive + smoothness + sparsity  # the authors' order of summation
        terms = {
            "classification": classification,
            "contrastive": contrastive,
            "sparsity": sparsity,
            "smoothness": smoothness,
        }
        return loss, terms
