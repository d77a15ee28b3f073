"""S3R's two dictionary-driven modules: enNormal (rebuild the normal part of a video from the dictionary atoms)
and deNormal (a channel gate that keeps what differs from that normal part).

The extra container levels (``en_normal_module``, ``channel_attention.channel_gate``) exist only so the parameter
names are the authors': ``en_normal.en_normal_module.{query,cache,value}_embedding`` and
``de_normal.channel_attention.channel_gate.mlp.{1,3}``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class EnNormal(nn.Module):
    """Attention of every snippet over the dictionary atoms; the output is the reconstructed "normal" snippet.

    ``q = Linear(C -> A)(snippets)``, ``k = Linear(C -> A)(atoms)``, ``v = Linear(C -> C)(atoms)``;
    ``out = softmax_atoms(q k^T) v`` (no scaling, as coded by the authors).
    """

    def __init__(self, feature_dim: int, attention_dim: int) -> None:
        super().__init__()
        self.en_normal_module = nn.ModuleDict(
            {
                "query_embedding": nn.Linear(feature_dim, attention_dim),
                "cache_embedding": nn.Linear(feature_dim, attention_dim),
                "value_embedding": nn.Linear(feature_dim, feature_dim),
            }
        )

    def forward(self, snippets: Tensor, dictionary: Tensor) -> Tensor:
        """``snippets (B, L, C)`` (all crops and snippets of a video), ``dictionary (S, C)`` -> ``(B, L, C)``.

        The authors feed one copy of the dictionary per video; the atoms' keys and values are the same for every
        video, so they are computed once here.
        """
        layers = self.en_normal_module
        queries = layers["query_embedding"](snippets)  # (B, L, A)
        keys = layers["cache_embedding"](dictionary)  # (S, A)
        values = layers["value_embedding"](dictionary)  # (S, C)
        affinity = torch.softmax(queries @ keys.t(), dim=-1)  # (B, L, S)
        return affinity @ values


class DeNormal(nn.Module):
    """Channel gate ``w = sigmoid(MLP(mean_T video - mean_T normal))``: ``video * w`` and ``normal * (1 - w)``.

    MLP: ``Linear(C -> G) -> ReLU -> Linear(G -> C)`` (index 0 is the authors' Flatten, kept for the key names).
    """

    def __init__(self, feature_dim: int, gate_dim: int) -> None:
        super().__init__()
        mlp = nn.Sequential(nn.Flatten(), nn.Linear(feature_dim, gate_dim), nn.ReLU(), nn.Linear(gate_dim, feature_dim))
        self.channel_attention = nn.ModuleDict({"channel_gate": nn.ModuleDict({"mlp": mlp})})

    def forward(self, video: Tensor, normal: Tensor) -> tuple[Tensor, Tensor]:
        """``video``, ``normal``: ``(b, T, C)`` embeddings -> the gated pair, same shapes."""
        difference = video.mean(dim=1) - normal.mean(dim=1)  # (b, C)
        gate = torch.sigmoid(self.channel_attention["channel_gate"]["mlp"](difference)).unsqueeze(1)  # (b, 1, C)
        return video * gate, normal * (1.0 - gate)
