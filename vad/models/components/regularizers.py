"""Sparsity and temporal-smoothness terms on snippet scores, as coded by the authors and per video (opt-in)."""

from __future__ import annotations

import torch
from torch import Tensor


def sparsity_l2(scores: Tensor) -> Tensor:
    """The authors' "sparsity": the L2 norm of all given scores flattened (not an L1 norm). ``scores``: any shape."""
    return torch.linalg.vector_norm(scores.reshape(-1), ord=2)


def smoothness_flat(scores: Tensor) -> Tensor:
    """``sum (s[i+1] - s[i])^2`` over the scores of ``(b, T)`` flattened into one vector (crosses video boundaries).

    This is RTFM's ``smooth`` on ``scores.view(-1)``: the last element is compared with itself (adds 0).
    """
    flat = scores.reshape(-1)
    return ((flat[1:] - flat[:-1]) ** 2).sum()


def smoothness_per_video(scores: Tensor) -> Tensor:
    """``sum_v sum_t (s[v, t+1] - s[v, t])^2``: smoothness within each video of ``(b, T)``, never across videos."""
    return ((scores[:, 1:] - scores[:, :-1]) ** 2).sum()
