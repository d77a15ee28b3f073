"""``snippet_scores`` copies every pass's input into one reused buffer: the scores must still equal a fresh
forward of each video on its own, whatever its dtype and strides, and no pass may overwrite an earlier one."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vad.engine import batch_input, snippet_scores
from vad.models import create_model

LENGTHS = (9, 4, 9, 15, 4, 9, 6)


def _cache(seed: int = 0, crops: int = 3, dim: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """The test-cache layout: ``(sum T, N, C)`` float32 and ``(V+1,)`` offsets."""
    rng = np.random.default_rng(seed)
    offsets = np.r_[0, np.cumsum(LENGTHS)]
    return rng.standard_normal((offsets[-1], crops, dim), dtype=np.float32), offsets


def _views(features: np.ndarray, offsets: np.ndarray) -> list[np.ndarray]:
    """``(N, T_i, C)`` transposed views, as ``TestFeatures.video`` gives them."""
    return [features[a:b].transpose(1, 0, 2) for a, b in zip(offsets[:-1], offsets[1:])]


def test_batch_input_copies_views_and_casts() -> None:
    features, offsets = _cache()
    videos = _views(features, offsets)
    buffer = np.full(3 * 9 * 3 * 16, np.nan, np.float32)
    x = batch_input(buffer, [videos[0], videos[2].astype(np.float64), videos[5]])
    assert x.shape == (3, 3, 9, 16) and x.dtype == np.float32 and x.flags.c_contiguous
    assert np.shares_memory(x, buffer)
    np.testing.assert_array_equal(x[1], videos[2])
    np.testing.assert_array_equal(x[2], videos[5])
    with pytest.raises(ValueError, match="share their shape"):
        batch_input(buffer, [videos[0], videos[1]])


@pytest.mark.parametrize("max_snippets", [0, 18, 4096])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_scores_equal_a_fresh_forward_per_video(max_snippets: int, dtype: type) -> None:
    torch.manual_seed(0)
    model = create_model("mil", feature_dim=16, n_crops=3).eval()
    features, offsets = _cache()
    videos = _views(features.astype(dtype), offsets)
    scores = snippet_scores(model, videos, device=torch.device("cpu"), max_snippets=max_snippets)
    with torch.no_grad():
        expected = [model(torch.tensor(np.asarray(v, np.float32))[None]).scores[0].numpy() for v in videos]
    assert [s.shape for s in scores] == [(t,) for t in LENGTHS]
    for got, want in zip(scores, expected):
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    # each its own array: not a view into a pass's output (which keeps the whole batch alive) or the buffer
    assert all(s.flags.owndata for s in scores)
    assert not np.allclose(scores[0], scores[2])  # equal lengths, different videos: rows were not mixed up


@pytest.mark.slow
def test_test_pass_benchmark_can_skip_the_one_video_pass(tmp_path) -> None:
    from benchmarks import test_pass

    results = tmp_path / "RESULTS.md"
    code = test_pass.main(["--models", "mil", "--feature-dim", "16", "--crops", "1", "--videos", "6", "--repeats", "1",
                           "--n-boot", "0", "--no-single", "--results", str(results)])
    row = next(line for line in results.read_text().splitlines() if line.startswith("| mil |"))
    assert code == 0
    assert row.split(" | ")[5] == "not run"  # the one-video-per-pass column
