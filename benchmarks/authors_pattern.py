"""Baselines for ``step_time``: our models' modules executed the way the authors' code executes them.

The authors' code cannot live in this repository, so these functions are our own code that reproduces their
*execution pattern* on an instance of our model (same parameters, same state_dict): channels-first ``nn.Conv1d``
calls with ``permute`` between the blocks, the top-k selection inside the forward with normal/abnormal videos
sliced by batch position and the selected features gathered by a Python loop over crops with ``torch.cat``,
their loss formulas term by term (e.g. RTFM's smoothness through a ``zeros_like`` copy), the unscaled softmax of
S3R computed with ``Tensor.softmax``, MGFN's attention with ``einsum`` and its magnitude channel fed as input
channel ``C + 1``. With the same weights and seed they compute the same loss as our models to float32 rounding
(checked in ``tests/test_benchmarks_step_time.py``), so timing both measures the execution, not the maths.

``baseline_step(model, criterion, x, batch_size)`` is the entry point: ``x (2b, N, T, C)`` (from
:func:`baseline_input`), normal videos first (the authors' batch layout); it returns the scalar loss of one
training step (the caller runs backward). The losses (``LOSSES``) also serve the authors' real model classes
(``benchmarks/authors_repo.py``), whose forwards return the same selection.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vad.models.mgfn.blocks import ChannelLayerNorm, Glance
from vad.models.registry import entry_for

# ----------------------------------------------------------------------------------------------- shared: top-k


def select_topk_authors_way(
    features: Tensor, scores: Tensor, batch_size: int, n_crops: int, k: int, drop_out: nn.Module
) -> dict[str, Tensor]:
    """The authors' in-forward top-k selection (RTFM ``Model.forward``, MGFN ``MSNSD``, S3R ``forward``).

    ``features (2b*N, T, F)``, ``scores (2b*N, T, 1)`` per crop; returns the crop-averaged ``scores (2b, T, 1)``,
    ``score_normal``/``score_abnormal (b, 1)`` and the gathered ``feat_normal``/``feat_abnormal (N*b, k, F)``
    (crop-major, built by a loop over crops with ``torch.cat``).
    """
    bc, t, f = features.shape
    bs = bc // n_crops
    scores = scores.view(bs, n_crops, -1).mean(1).unsqueeze(dim=2)
    normal_features, abnormal_features = features[0 : batch_size * n_crops], features[batch_size * n_crops :]
    normal_scores, abnormal_scores = scores[0:batch_size], scores[batch_size:]
    magnitudes = torch.norm(features, p=2, dim=2).view(bs, n_crops, -1).mean(1)
    normal_magnitudes, abnormal_magnitudes = magnitudes[0:batch_size], magnitudes[batch_size:]
    n_size = normal_magnitudes.shape[0]
    out = {"scores": scores}
    order = (("abnormal", abnormal_magnitudes, abnormal_features, abnormal_scores),
             ("normal", normal_magnitudes, normal_features, normal_scores))
    for name, class_magnitudes, class_features, class_scores in order:  # the abnormal mask is drawn first
        mask = drop_out(torch.ones_like(normal_magnitudes))
        idx = torch.topk(class_magnitudes * mask, k, dim=1)[1]
        idx_feat = idx.unsqueeze(2).expand([-1, -1, class_features.shape[2]])
        per_crop = class_features.view(n_size, n_crops, t, f).permute(1, 0, 2, 3)
        selected = torch.zeros(0, device=features.device)
        for crop_features in per_crop:
            selected = torch.cat((selected, torch.gather(crop_features, 1, idx_feat)))
        idx_score = idx.unsqueeze(2).expand([-1, -1, class_scores.shape[2]])
        out[f"score_{name}"] = torch.mean(torch.gather(class_scores, 1, idx_score), dim=1)
        out[f"feat_{name}"] = selected
    return out


def _selection_dropout(model: nn.Module) -> nn.Module:
    """The authors' ``self.drop_out`` used for the top-k masks (active only while the model trains)."""
    return nn.Dropout(model.dropout).train(model.training)


def _authors_smooth(arr: Tensor, weight: float) -> Tensor:
    shifted = torch.zeros_like(arr)
    shifted[:-1] = arr[1:]
    shifted[-1] = arr[-1]
    return weight * torch.sum((shifted - arr) ** 2)


def _authors_sparsity(arr: Tensor, weight: float) -> Tensor:
    return weight * torch.mean(torch.norm(arr, dim=0))


def rtfm_style_loss(sel: dict[str, Tensor], criterion: nn.Module, batch_size: int) -> Tensor:
    """RTFM's ``train.py`` cost (also S3R's main term): BCE + magnitude + smoothness + sparsity, as they code it."""
    label = torch.cat((torch.zeros(batch_size), torch.ones(batch_size))).to(sel["scores"].device)
    score = torch.cat((sel["score_normal"], sel["score_abnormal"]), 0).squeeze()
    loss_cls = F.binary_cross_entropy(score, label)
    loss_abn = torch.abs(criterion.margin - torch.norm(torch.mean(sel["feat_abnormal"], dim=1), p=2, dim=1))
    loss_nor = torch.norm(torch.mean(sel["feat_normal"], dim=1), p=2, dim=1)
    loss_rtfm = torch.mean((loss_abn + loss_nor) ** 2)
    t = sel["scores"].shape[1]
    abn_scores = sel["scores"].view(batch_size * t * 2, -1).squeeze()[batch_size * t :]
    return (loss_cls + criterion.magnitude_weight * loss_rtfm
            + _authors_smooth(abn_scores, criterion.smoothness_weight)
            + _authors_sparsity(abn_scores, criterion.sparsity_weight))


# ----------------------------------------------------------------------------------------------- RTFM


def _non_local_channels_first(block: nn.Module, x: Tensor, names: tuple[str, str, str, str]) -> Tensor:
    """The authors' non-local block on ``(b, C, T)``: 1x1 convs, ``view``/``permute``, ``.contiguous()``."""
    values_name, queries_name, keys_name, out_name = names
    b = x.shape[0]
    inner = getattr(block, values_name).out_channels
    values = getattr(block, values_name)(x).view(b, inner, -1).permute(0, 2, 1)
    queries = getattr(block, queries_name)(x).view(b, inner, -1).permute(0, 2, 1)
    keys = getattr(block, keys_name)(x).view(b, inner, -1)
    affinity = torch.matmul(queries, keys)
    affinity = affinity / affinity.size(-1)
    y = torch.matmul(affinity, values).permute(0, 2, 1).contiguous().view(b, inner, *x.size()[2:])
    return getattr(block, out_name)(y) + x


def _aggregate_channels_first(aggregate: nn.Module, x: Tensor, non_local_names: tuple[str, str, str, str]) -> Tensor:
    """RTFM's / S3R's Aggregate as the authors run it: ``(b, T, C)`` permuted to ``(b, C, T)`` and back."""
    out = x.permute(0, 2, 1)
    branches = [getattr(aggregate, name)(out) for name in aggregate.branch_names]  # Sequential calls, channels-first
    local = _non_local_channels_first(aggregate.non_local, getattr(aggregate, aggregate.local_name)(out),
                                      non_local_names)
    fused = getattr(aggregate, aggregate.fuse_name)(torch.cat((torch.cat(branches, dim=1), local), dim=1))
    return (fused + out).permute(0, 2, 1)


def rtfm_forward(model: nn.Module, x: Tensor, batch_size: int, k: int) -> dict[str, Tensor]:
    """RTFM ``Model.forward`` on ``x (2b, N, T, C)``: the selection of :func:`select_topk_authors_way`."""
    bs, n_crops, t, f = x.shape
    features = model.drop_out(_aggregate_channels_first(model.Aggregate, x.view(-1, t, f), ("g", "theta", "phi", "W")))
    scores = features
    for name in model.head_names[:-1]:
        scores = model.drop_out(model.relu(getattr(model, name)(scores)))
    scores = torch.sigmoid(getattr(model, model.head_names[-1])(scores))
    return select_topk_authors_way(features, scores, batch_size, n_crops, k, model.drop_out)


# ----------------------------------------------------------------------------------------------- S3R


def s3r_forward(model: nn.Module, x: Tensor, batch_size: int, k: int) -> dict[str, Tensor]:
    """S3R ``forward``: the selection plus ``macro_scores (2b, 1)``; the dictionary expanded per video, as their
    loader feeds it."""
    b, n_crops, t, c = x.shape
    video = x.reshape(b * n_crops, t, c)
    macro = model.dictionary.expand(b, *model.dictionary.shape)
    layers = model.en_normal.en_normal_module
    queries = layers["query_embedding"](video.reshape(b, n_crops * t, c))
    affinity = (queries @ layers["cache_embedding"](macro).transpose(1, 2)).softmax(dim=-1)
    normal = (affinity @ layers["value_embedding"](macro)).reshape(-1, t, c)
    names = ("value", "query", "key", "alter")
    x_video = model.video_embedding[1](_aggregate_channels_first(model.video_embedding[0], video, names))
    x_macro = model.macro_embedding[1](_aggregate_channels_first(model.macro_embedding[0], normal, names))
    x_video, x_macro = model.de_normal(x_video, x_macro)
    scores = model.video_classifier(x_video)
    macro_scores = model.macro_classifier(x_macro).contiguous().view(-1, n_crops, 1).mean(dim=1)
    sel = select_topk_authors_way(x_video, scores, batch_size, n_crops, k, _selection_dropout(model))
    return {**sel, "macro_scores": macro_scores}


def s3r_loss(sel: dict[str, Tensor], criterion: nn.Module, batch_size: int) -> Tensor:
    """S3R's ``trainer.py`` cost: RTFM's plus the BCE of the macro scores against 0."""
    macro_scores = sel["macro_scores"].reshape(-1)
    loss_macro = F.binary_cross_entropy(macro_scores, torch.zeros_like(macro_scores))
    return rtfm_style_loss(sel, criterion, batch_size) + criterion.macro_weight * loss_macro


# ----------------------------------------------------------------------------------------------- MGFN


def _channel_layer_norm(norm: ChannelLayerNorm, x: Tensor) -> Tensor:
    std = torch.var(x, dim=1, unbiased=False, keepdim=True).sqrt()
    mean = torch.mean(x, dim=1, keepdim=True)
    return (x - mean) / (std + norm.eps) * norm.g + norm.b


def _glance(block: nn.Module, x: Tensor) -> Tensor:
    x = _channel_layer_norm(block.norm, x)
    b, _, n = x.shape
    h, d = block.heads, block.dim_head
    q, k, v = (z.reshape(b, h, d, n).permute(0, 1, 3, 2) for z in block.to_qkv(x).chunk(3, dim=1))
    attn = torch.einsum("bhid,bhjd->bhij", q * block.scale, k).softmax(dim=-1)
    out = torch.einsum("bhij,bhjd->bhid", block.attn_dropout(attn), v)
    return block.to_out(out.permute(0, 1, 3, 2).reshape(b, h * d, n))


def _focus(block: nn.Module, x: Tensor) -> Tensor:
    x = block.norm(x)
    b = x.shape[0]
    v = block.to_v(x)
    out = block.rel_pos(v.reshape(b * (v.shape[1] // block.heads), block.heads, -1))
    return block.to_out(out.reshape(b, -1, out.shape[-1]))


def _feed_forward(ff: nn.Sequential, x: Tensor) -> Tensor:
    return ff[4](ff[3](ff[2](ff[1](_channel_layer_norm(ff[0], x)))))


def mgfn_input(x: Tensor) -> Tensor:
    """``(B, N, T, C) -> (B, N, T, C + 1)``: the authors' loaders append each snippet's L2 norm as a channel."""
    return torch.cat((x, torch.linalg.vector_norm(x, dim=-1, keepdim=True)), dim=-1)


def mgfn_forward(model: nn.Module, x_with_magnitude: Tensor, batch_size: int, k: int) -> dict[str, Tensor]:
    """MGFN ``forward`` (with ``MSNSD``) on ``(2b, N, T, C + 1)`` input."""
    bs, n_crops, t, c1 = x_with_magnitude.shape
    x = x_with_magnitude.view(bs * n_crops, t, c1).permute(0, 2, 1)
    h = model.to_tokens(x[:, : c1 - 1, :]) + model.mag_ratio * model.to_mag(x[:, c1 - 1 :, :])
    for pair in model.stages:
        for conv, attention, ff in pair[0].layers:
            h = conv(h) + h
            h = (_glance(attention, h) if isinstance(attention, Glance) else _focus(attention, h)) + h
            h = _feed_forward(ff, h) + h
        if len(pair) > 1:
            h = pair[1][1](_channel_layer_norm(pair[1][0], h))
    features = model.to_logits(h.permute(0, 2, 1))
    scores = torch.sigmoid(model.fc(features))
    return select_topk_authors_way(features, scores, batch_size, n_crops, k, _selection_dropout(model))


def mgfn_loss(sel: dict[str, Tensor], criterion: nn.Module, batch_size: int) -> Tensor:
    """MGFN's ``train.py`` cost after the merged fix: BCE + contrastive + smoothness + sparsity, as they code it."""
    label = torch.cat((torch.zeros(batch_size), torch.ones(batch_size))).to(sel["scores"].device)
    loss_cls = F.binary_cross_entropy(torch.cat((sel["score_normal"], sel["score_abnormal"]), 0).squeeze(), label)
    abnormal, normal = sel["feat_abnormal"], sel["feat_normal"]
    half = int(len(abnormal) / 2)

    def contrastive(a: Tensor, b: Tensor, label: int) -> Tensor:
        distance = F.pairwise_distance(torch.norm(a, p=1, dim=2), torch.norm(b, p=1, dim=2), keepdim=True)
        return torch.mean((1 - label) * torch.pow(distance, 2)
                          + label * torch.pow(torch.clamp(criterion.margin - distance, min=0.0), 2))

    loss_con = contrastive(abnormal, normal, 1)
    loss_con_n = contrastive(normal[half:], normal[:half], 0)
    loss_con_a = contrastive(abnormal[half:], abnormal[:half], 0)
    scores = sel["scores"]
    loss_sparse = _authors_sparsity(scores[:batch_size, :, :].view(-1), criterion.sparsity_weight)
    loss_smooth = criterion.smoothness_weight * torch.sum((scores[:, 1:, :] - scores[:, :-1, :]) ** 2)
    contrastive_term = criterion.contrastive_weight * (criterion.separation_weight * loss_con + loss_con_a + loss_con_n)
    return loss_cls + contrastive_term + loss_smooth + loss_sparse


# ----------------------------------------------------------------------------------------------- entry point

FORWARDS: dict[str, Callable[[nn.Module, Tensor, int, int], dict[str, Tensor]]] = {
    "rtfm": rtfm_forward,
    "mgfn": mgfn_forward,
    "s3r": s3r_forward,
}
LOSSES: dict[str, Callable[[dict[str, Tensor], nn.Module, int], Tensor]] = {
    "rtfm": rtfm_style_loss,
    "mgfn": mgfn_loss,
    "s3r": s3r_loss,
}


def baseline_input(model: nn.Module, x: Tensor) -> Tensor:
    """What the authors' model consumes for our ``x (B, N, T, C)`` (MGFN: the magnitude channel appended)."""
    return mgfn_input(x) if entry_for(model).name == "mgfn" else x


def baseline_step(model: nn.Module, criterion: nn.Module, x: Tensor, batch_size: int) -> Tensor:
    """Loss of one training step of ``model`` executed the authors' way; ``x`` from :func:`baseline_input`,
    ``2 * batch_size`` videos, normal first. Only the default loss options are reproduced (RTFM/S3R
    ``smoothness="flat"``, MGFN ``variant="current"``)."""
    name = entry_for(model).name
    if name not in FORWARDS:
        raise ValueError(f"no authors'-pattern baseline for model {name!r}; known: {', '.join(FORWARDS)}")
    return LOSSES[name](FORWARDS[name](model, x, batch_size, criterion.k), criterion, batch_size)
