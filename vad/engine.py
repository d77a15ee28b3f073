"""The per-epoch work: one training pass, the objective on held-out videos, and snippet scores for evaluation.

Nothing here reads files or knows about configs: tensors in, numbers out. ``vad.train`` wires it together.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterable, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from vad.models import ModelOutput


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite; the run stops instead of training on it."""


def autocast(device: torch.device, bf16: bool) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA when asked; a no-op otherwise."""
    if bf16 and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def rows_to_batch(features: Tensor, rows: Tensor, device: torch.device) -> Tensor:
    """``(b, N, T, C)`` float32 batch of ``rows`` from the ``(V, N, T, C)`` training array, on ``device``.

    When the array already lives on ``device`` this is one ``index_select`` (no host-to-device copy).
    """
    if features.device == device:
        return features.index_select(0, rows.to(device, non_blocking=True))
    return features.index_select(0, rows.cpu()).to(device, non_blocking=True)


def train_one_epoch(
    model: nn.Module,
    criterion: nn.Module,
    optimizer: torch.optim.Optimizer,
    batches: Sequence[np.ndarray],
    features: Tensor,
    labels: Tensor,
    *,
    device: torch.device,
    bf16: bool = False,
    check_every: int = 1,
) -> dict[str, float]:
    """One pass over ``batches`` (each ``(2B,)`` row indices); returns mean ``train_loss``, its terms, throughput.

    ``features``: ``(V, N, T, C)`` on ``device`` or the CPU; ``labels``: ``(V,)`` on the CPU (the loss splits
    normal/abnormal rows on the CPU, so no device sync). The loss is checked for finiteness every
    ``check_every`` steps *before* the optimizer step (every step on CPU, where the check is free).
    """
    model.train()
    start = time.perf_counter()
    all_rows = torch.from_numpy(np.stack(batches)).long()
    device_rows = all_rows.to(device) if features.device == device else all_rows
    sums: dict[str, Tensor] = {}
    for step in range(len(all_rows)):
        x = rows_to_batch(features, device_rows[step], device)
        with autocast(device, bf16):
            out = model(x)
        try:
            loss, terms = criterion(out.float(), labels[all_rows[step]])
        except RuntimeError as exc:  # BCE refuses NaN scores before any loss value exists
            if not bool(torch.isfinite(out.scores).all()):
                raise NonFiniteLossError(f"model scores became non-finite at step {step + 1} of the epoch") from exc
            raise
        if ((step + 1) % check_every == 0 or step + 1 == len(all_rows)) and not bool(torch.isfinite(loss)):
            raise NonFiniteLossError(f"training loss became {float(loss.detach())} at step {step + 1} of the epoch")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        for name, value in (("train_loss", loss), *((f"train_{k}", v) for k, v in terms.items())):
            sums[name] = sums.get(name, 0.0) + value.detach()
    values = {name: float(total) / max(len(all_rows), 1) for name, total in sums.items()}
    if not math.isfinite(values.get("train_loss", 0.0)):
        raise NonFiniteLossError(f"training loss became {values['train_loss']} during the epoch")
    params = [p.detach() for p in model.parameters()]
    if params and not bool(torch.stack([torch.isfinite(p).all() for p in params]).all()):  # the last steps' updates
        raise NonFiniteLossError(f"the weights became non-finite after step {len(all_rows)} of the epoch "
                                 "(the last update overflowed)")
    seconds = time.perf_counter() - start
    videos = int(all_rows.numel())
    values.update(epoch_time=seconds, videos_per_s=videos / seconds if seconds > 0 else float("nan"))
    return values


@torch.no_grad()
def forward_in_chunks(
    model: nn.Module, features: Tensor, rows: Tensor, *, device: torch.device, bf16: bool = False, chunk: int = 64
) -> ModelOutput:
    """Eval-mode outputs for ``rows`` of a ``(V, N, T, C)`` array, ``chunk`` videos at a time (outputs of one
    video do not depend on the others in eval mode)."""
    model.eval()
    outs = []
    for start in range(0, len(rows), chunk):
        x = rows_to_batch(features, rows[start:start + chunk], device)
        with autocast(device, bf16):
            outs.append(model(x).float())
    return ModelOutput.cat(outs)


def validation_batches(
    normal: np.ndarray, abnormal: np.ndarray, batch_per_class: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Balanced batches ``[(normal_rows, abnormal_rows)]`` in which every held-out video counts once.

    The losses pair normal and abnormal videos one to one, so a batch holds as many of each. The rule: the
    larger class (``m`` videos) is cut, in order, into ``ceil(m / batch_per_class)`` consecutive batches of
    (nearly) equal even size, at most ``batch_per_class`` (the authors' composition; sizes differ by at most 2,
    never a batch filled up with repeated videos); the smaller class follows the same sizes, in order. So with equal
    class counts (and an even count) every video appears exactly once. Otherwise the ``m - s`` extra places of the
    smaller class (``s`` videos) take its videos again from the start, and an odd ``m`` takes one more video of
    each class (even sizes: MGFN halves the rows of each class). Weighted by their size, the batches' losses
    average over pairs.
    """
    larger = max(len(normal), len(abnormal))
    if larger == 0:
        return []
    even = larger + larger % 2
    cap = max(2, batch_per_class - batch_per_class % 2)
    n_batches = -(-even // cap)
    pairs = even // 2
    sizes = 2 * (pairs // n_batches + (np.arange(n_batches) < pairs % n_batches))
    normal = np.resize(normal, even)
    abnormal = np.resize(abnormal, even)
    bounds = np.r_[0, np.cumsum(sizes)]
    return [(normal[a:b], abnormal[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]


@torch.no_grad()
def objective(
    criterion: nn.Module, outputs: ModelOutput, labels: np.ndarray, batch_per_class: int, prefix: str,
    *, terms: bool = True,
) -> dict[str, float]:
    """The training objective on eval-mode ``outputs`` of held-out videos, in the balanced batches of
    :func:`validation_batches` (each video counts once; at most ``batch_per_class`` per class, as in training,
    since sparsity and smoothness depend on the batch).

    Returns ``{prefix}_loss`` and (with ``terms``) ``{prefix}_<term>``, averaged over batches weighted by their
    size.
    """
    normal = np.flatnonzero(labels == 0)
    abnormal = np.flatnonzero(labels == 1)
    if len(normal) == 0 or len(abnormal) == 0:
        return {f"{prefix}_loss": float("nan")}
    sums: dict[str, float] = {}
    total = 0
    for n_rows, a_rows in validation_batches(normal, abnormal, batch_per_class):
        rows = torch.from_numpy(np.concatenate([n_rows, a_rows])).long()
        batch_labels = torch.from_numpy(labels[rows.numpy()]).long()
        loss, parts = criterion(outputs.select(rows.to(outputs.scores.device)), batch_labels)
        weight = len(rows)
        for name, value in (("loss", loss), *(parts.items() if terms else ())):
            sums[name] = sums.get(name, 0.0) + float(value) * weight
        total += weight
    return {f"{prefix}_{name}": value / total for name, value in sums.items()}


def topk_mean(scores: Tensor, k: int) -> Tensor:
    """``(V,)`` video scores: the mean of each video's ``k`` highest snippet scores from ``(V, T)``."""
    return torch.topk(scores, min(k, scores.shape[1]), dim=1).values.mean(dim=1)


def equal_length_batches(lengths: Sequence[int], max_snippets: int) -> list[list[int]]:
    """Indices of videos grouped by equal length ``T``, each group cut into batches of at most
    ``max(1, max_snippets // T)`` videos; groups in order of their first video, videos in list order."""
    groups: dict[int, list[int]] = {}
    for index, length in enumerate(lengths):
        groups.setdefault(int(length), []).append(index)
    batches = []
    for length, members in groups.items():
        size = max(1, max_snippets // max(length, 1))
        batches.extend(members[start:start + size] for start in range(0, len(members), size))
    return batches


@torch.inference_mode()
def snippet_scores(
    model: nn.Module, videos: Iterable[np.ndarray], *, device: torch.device, bf16: bool = False,
    max_snippets: int = 2048,
) -> list[np.ndarray]:
    """Per-snippet scores ``(T_i,)`` for each full-length video ``(N, T_i, C)``, in input order.

    Videos of the same length ``T`` share one forward pass (``(b, N, T, C)``, at most ``max_snippets // T``
    videos): no padding, which would change attention and non-local outputs; in eval mode each video's outputs
    do not depend on the others in its batch, so the scores equal the one-video passes up to float32 rounding.
    ``max_snippets=0``: one video per pass (as the authors test).

    Every pass's input is copied (and cast to float32) into one host buffer reused by all passes, sized for the
    largest: a fresh array per pass costs a page fault per 4 KiB of input on top of the copy (on the UCF-sized
    test input of ``benchmarks/test_pass.py``: 1.3 s against 0.8 s for the copy alone).
    """
    model.eval()
    videos = list(videos)
    lengths = [video.shape[1] for video in videos]
    batches = equal_length_batches(lengths, max_snippets) if max_snippets > 0 else [[i] for i in range(len(videos))]
    buffer = np.empty(max((len(batch) * np.size(videos[batch[0]]) for batch in batches), default=0), np.float32)
    scores: list[np.ndarray | None] = [None] * len(videos)
    for batch in batches:
        x = batch_input(buffer, [videos[i] for i in batch])
        with autocast(device, bf16):
            out = model(torch.from_numpy(x).to(device))
        values = out.scores.float().cpu().numpy()
        for row, index in enumerate(batch):
            scores[index] = values[row].copy()  # its own array: no view of the pass's output or of the buffer
    return scores


def batch_input(buffer: np.ndarray, videos: Sequence[np.ndarray]) -> np.ndarray:
    """``(b, N, T, C)`` float32 view of the flat ``buffer`` holding ``videos`` (each ``(N, T, C)``, any strides
    and float dtype, e.g. transposed views of the ``(sum T, N, C)`` test cache), copied in."""
    first = videos[0]
    shapes = {np.shape(video) for video in videos}
    if len(shapes) != 1:
        raise ValueError(f"batch_input: videos of one pass must share their shape, got {sorted(shapes)}")
    x = buffer[:len(videos) * np.size(first)].reshape(len(videos), *np.shape(first))
    for row, video in enumerate(videos):
        x[row] = video
    return x
