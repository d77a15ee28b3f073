"""Splitting a batch into its normal and abnormal videos from the video labels (never from batch positions)."""

from __future__ import annotations

import torch
from torch import Tensor


def split_by_label(labels: Tensor, *, paired: bool = True) -> tuple[Tensor, Tensor]:
    """Row indices ``(normal, abnormal)`` of a batch with video ``labels (B,)`` in {0, 1}, order preserved.

    Both classes must be present; with ``paired=True`` (the losses that pair rows by index) their counts must
    also agree. The authors' batches put the normal videos first, which this reproduces for such batches.
    """
    labels = labels.reshape(-1)
    if labels.numel() and not bool(((labels == 0) | (labels == 1)).all()):
        raise ValueError(f"video labels must be 0 (normal) or 1 (abnormal), got values {labels.unique().tolist()}")
    normal = torch.nonzero(labels == 0, as_tuple=True)[0]
    abnormal = torch.nonzero(labels == 1, as_tuple=True)[0]
    if normal.numel() == 0 or abnormal.numel() == 0:
        raise ValueError(
            f"this loss needs both normal and abnormal videos in a batch; got {normal.numel()} normal and "
            f"{abnormal.numel()} abnormal"
        )
    if paired and normal.numel() != abnormal.numel():
        raise ValueError(
            f"this loss pairs normal and abnormal videos one to one; got {normal.numel()} normal and "
            f"{abnormal.numel()} abnormal videos in the batch"
        )
    return normal, abnormal
