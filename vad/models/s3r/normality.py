"""S3R's two dictionary-driven modules: enNormal (rebuild the normal part of a video from the dictionary atoms)
and deNormal (a channel gate that keeps what differs from that normal part).

The extra container levels (``en_normal_module``, ``channel_attention.channel_gate``) exist only so the parameter
names are the authors': ``en_normal.en_normal_module.{query,cache,value}_embedding`` and
``de_normal.channel_attention.channel_gate.mlp.{1,3}``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vad.models.components.subnormal_softmax import softmax_flush_subnormal


class EnNormal(nn.Module):
    """Attention of every snippet over the dictionary atoms; the output is the reconstructed "normal" snippet.

    ``q = Linear(C -> A)(snippets)``, ``k = Linear(C -> A)(atoms)``, ``v = Linear(C -> C)(atoms)``;
    ``out = softmax_atoms(q k^T) v`` (no scaling, as coded by the authors).

    The authors project one copy of the dictionary per video, as here by default: identical float32 results. With
    ``project_atoms_once`` the keys and values are computed once per batch: the same math with fewer FLOPs (``B``
    times fewer in the two atom projections), but other rounding, which the ReLU and GroupNorm layers downstream can
    amplify into gradient differences well above float32 rounding.
    """

    def __init__(self, feature_dim: int, attention_dim: int, *, project_atoms_once: bool = False) -> None:
        super().__init__()
        self.project_atoms_once = project_atoms_once
        self.en_normal_module = nn.ModuleDict(
            {
                "query_embedding": nn.Linear(feature_dim, attention_dim),
                "cache_embedding": nn.Linear(feature_dim, attention_dim),
                "value_embedding": nn.Linear(feature_dim, feature_dim),
            }
        )

    def forward(self, snippets: Tensor, dictionary: Tensor) -> Tensor:
        """``snippets (B, L, C)`` (all crops and snippets of a video), ``dictionary (S, C)`` -> ``(B, L, C)``."""
        layers = self.en_normal_module
        atoms = dictionary if self.project_atoms_once else dictionary.expand(snippets.shape[0], *dictionary.shape)
        queries = layers["query_embedding"](snippets)  # (B, L, A)
        keys = layers["cache_embedding"](atoms)  # (B, S, A), or (S, A) when projected once
        values = layers["value_embedding"](atoms)  # (B, S, C), or (S, C)
        # no subnormal weights: they would slow the products below 20-70x on CPU (see softmax_flush_subnormal)
        affinity = softmax_flush_subnormal(queries @ keys.transpose(-1, -2), dim=-1)  # (B, L, S)
        return affinity @ values


class _TimeMean(torch.autograd.Function):
    """``avg_pool1d`` over the whole time axis whose backward is ``grad / T`` broadcast over time (a view).

    ``avg_pool1d``'s own backward zero-fills a ``(b, C, T)`` gradient and, on the transposed views of time-major
    activations S3R passes it, copies its input to channels-last first: two activation-sized passes per call. The
    window covers every step once, so each input gradient is exactly ``grad / T``: the same values, bit for bit.
    """

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: Tensor) -> Tensor:
        ctx.shape = x.shape
        return F.avg_pool1d(x, x.shape[-1])

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: Tensor) -> Tensor:
        return (grad / ctx.shape[-1]).expand(ctx.shape)


def time_mean(x: Tensor) -> Tensor:
    """``(b, C, T) -> (b, C, 1)`` mean over time, with the authors' op (``avg_pool1d``) so the rounding is theirs.

    Float32/float64: the backward is :class:`_TimeMean`'s (bit-identical to ``avg_pool1d``'s, without its
    activation-sized fill and copy); other dtypes run ``avg_pool1d`` as it is.
    """
    if x.dtype in (torch.float32, torch.float64):
        return _TimeMean.apply(x)
    return F.avg_pool1d(x, x.shape[-1])


class DeNormal(nn.Module):
    """Channel gate ``w = sigmoid(MLP(mean_T video - mean_T normal))``: ``video * w`` and ``normal * (1 - w)``.

    MLP: ``Flatten -> Linear(C -> G) -> ReLU -> Linear(G -> C)``.
    """

    def __init__(self, feature_dim: int, gate_dim: int) -> None:
        super().__init__()
        mlp = nn.Sequential(nn.Flatten(), nn.Linear(feature_dim, gate_dim), nn.ReLU(), nn.Linear(gate_dim, feature_dim))
        self.channel_attention = nn.ModuleDict({"channel_gate": nn.ModuleDict({"mlp": mlp})})

    def forward(self, video: Tensor, normal: Tensor) -> tuple[Tensor, Tensor]:
        """``video``, ``normal``: ``(b, T, C)`` embeddings -> the gated pair, same shapes.

        Computed channels-first and returned as transposed views, like the authors' code (same memory layout, so
        the classifiers that follow round exactly as theirs do).
        """
        video, normal = video.transpose(1, 2), normal.transpose(1, 2)  # (b, C, T)
        difference = time_mean(video) - time_mean(normal)  # (b, C, 1)
        gate = torch.sigmoid(self.channel_attention["channel_gate"]["mlp"](difference)).unsqueeze(2)  # (b, C, 1)
        return (video * gate).transpose(1, 2), (normal * (1.0 - gate)).transpose(1, 2)
