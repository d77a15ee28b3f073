"""RTFM's feature-magnitude separation term (also S3R's), on the per-crop features of the top-k snippets."""

from __future__ import annotations

import torch
from torch import Tensor


def rtfm_magnitude_loss(abnormal: Tensor, normal: Tensor, margin: float) -> Tensor:
    """``mean over paired rows of (|margin - ||mean_k a||_2| + ||mean_k n||_2)^2``.

    ``abnormal``/``normal``: ``(b, N, k, F)`` selected features; row ``(v, c)`` of the abnormal videos is paired
    with row ``(v, c)`` of the normal videos, as the authors pair them by index (so ``b`` must agree).
    """
    if abnormal.shape != normal.shape:
        raise ValueError(
            f"the magnitude loss pairs abnormal and normal videos row by row: got abnormal {tuple(abnormal.shape)}"
            f" and normal {tuple(normal.shape)} (use as many normal as abnormal videos per batch)"
        )
    abnormal_norm = torch.linalg.vector_norm(abnormal.mean(dim=2), ord=2, dim=-1)  # (b, N)
    normal_norm = torch.linalg.vector_norm(normal.mean(dim=2), ord=2, dim=-1)
    return ((torch.abs(margin - abnormal_norm) + normal_norm) ** 2).mean()
