"""Resampling a video's snippets to a fixed number of segments along time (axis 0), as the originals train.

- ``mean`` (RTFM, MGFN): bounds ``r = floor(linspace(0, T, n + 1))``; segment i is the mean of snippets
  ``r[i] .. r[i+1]-1``, or snippet ``r[i]`` itself when that range is empty (T < n). Bit-identical to RTFM's
  ``process_feat`` applied per crop (float32 sums in snippet order, then one division).
- ``linear`` (S3R): linear interpolation with half-pixel centres, equal to
  ``torch.nn.functional.interpolate(mode="linear", align_corners=False)`` along time (S3R resizes with OpenCV's
  ``INTER_LINEAR``, which samples at the same positions). Vectorised: no loop over segments.
"""

from __future__ import annotations

import numpy as np

METHODS = ("mean", "linear")


def resample_segments(feat: np.ndarray, n_segments: int = 32, method: str = "mean") -> np.ndarray:
    """``(T, ...)`` -> ``(n_segments, ...)`` float32, resampled along axis 0 (the input is taken as float32 first,
    as the original loaders do)."""
    if method not in METHODS:
        raise ValueError(f"method: {method!r} is not one of {', '.join(METHODS)}")
    if not isinstance(n_segments, (int, np.integer)) or n_segments < 1:
        raise ValueError(f"n_segments: expected a positive integer, got {n_segments!r}")
    feat = np.asarray(feat, dtype=np.float32)
    if feat.ndim < 1 or feat.shape[0] < 1:
        raise ValueError(f"feat: expected an array (T, ...) with T >= 1 snippets, got shape {feat.shape}")
    if method == "mean":
        return _mean_segments(feat, int(n_segments))
    return _linear_segments(feat, int(n_segments))


def segment_bounds(length: int, n_segments: int) -> np.ndarray:
    """``(n_segments + 1,)`` int64 snippet bounds ``floor(linspace(0, length, n_segments + 1))``."""
    return np.floor(np.linspace(0, length, n_segments + 1)).astype(np.int64)


def _mean_segments(feat: np.ndarray, n_segments: int) -> np.ndarray:
    # C order keeps numpy's axis-0 reduction a plain running sum over snippets (as on RTFM's per-crop arrays);
    # a prefix-sum formulation would round differently.
    feat = np.ascontiguousarray(feat)
    bounds = segment_bounds(feat.shape[0], n_segments)
    out = np.empty((n_segments,) + feat.shape[1:], dtype=np.float32)
    for i in range(n_segments):
        start, stop = bounds[i], bounds[i + 1]
        out[i] = feat[start:stop].mean(axis=0) if stop > start else feat[start]
    return out


def _linear_segments(feat: np.ndarray, n_segments: int) -> np.ndarray:
    length = feat.shape[0]
    if length == n_segments:
        return feat.copy()
    # PyTorch's CPU kernel, in float32 with fused multiply-adds: scale = T / n,
    # source_i = fma(scale, i + 0.5, -0.5) clamped at 0, out_i = fma(x_left, w_left, x_right * w_right).
    # A float32 product is exact in float64, so evaluating the fused steps in float64 and rounding once to
    # float32 gives PyTorch's numbers bit for bit (FMA builds: x86 AVX2/AVX512, ARM; within 1 ulp elsewhere).
    scale = np.float32(length) / np.float32(n_segments)
    centres = np.arange(n_segments, dtype=np.float32) + np.float32(0.5)
    source = (np.float64(scale) * centres.astype(np.float64) - 0.5).astype(np.float32)
    source = np.maximum(source, np.float32(0.0))
    left = np.minimum(np.floor(source).astype(np.int64), length - 1)
    right = left + (left < length - 1)
    weight_right = np.clip(source - left.astype(np.float32), np.float32(0.0), np.float32(1.0))
    weight_left = np.float32(1.0) - weight_right
    shape = (n_segments,) + (1,) * (feat.ndim - 1)
    right_term = feat[right] * weight_right.reshape(shape)
    fused = feat[left].astype(np.float64) * weight_left.reshape(shape) + right_term
    return fused.astype(np.float32)
