"""The normal and abnormal rows of a batch in a form that indexes device tensors without a host-device copy."""

from __future__ import annotations

import torch
from torch import Tensor

from vad.models.components.batch import split_by_label

Rows = slice | Tensor
"""Rows of one class: a ``slice`` when they form one contiguous block, else a ``(b,)`` index tensor."""


def _as_rows(rows: Tensor, device: torch.device) -> Rows:
    first, last = int(rows[0]), int(rows[-1])  # CPU tensors (ascending, from split_by_label): no device sync
    if last - first == rows.numel() - 1:
        return slice(first, last + 1)
    return rows.to(device)


def class_rows(labels: Tensor, device: torch.device, *, paired: bool = True) -> tuple[Rows, Rows]:
    """``(normal, abnormal)`` rows of a batch with video ``labels (B,)`` (see :func:`split_by_label`), to index
    tensors on ``device`` with ``tensor[rows]``.

    A class whose rows form one contiguous block (the samplers' normal-first batches) gets a ``slice``: no index
    tensor is copied to the GPU, so a training step issues no host-to-device copy (a copy from pageable memory
    waits for the GPU's queue). Other layouts get index tensors on ``device``; the selected rows are the same.
    """
    normal, abnormal = split_by_label(labels.cpu() if labels.device.type != "cpu" else labels, paired=paired)
    return _as_rows(normal, device), _as_rows(abnormal, device)
