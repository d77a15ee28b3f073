"""Scoring a model on the test set (frame level) and on held-out training videos (video level, weak labels).

Shared by the training loop (per-epoch validation, the final test of the selected checkpoint) and
``python -m vad.evaluate`` (any checkpoint, including the authors' released weights, via :func:`evaluate_model`),
so both report the same numbers for the same weights.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from vad.builders import build_model, pick_device, resolve_config
from vad.checkpoint import load_model_state
from vad.config import TrainConfig
from vad.data import resample_segments
from vad.engine import forward_in_chunks, objective, snippet_scores, topk_mean
from vad.metrics import expand_to_frames, false_alarm_rate, frame_metrics, per_class_auc, video_metrics
from vad.metrics.intervals import bootstrap_intervals
from vad.models import create_loss, load_original_weights
from vad.prepare import PreparedData, prepare_data


def as_tensor(array: np.ndarray) -> torch.Tensor:
    """A torch view of a (possibly read-only, memory-mapped) float32 array, without copying it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # read-only memmap: we never write through the view
        return torch.from_numpy(array)


@torch.no_grad()
def validate(
    model: nn.Module,
    criterion: nn.Module,
    features: torch.Tensor,
    labels: np.ndarray,
    rows: np.ndarray,
    *,
    k: int,
    batch_per_class: int,
    device: torch.device,
    bf16: bool = False,
    prefix: str = "val",
    reference: nn.Module | None = None,
) -> dict[str, float]:
    """``{prefix}_loss`` (+ terms), ``{prefix}_ref_loss`` and ``{prefix}_video_auc`` / ``_video_ap`` on ``rows``
    of the resampled ``(V, N, T, C)`` array (``labels (V,)``).

    ``{prefix}_ref_loss`` is ``reference``'s objective on the same outputs (one forward pass): the base config's
    loss settings, so every trial of a sweep is scored by one function; ``None``: ``criterion`` itself (then it
    equals ``{prefix}_loss``). Each video counts once (see :func:`vad.engine.validation_batches`). Video scores
    are the mean of each video's ``k`` highest snippet scores: a weakly-supervised selection signal that needs
    only video labels and does not depend on the searched loss weights.
    """
    row_tensor = torch.from_numpy(np.asarray(rows)).long()
    outputs = forward_in_chunks(model, features, row_tensor, device=device, bf16=bf16)
    row_labels = labels[rows]
    metrics = objective(criterion, outputs, row_labels, batch_per_class, prefix)
    if reference is None:
        metrics[f"{prefix}_ref_loss"] = metrics[f"{prefix}_loss"]
    else:
        metrics[f"{prefix}_ref_loss"] = objective(reference, outputs, row_labels, batch_per_class, prefix,
                                                  terms=False)[f"{prefix}_loss"]
    video = video_metrics(topk_mean(outputs.scores, k).cpu().numpy(), row_labels)
    metrics.update({f"{prefix}_{name}": value for name, value in video.items()})
    return metrics


@dataclass
class TestScores:
    """Per-video snippet scores on the test set, enough to re-score a run without the model."""

    video_ids: list[str]
    labels: np.ndarray
    classes: list[str]
    scores: list[np.ndarray]

    def save(self, path: str | Path) -> Path:
        """Write ``.npz``: ``video_ids``, ``labels``, ``classes``, ``lengths`` and concatenated ``scores``."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(
            path,
            video_ids=np.array(self.video_ids, dtype=str),
            labels=np.asarray(self.labels, dtype=np.int64),
            classes=np.array([c or "" for c in self.classes], dtype=str),
            lengths=np.array([len(s) for s in self.scores], dtype=np.int64),
            scores=np.concatenate(self.scores).astype(np.float32) if self.scores else np.zeros(0, np.float32),
        )
        return path

    @classmethod
    def load(cls, path: str | Path) -> TestScores:
        """Inverse of :meth:`save` (no pickles)."""
        with np.load(path, allow_pickle=False) as data:
            bounds = np.concatenate([[0], np.cumsum(data["lengths"])])
            scores = [data["scores"][a:b] for a, b in zip(bounds[:-1], bounds[1:])]
            return cls(list(map(str, data["video_ids"])), data["labels"], list(map(str, data["classes"])), scores)


def score_test(model: nn.Module, prepared: PreparedData, *, device: torch.device, bf16: bool = False,
               max_snippets: int = 2048) -> TestScores:
    """Snippet scores of every full-length test video; videos of equal length share a forward pass (at most
    ``max_snippets`` snippets; 0: one video per pass), see :func:`vad.engine.snippet_scores`."""
    test = prepared.test
    videos = [test.video(i) for i in range(len(test.lengths))]
    scores = snippet_scores(model, videos, device=device, bf16=bf16, max_snippets=max_snippets)
    return TestScores(list(test.video_ids), np.asarray(test.labels), list(test.classes), scores)


def expand_test_scores(scores: TestScores, prepared: PreparedData) -> np.ndarray:
    """``(F,)`` frame scores of the test videos, aligned with ``prepared.ground_truth.labels`` (each snippet's
    score repeated over its frames)."""
    gt = prepared.ground_truth
    per_snippet = prepared.dataset.config.frames_per_snippet
    return expand_to_frames(scores.scores, np.diff(gt.offsets), frames_per_snippet=per_snippet)


def frame_level_metrics(scores: TestScores, prepared: PreparedData, threshold: float = 0.5) -> dict[str, float]:
    """Frame-level metrics of test snippet scores against the ground truth (x16 expansion per video)."""
    gt = prepared.ground_truth
    frames = expand_test_scores(scores, prepared)
    metrics = frame_metrics(frames, gt.labels, threshold=threshold)
    metrics["false_alarm_rate"] = false_alarm_rate(frames, gt.labels, gt.offsets, scores.labels, threshold=threshold)
    for name, value in per_class_auc(frames, gt.labels, gt.offsets, scores.classes).items():
        metrics[f"auc_{name}"] = value
    return metrics


def frame_level_intervals(scores: TestScores, prepared: PreparedData, threshold: float = 0.5, *,
                          n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> dict[str, tuple[float, float]]:
    """``{name: (low, high)}``: percentile ``level`` intervals of every frame metric, test videos resampled with
    replacement (:func:`vad.metrics.intervals.bootstrap_intervals`)."""
    gt = prepared.ground_truth
    return bootstrap_intervals(expand_test_scores(scores, prepared), gt.labels, gt.offsets, threshold=threshold,
                               n_boot=n_boot, seed=seed, level=level)


def resampled_test_array(prepared: PreparedData, n_segments: int, method: str) -> torch.Tensor:
    """``(V_test, N, n_segments, C)``: test videos resampled like training videos (for the test loss)."""
    test = prepared.test
    stacked = [
        resample_segments(np.swapaxes(test.video(i), 0, 1), n_segments=n_segments, method=method).swapaxes(0, 1)
        for i in range(len(test.lengths))
    ]
    return torch.from_numpy(np.ascontiguousarray(np.stack(stacked), dtype=np.float32))


def table_losses(
    model: nn.Module,
    criterion: nn.Module,
    prepared: PreparedData,
    test_array: torch.Tensor,
    *,
    k: int,
    batch_per_class: int,
    device: torch.device,
    bf16: bool = False,
) -> dict[str, float]:
    """The study's loss columns: ``test_loss`` (the training objective on the resampled test videos, video labels
    only), ``train_loss`` (the same on the training split), both in eval mode; and the test ``video_auc``."""
    test_labels = np.asarray(prepared.test.labels)
    test_part = validate(model, criterion, test_array, test_labels, np.arange(len(test_labels)), k=k,
                         batch_per_class=batch_per_class, device=device, bf16=bf16, prefix="test")
    train_part = validate(model, criterion, as_tensor(prepared.train_cache.features), prepared.train_cache.labels,
                          prepared.train_rows, k=k, batch_per_class=batch_per_class, device=device, bf16=bf16,
                          prefix="train")
    return {"test_loss": test_part["test_loss"], "train_loss": train_part["train_loss"],
            "video_auc": test_part["test_video_auc"]}


def full_evaluation(
    model: nn.Module,
    criterion: nn.Module,
    prepared: PreparedData,
    *,
    k: int,
    batch_per_class: int,
    n_segments: int,
    method: str,
    threshold: float,
    device: torch.device,
    bf16: bool = False,
    test_array: torch.Tensor | None = None,
) -> tuple[dict[str, float], TestScores]:
    """The reference study's table row for one model: frame-level test metrics, test loss and train loss
    (see :func:`table_losses`). ``test_array``: the resampled test videos, if the caller already has them."""
    scores = score_test(model, prepared, device=device, bf16=bf16)
    metrics = frame_level_metrics(scores, prepared, threshold)
    if test_array is None:
        test_array = resampled_test_array(prepared, n_segments, method)
    metrics.update(table_losses(model, criterion, prepared, test_array, k=k, batch_per_class=batch_per_class,
                                device=device, bf16=bf16))
    return metrics, scores


def evaluate_model(config: TrainConfig, weights: dict[str, torch.Tensor], *, original: bool = False,
                   dictionary: np.ndarray | None = None, device: str = "auto",
                   prepared: PreparedData | None = None) -> tuple[dict[str, float], TestScores, PreparedData]:
    """Load ``weights`` into the configured model and compute the full table row on its dataset.

    ``original``: ``weights`` are the authors' released state dict (converted by the model's entry);
    ``dictionary``: S3R's ``(n_atoms, C)`` dictionary to use instead of the learned one."""
    prepared = prepared or prepare_data(config)
    if dictionary is not None:
        prepared.model_state = {**prepared.model_state, "dictionary": np.asarray(dictionary, dtype=np.float32)}
    config = resolve_config(config, prepared)
    torch_device = pick_device(device)
    model = build_model(config, prepared, torch.device("cpu"))
    if original:
        load_original_weights(model, weights, dictionary=None if dictionary is None else torch.as_tensor(dictionary))
    else:
        load_model_state(model, weights)
    model.to(torch_device)
    criterion = create_loss(config.model_name, **config.loss)
    t = config.train
    return (*full_evaluation(
        model, criterion, prepared, k=config.k, batch_per_class=t.batch_per_class, n_segments=config.data.n_segments,
        method=config.resample_method, threshold=t.threshold, device=torch_device), prepared)
