"""MGFN's building blocks on ``(b, d, T)`` tensors: channel LayerNorm, glance and focus blocks, feed-forward, stage.

Module and attribute names follow the authors' code so that their checkpoints load key for key
(``norm``, ``to_qkv``, ``to_v``, ``rel_pos``, ``to_out``; the feed-forward is a Sequential with the convs at 1 and 4).
Modules are created in the authors' order, so the same seed gives the same initial weights.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

GLANCE = "glance"
FOCUS = "focus"
BLOCK_ALIASES = {"glance": GLANCE, "gb": GLANCE, "focus": FOCUS, "fb": FOCUS}
"""Accepted block-type names (case-insensitive): readable names and the authors' ``gb``/``fb``."""


class ChannelLayerNorm(nn.Module):
    """The authors' LayerNorm over the channels of ``(b, d, T)``: ``(x - mean) / (std + eps) * g + b``.

    Mean and biased standard deviation are taken over ``d`` per snippet; ``eps`` is added to the std (not the
    variance). Parameters ``g`` and ``b`` have shape ``(1, d, 1)``.
    """

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.g = nn.Parameter(torch.ones(1, dim, 1))
        self.b = nn.Parameter(torch.zeros(1, dim, 1))

    def forward(self, x: Tensor) -> Tensor:
        std = torch.var(x, dim=1, unbiased=False, keepdim=True).sqrt()
        mean = torch.mean(x, dim=1, keepdim=True)
        return (x - mean) / (std + self.eps) * self.g + self.b


class Glance(nn.Module):
    """Global multi-head self-attention over time on ``(b, d, T)`` -> ``(b, d, T)``.

    channel LayerNorm -> 1x1 conv to q, k, v (``heads * dim_head`` channels each, head-major: channel
    ``h * dim_head + j`` is dimension ``j`` of head ``h``) -> ``softmax(q k^T / sqrt(dim_head)) v`` -> 1x1 conv back.
    ``attention_dropout`` (opt-in, default 0) drops attention weights; the authors accept but ignore it.
    """

    def __init__(self, dim: int, heads: int, dim_head: int, attention_dropout: float = 0.0) -> None:
        super().__init__()
        self.heads = heads
        self.dim_head = dim_head
        self.scale = dim_head**-0.5
        inner = heads * dim_head
        self.norm = ChannelLayerNorm(dim)
        self.to_qkv = nn.Conv1d(dim, inner * 3, 1, bias=False)
        self.to_out = nn.Conv1d(inner, dim, 1)
        self.attn_dropout = nn.Dropout(attention_dropout)

    def forward(self, x: Tensor) -> Tensor:
        b, _, t = x.shape
        q, k, v = self.to_qkv(self.norm(x)).chunk(3, dim=1)
        q, k, v = (z.reshape(b, self.heads, self.dim_head, t).transpose(2, 3) for z in (q, k, v))  # (b, h, T, dh)
        attn = torch.matmul(q * self.scale, k.transpose(2, 3)).softmax(dim=-1)  # (b, h, T, T)
        out = torch.matmul(self.attn_dropout(attn), v)  # (b, h, T, dh)
        return self.to_out(out.transpose(2, 3).reshape(b, self.heads * self.dim_head, t))


class Focus(nn.Module):
    """Local aggregation on ``(b, d, T)`` -> ``(b, d, T)``: BatchNorm -> 1x1 conv to ``heads * dim_head`` channels ->
    a depthwise temporal conv per head (kernel ``kernel``) -> 1x1 conv back.

    Heads are interleaved: channel ``j`` belongs to head ``j % heads``; the ``dim_head`` channels of a head share
    that head's temporal kernel (``rel_pos`` is ``Conv1d(heads, heads, kernel, groups=heads)``).
    """

    def __init__(self, dim: int, heads: int, dim_head: int, kernel: int = 5) -> None:
        super().__init__()
        self.heads = heads
        self.dim_head = dim_head
        inner = heads * dim_head
        self.norm = nn.BatchNorm1d(dim)
        self.to_v = nn.Conv1d(dim, inner, 1, bias=False)
        self.rel_pos = nn.Conv1d(heads, heads, kernel, padding=kernel // 2, groups=heads)
        self.to_out = nn.Conv1d(inner, dim, 1)

    def forward(self, x: Tensor) -> Tensor:
        b, _, t = x.shape
        v = self.to_v(self.norm(x))  # (b, dh * h, T), channel = position * h + head
        local = self.rel_pos(v.reshape(b * self.dim_head, self.heads, t))
        return self.to_out(local.reshape(b, self.dim_head * self.heads, t))


def feed_forward(dim: int, mult: int = 4, dropout: float = 0.0) -> nn.Sequential:
    """channel LayerNorm -> 1x1 conv ``dim -> mult * dim`` -> exact GELU -> Dropout -> 1x1 conv back (keys 0, 1, 4)."""
    return nn.Sequential(
        ChannelLayerNorm(dim),
        nn.Conv1d(dim, dim * mult, 1),
        nn.GELU(),
        nn.Dropout(dropout),
        nn.Conv1d(dim * mult, dim, 1),
    )


class MGFNStage(nn.Module):
    """``depth`` blocks on ``(b, dim, T)``, each ``x += conv3(x); x += attention(x); x += feed_forward(x)``.

    ``attention`` is :class:`Glance` or :class:`Focus` (``block_type``). Keys: ``layers.<i>.{0,1,2}``.
    """

    def __init__(
        self,
        *,
        dim: int,
        depth: int,
        block_type: str,
        heads: int,
        dim_head: int,
        ff_mult: int,
        focus_kernel: int,
        attention_dropout: float,
        ff_dropout: float,
    ) -> None:
        super().__init__()
        self.layers = nn.ModuleList()
        for _ in range(depth):
            # the authors build the attention before the conv (this order fixes the initial weights per seed)
            if block_type == GLANCE:
                attention: nn.Module = Glance(dim, heads, dim_head, attention_dropout)
            elif block_type == FOCUS:
                attention = Focus(dim, heads, dim_head, focus_kernel)
            else:
                raise ValueError(f"unknown MGFN block type {block_type!r}; expected {GLANCE!r} or {FOCUS!r}")
            conv = nn.Conv1d(dim, dim, 3, padding=1)
            self.layers.append(nn.ModuleList([conv, attention, feed_forward(dim, ff_mult, ff_dropout)]))

    def forward(self, x: Tensor) -> Tensor:
        for conv, attention, ff in self.layers:
            x = conv(x) + x
            x = attention(x) + x
            x = ff(x) + x
        return x
