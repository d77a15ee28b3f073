"""MGFN (Chen et al., AAAI 2023): glance and focus stages over snippet features plus a feature-magnitude channel."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from vad.coerce import NON_NEGATIVE, POSITIVE_INT, PROBABILITY, Limit
from vad.models.components.time_major import conv1d_time_major
from vad.models.mgfn.blocks import BLOCK_ALIASES, ChannelLayerNorm, MGFNStage
from vad.models.output import ModelOutput


class MGFN(nn.Module):
    """MGFN as the authors coded it (``carolchenyx/MGFN.``); ``forward`` maps ``(B, N, T, C)`` to a ModelOutput.

    Per crop, the features ``(T, C)`` and their magnitude channel (the L2 norm over ``C`` of each snippet, computed
    here) are embedded by ``to_tokens`` (Conv1d ``C -> dims[0]``, kernel 3) and ``to_mag`` (Conv1d ``1 -> dims[0]``),
    summed as ``tokens + mag_ratio * mag``, passed through one :class:`MGFNStage` per entry of ``dims`` (with a channel
    LayerNorm and a 1x1 conv to the next width between stages), then ``nn.LayerNorm(dims[-1])`` gives the features
    whose magnitudes top-k ranks, and ``sigmoid(fc(features))`` the snippet scores. ``dropout`` is used only for the
    top-k mask (in the loss). Heads per stage are ``dim // dim_head`` unless ``heads`` is given.

    state_dict layout (145 keys with the defaults; ``s`` stage, ``i`` block; only the last stage has no ``.1``)::

        to_tokens.{weight,bias}                        to_mag.{weight,bias}
        stages.<s>.0.layers.<i>.0.{weight,bias}         3-tap conv with residual
        stages.<s>.0.layers.<i>.1.norm.{g,b}            glance: channel LayerNorm
        stages.<s>.0.layers.<i>.1.to_qkv.weight         glance
        stages.<s>.0.layers.<i>.1.norm.{weight,bias,running_mean,running_var,num_batches_tracked}   focus: BatchNorm
        stages.<s>.0.layers.<i>.1.to_v.weight           focus
        stages.<s>.0.layers.<i>.1.rel_pos.{weight,bias} focus: depthwise (heads, 1, kernel)
        stages.<s>.0.layers.<i>.1.to_out.{weight,bias}  both
        stages.<s>.0.layers.<i>.2.0.{g,b}               feed-forward LayerNorm; .2.1 / .2.4 its convs
        stages.<s>.1.0.{g,b}  stages.<s>.1.1.{weight,bias}   between stages
        to_logits.0.{weight,bias}                       fc.{weight,bias}

    Parameters: 28,652,773 at ``feature_dim=2048``; 28,456,165 at 1024 (only ``to_tokens`` depends on it).
    Deviation kept out of the defaults: the authors derive heads from ``dim_head`` but always build 64-d heads; here
    ``dim_head`` is used for both (identical at the default 64).
    """

    ARG_LIMITS: ClassVar[dict[str, Limit]] = {
        "feature_dim": POSITIVE_INT, "n_crops": POSITIVE_INT, "dims": Limit(1, min_items=1),
        "depths": Limit(0, min_items=1),
        "block_types": Limit(choices=(*BLOCK_ALIASES, *(name.upper() for name in BLOCK_ALIASES)), min_items=1),
        "heads": POSITIVE_INT, "dim_head": POSITIVE_INT, "ff_mult": POSITIVE_INT, "focus_kernel": POSITIVE_INT,
        "attention_dropout": PROBABILITY, "ff_dropout": PROBABILITY, "mag_ratio": NON_NEGATIVE,
        "dropout": PROBABILITY,
    }
    """What a config may set (checked before any work, see :func:`vad.coerce.check_limits`)."""

    @staticmethod
    def check_arguments(args: dict[str, Any]) -> tuple[str, str] | None:
        """The relations between arguments that the constructor needs: ``(key, why)`` of the first one broken."""
        dims, depths, block_types, heads = (args["dims"], args["depths"], args["block_types"], args["heads"])
        if not len(dims) == len(depths) == len(block_types):
            return "dims", (f"one entry per stage in dims, depths and block_types; got {len(dims)}, {len(depths)} "
                            f"and {len(block_types)} ({list(dims)}, {list(depths)}, {list(block_types)})")
        if heads is not None and len(heads) != len(dims):
            return "heads", f"one count per stage ({len(dims)}), got {list(heads)}"
        if heads is None and dims and min(dims) < args["dim_head"]:
            return "dims", f"every stage width must be at least dim_head={args['dim_head']}, got {list(dims)}"
        if args["focus_kernel"] % 2 == 0:
            return "focus_kernel", f"must be odd (keeps T), got {args['focus_kernel']}"
        return None

    def __init__(
        self,
        *,
        feature_dim: int = 2048,
        n_crops: int = 10,
        dims: Sequence[int] = (64, 128, 1024),
        depths: Sequence[int] = (3, 3, 2),
        block_types: Sequence[str] = ("glance", "focus", "focus"),
        heads: Sequence[int] | None = None,
        dim_head: int = 64,
        ff_mult: int = 4,
        focus_kernel: int = 5,
        attention_dropout: float = 0.0,
        ff_dropout: float = 0.0,
        mag_ratio: float = 0.1,
        dropout: float = 0.7,
    ) -> None:
        super().__init__()
        dims, depths = _int_tuple("dims", dims), _int_tuple("depths", depths)
        block_types = _block_types(block_types)
        _positive(feature_dim=feature_dim, n_crops=n_crops, dim_head=dim_head, ff_mult=ff_mult)
        if any(d < 1 for d in dims) or any(d < 0 for d in depths):
            raise ValueError(f"MGFN dims must be positive and depths non-negative, got dims={dims}, depths={depths}")
        if not (len(dims) == len(depths) == len(block_types)) or not dims:
            raise ValueError(
                "MGFN needs one entry per stage in dims, depths and block_types; got "
                f"dims={dims}, depths={depths}, block_types={block_types}"
            )
        if heads is None:
            heads = tuple(d // dim_head for d in dims)
            if min(heads) < 1:
                raise ValueError(f"every stage width in dims={dims} must be at least dim_head={dim_head}")
        else:
            heads = _int_tuple("heads", heads)
            if len(heads) != len(dims) or min(heads) < 1:
                raise ValueError(f"heads must give a positive count per stage ({len(dims)} stages), got {heads}")
        if focus_kernel < 1 or focus_kernel % 2 == 0:
            raise ValueError(f"focus_kernel must be a positive odd number (keeps T), got {focus_kernel}")
        for name, p in (("attention_dropout", attention_dropout), ("ff_dropout", ff_dropout), ("dropout", dropout)):
            if not 0.0 <= p < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {p}")

        self.feature_dim = feature_dim
        self.n_crops = n_crops
        self.dropout = dropout
        self.mag_ratio = mag_ratio
        self.dims, self.depths, self.block_types, self.heads = dims, depths, block_types, heads

        self.to_tokens = nn.Conv1d(feature_dim, dims[0], kernel_size=3, padding=1)
        self.stages = nn.ModuleList()
        for s, (dim, depth, block_type, n_heads) in enumerate(zip(dims, depths, block_types, heads)):
            stage = MGFNStage(
                dim=dim,
                depth=depth,
                block_type=block_type,
                heads=n_heads,
                dim_head=dim_head,
                ff_mult=ff_mult,
                focus_kernel=focus_kernel,
                attention_dropout=attention_dropout,
                ff_dropout=ff_dropout,
            )
            pair = [stage]
            if s + 1 < len(dims):
                pair.append(nn.Sequential(ChannelLayerNorm(dim), nn.Conv1d(dim, dims[s + 1], 1)))
            self.stages.append(nn.ModuleList(pair))
        self.to_logits = nn.Sequential(nn.LayerNorm(dims[-1]))
        self.fc = nn.Linear(dims[-1], 1)
        self.to_mag = nn.Conv1d(1, dims[0], kernel_size=3, padding=1)

    def forward(self, x: Tensor) -> ModelOutput:
        """``x``: ``(B, N, T, C)`` raw features -> scores, magnitudes ``(B, T)``, features ``(B, N, T, dims[-1])``."""
        self._check_input(x)
        b, n, t, c = x.shape
        snippets = x.reshape(b * n, t, c)
        magnitude = torch.linalg.vector_norm(snippets, ord=2, dim=2, keepdim=True)  # (B*N, T, 1)
        # time-major throughout (B*N, T, d): every conv is one matrix product, no transposes
        h = conv1d_time_major(snippets, self.to_tokens) + self.mag_ratio * conv1d_time_major(magnitude, self.to_mag)
        for pair in self.stages:
            h = pair[0].forward_time_major(h)
            if len(pair) > 1:  # between stages: channel LayerNorm + 1x1 conv to the next width
                norm, conv = pair[1]
                h = conv1d_time_major(norm.forward_time_major(h), conv)
        features = self.to_logits(h)  # (B*N, T, F)
        scores = torch.sigmoid(self.fc(features)).reshape(b, n, t).mean(dim=1)
        magnitudes = torch.linalg.vector_norm(features, ord=2, dim=2).reshape(b, n, t).mean(dim=1)
        return ModelOutput(
            scores=scores,
            magnitudes=magnitudes,
            features=features.reshape(b, n, t, -1),
            topk_dropout=self.dropout if self.training else 0.0,
        )

    def _check_input(self, x: Tensor) -> None:
        if x.dim() != 4:
            raise ValueError(f"MGFN expects features of shape (B, N, T, C), got {x.dim()} dimensions {tuple(x.shape)}")
        _, n, _, c = x.shape
        if c != self.feature_dim:
            hint = ""
            if c == self.feature_dim + 1:
                hint = " (pass the raw features: MGFN adds the magnitude channel itself)"
            raise ValueError(f"MGFN built for feature_dim={self.feature_dim} got C={c} in {tuple(x.shape)}{hint}")
        if n != self.n_crops:
            raise ValueError(f"MGFN built for n_crops={self.n_crops} got N={n} crops in {tuple(x.shape)}")


def _int_tuple(name: str, values: Sequence[int]) -> tuple[int, ...]:
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise TypeError(f"MGFN {name} must be a list or tuple of integers, got {values!r}")
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise TypeError(f"MGFN {name} must contain integers, got {values!r}")
    return tuple(values)


def _block_types(values: Sequence[str]) -> tuple[str, ...]:
    if isinstance(values, str) or not isinstance(values, Sequence):
        raise TypeError(f"MGFN block_types must be a list or tuple of names, got {values!r}")
    names = []
    for value in values:
        key = value.lower() if isinstance(value, str) else value
        if key not in BLOCK_ALIASES:
            raise ValueError(f"unknown MGFN block type {value!r}; expected one of {', '.join(BLOCK_ALIASES)}")
        names.append(BLOCK_ALIASES[key])
    return tuple(names)


def _positive(**values: int) -> None:
    for name, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"MGFN {name} must be a positive integer, got {value!r}")
