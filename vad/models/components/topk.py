"""Top-k snippet selection by feature magnitude, as RTFM, MGFN and S3R do it.

In the authors' code the magnitudes are multiplied by ``dropout(ones)`` (p = the model's dropout, only while
training) before ``topk``; the mask values are 0 or ``1 / (1 - p)``. The selected snippets' scores are averaged
into a video score and their per-crop features feed the magnitude losses.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def magnitude_dropout_mask(magnitudes: Tensor, p: float) -> Tensor:
    """``(b, T)`` mask ``dropout(ones_like(magnitudes), p)``; all ones (and no RNG draw) when ``p == 0``."""
    if p <= 0.0:
        return torch.ones_like(magnitudes)
    return F.dropout(torch.ones_like(magnitudes), p=p, training=True)


def topk_indices(magnitudes: Tensor, k: int, mask: Tensor | None = None) -> Tensor:
    """``(b, k)`` indices of the ``k`` largest (masked) magnitudes of each row of ``(b, T)``."""
    if k > magnitudes.shape[1]:
        raise ValueError(f"top-k with k={k} needs at least {k} snippets per video, got T={magnitudes.shape[1]}")
    ranked = magnitudes if mask is None else magnitudes * mask
    return torch.topk(ranked, k, dim=1).indices


def select_topk(magnitudes: Tensor, scores: Tensor, k: int, dropout: float) -> tuple[Tensor, Tensor]:
    """``(idx (b, k), video_scores (b,))``: the ``k`` snippets of largest magnitude (times the dropout mask of
    :func:`magnitude_dropout_mask`, one RNG draw when ``dropout > 0``) and the mean of their ``(b, T)`` scores."""
    idx = topk_indices(magnitudes, k, magnitude_dropout_mask(magnitudes, dropout))
    return idx, gather_scores(scores, idx).mean(dim=1)


def gather_scores(scores: Tensor, idx: Tensor) -> Tensor:
    """``(b, k)`` scores at ``idx`` from ``(b, T)`` scores."""
    return torch.gather(scores, 1, idx)


def gather_features(features: Tensor, idx: Tensor) -> Tensor:
    """``(b, N, k, F)`` features of the selected snippets, the same ``idx (b, k)`` for every crop of a video.

    ``features``: ``(b, N, T, F)``.
    """
    b, n, _, f = features.shape
    index = idx[:, None, :, None].expand(b, n, idx.shape[1], f)
    return torch.gather(features, 2, index)
