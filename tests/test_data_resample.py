"""resample_segments: "mean" is RTFM's process_feat bit for bit, "linear" is F.interpolate(align_corners=False)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vad.data import resample_segments


def process_feat_per_crop(feat: np.ndarray, length: int) -> np.ndarray:
    """The RTFM rule written out as a loop over one crop's ``(T, C)`` snippets: bounds from an integer linspace,
    the mean of each non-empty range, else the single snippet at the bound."""
    out = np.zeros((length, feat.shape[1]), dtype=np.float32)
    bounds = np.linspace(0, len(feat), length + 1).astype(int)
    for i in range(length):
        if bounds[i] != bounds[i + 1]:
            out[i, :] = np.mean(feat[bounds[i]:bounds[i + 1], :], 0)
        else:
            out[i, :] = feat[bounds[i], :]
    return out


def rtfm_loader(video: np.ndarray, length: int = 32) -> np.ndarray:
    """RTFM's dataset: ``(T, N, C)`` -> per crop ``(N, T, C)`` -> ``(N, 32, C)``."""
    return np.array([process_feat_per_crop(crop, length) for crop in video.transpose(1, 0, 2)], dtype=np.float32)


@pytest.mark.parametrize("length", [1, 2, 7, 31, 32, 33, 63, 65, 100, 517, 2049])
def test_mean_equals_process_feat_bit_for_bit(length: int) -> None:
    rng = np.random.default_rng(length)
    video = (rng.standard_normal((length, 3, 24)) * 4 + 2).astype(np.float32)
    ours = resample_segments(video, 32, "mean").transpose(1, 0, 2)
    assert ours.dtype == np.float32
    assert ours.tobytes() == rtfm_loader(video).tobytes()


def test_mean_is_bit_identical_for_other_memory_orders_and_2d_input() -> None:
    rng = np.random.default_rng(5)
    video = (rng.random((3001, 2, 16)) * 100).astype(np.float32)
    expected = rtfm_loader(video).transpose(1, 0, 2)
    assert resample_segments(np.asfortranarray(video), 32, "mean").tobytes() == expected.tobytes()
    assert resample_segments(video[:, 1], 32, "mean").tobytes() == expected[:, 1].tobytes()


def test_mean_empty_ranges_repeat_the_snippet_at_the_bound() -> None:
    video = np.arange(5, dtype=np.float32)[:, None]  # T = 5 < 32: only 5 ranges are non-empty
    out = resample_segments(video, 32, "mean")[:, 0]
    bounds = np.floor(np.arange(33) * 5 / 32).astype(int)
    assert out.tolist() == [float(b) for b in bounds[:32]]


def test_mean_casts_float64_input_to_float32_first() -> None:
    video = np.random.default_rng(0).random((77, 5))
    out = resample_segments(video, 32, "mean")
    assert out.dtype == np.float32
    assert out.tobytes() == process_feat_per_crop(video.astype(np.float32), 32).tobytes()


@pytest.mark.parametrize("length", [1, 2, 5, 31, 32, 33, 100, 1000])
@pytest.mark.parametrize("n_segments", [32, 7, 200])
def test_linear_equals_torch_interpolate(length: int, n_segments: int) -> None:
    rng = np.random.default_rng(length * 1000 + n_segments)
    video = (rng.standard_normal((length, 3, 16)) * 3 + 1).astype(np.float32)
    ours = resample_segments(video, n_segments, "linear")
    theirs = F.interpolate(torch.from_numpy(video).permute(1, 2, 0), size=n_segments, mode="linear",
                           align_corners=False).permute(2, 0, 1).numpy()
    assert ours.shape == (n_segments, 3, 16) and ours.dtype == np.float32
    if torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512"):  # fused multiply-add kernels
        assert ours.tobytes() == theirs.tobytes()
    else:  # a build without FMA rounds each product separately: at most one float32 ulp apart
        np.testing.assert_array_max_ulp(ours, theirs, maxulp=1)


def test_linear_hand_computed_and_identity() -> None:
    video = np.array([0.0, 10.0], dtype=np.float32)  # T = 2 -> 4: sources -0.25 (clamped), 0.25, 0.75, 1.25
    np.testing.assert_allclose(resample_segments(video, 4, "linear"), [0.0, 2.5, 7.5, 10.0])
    same = np.random.default_rng(1).random((32, 4)).astype(np.float32)
    assert resample_segments(same, 32, "linear").tobytes() == same.tobytes()
    assert resample_segments(same, 32, "mean").tobytes() == same.tobytes()


def test_bad_arguments() -> None:
    video = np.ones((10, 4), np.float32)
    with pytest.raises(ValueError, match="method: 'nearest' is not one of mean, linear"):
        resample_segments(video, 32, "nearest")
    with pytest.raises(ValueError, match="n_segments: expected a positive integer"):
        resample_segments(video, 0)
    with pytest.raises(ValueError, match=r"T >= 1 snippets, got shape \(0, 4\)"):
        resample_segments(np.ones((0, 4), np.float32))
