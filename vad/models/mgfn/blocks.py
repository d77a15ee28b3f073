"""MGFN's building blocks: channel LayerNorm, glance and focus blocks, feed-forward, stage.

Each block is computed on time-major ``(b, T, d)`` tensors (``forward_time_major``: every 1x1 or temporal conv is
one matrix product, no transposes between blocks); calling a block directly takes the authors' channels-first
``(b, d, T)`` (see :class:`~vad.models.components.time_major.TimeMajorBlock`).

Module and attribute names follow the authors' code so that their checkpoints load key for key
(``norm``, ``to_qkv``, ``to_v``, ``rel_pos``, ``to_out``; the feed-forward is a Sequential with the convs at 1 and 4).
Modules are created in the authors' order, so the same seed gives the same initial weights.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from vad.models.components.time_major import TimeMajorBlock, batch_norm_time_major, conv1d_time_major

GLANCE = "glance"
FOCUS = "focus"
BLOCK_ALIASES = {"glance": GLANCE, "gb": GLANCE, "focus": FOCUS, "fb": FOCUS}
"""Accepted block-type names (case-insensitive): readable names and the authors' ``gb``/``fb``."""


class ChannelLayerNorm(TimeMajorBlock):
    """The authors' LayerNorm over the channels of ``(b, d, T)``: ``(x - mean) / (std + eps) * g + b``.

    Mean and biased standard deviation are taken over ``d`` per snippet; ``eps`` is added to the std (not the
    variance). Parameters ``g`` and ``b`` have shape ``(1, d, 1)``.
    """

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.g = nn.Parameter(torch.ones(1, dim, 1))
        self.b = nn.Parameter(torch.zeros(1, dim, 1))

    def forward_time_major(self, x: Tensor) -> Tensor:
        """``(b, T, d) -> (b, T, d)``, normalised over ``d``."""
        variance, mean = torch.var_mean(x, dim=2, unbiased=False, keepdim=True)
        return (x - mean) / (variance.sqrt() + self.eps) * self.g.view(-1) + self.b.view(-1)


class Glance(TimeMajorBlock):
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

    def forward_time_major(self, x: Tensor) -> Tensor:
        """``(b, T, d) -> (b, T, d)``."""
        b, t, _ = x.shape
        qkv = conv1d_time_major(self.norm.forward_time_major(x), self.to_qkv)  # (b, T, 3 * h * dh)
        q, k, v = (z.reshape(b, t, self.heads, self.dim_head).transpose(1, 2) for z in qkv.chunk(3, dim=2))
        attn = torch.matmul(q * self.scale, k.transpose(2, 3)).softmax(dim=-1)  # (b, h, T, T)
        out = torch.matmul(self.attn_dropout(attn), v)  # (b, h, T, dh)
        return conv1d_time_major(out.transpose(1, 2).reshape(b, t, self.heads * self.dim_head), self.to_out)


class Focus(TimeMajorBlock):
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

    def forward_time_major(self, x: Tensor) -> Tensor:
        """``(b, T, d) -> (b, T, d)``; the depthwise temporal conv runs as the authors' ``rel_pos`` conv."""
        b, t, _ = x.shape
        v = conv1d_time_major(batch_norm_time_major(self.norm, x), self.to_v)  # (b, T, dh * h): position * h + head
        per_head = v.reshape(b, t, self.dim_head, self.heads).permute(0, 2, 3, 1)  # (b, dh, h, T)
        local = self.rel_pos(per_head.reshape(b * self.dim_head, self.heads, t))  # (b * dh, h, T)
        local = local.reshape(b, self.dim_head, self.heads, t).permute(0, 3, 1, 2)  # (b, T, dh, h)
        return conv1d_time_major(local.reshape(b, t, self.dim_head * self.heads), self.to_out)


class FeedForward(TimeMajorBlock, nn.Sequential):
    """channel LayerNorm -> 1x1 conv ``dim -> mult * dim`` -> exact GELU -> Dropout -> 1x1 conv back (keys 0, 1, 4).

    A Sequential for the key layout; computed time-major (``(b, T, d) -> (b, T, d)``).
    """

    def __init__(self, dim: int, mult: int = 4, dropout: float = 0.0) -> None:
        super().__init__(
            ChannelLayerNorm(dim),
            nn.Conv1d(dim, dim * mult, 1),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Conv1d(dim * mult, dim, 1),
        )

    def forward_time_major(self, x: Tensor) -> Tensor:
        """``(b, T, d) -> (b, T, d)``."""
        norm, expand, gelu, dropout, project = self
        return conv1d_time_major(dropout(gelu(conv1d_time_major(norm.forward_time_major(x), expand))), project)


class MGFNStage(TimeMajorBlock):
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
            self.layers.append(nn.ModuleList([conv, attention, FeedForward(dim, ff_mult, ff_dropout)]))

    def forward_time_major(self, x: Tensor) -> Tensor:
        """``(b, T, dim) -> (b, T, dim)``."""
        for conv, attention, ff in self.layers:
            x = conv1d_time_major(x, conv) + x
            x = attention.forward_time_major(x) + x
            x = ff.forward_time_major(x) + x
        return x
