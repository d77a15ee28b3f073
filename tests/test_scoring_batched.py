"""Batched test scoring (videos of equal length share a forward pass) equals one video per pass, for every model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vad.engine import equal_length_batches, snippet_scores
from vad.models import create_model

SMALL = {
    "rtfm": {"hidden_dim": 32, "head_dims": (16, 8)},
    "mgfn": {"dims": (16, 32), "depths": (1, 1), "block_types": ("glance", "focus"), "dim_head": 8},
    "s3r": {"n_atoms": 8},
    "mil": {},
}
LENGTHS = (12, 7, 12, 30, 7, 12, 5, 30, 12, 9)


def _model(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    model = create_model(name, feature_dim=64, n_crops=3, **SMALL[name])
    if hasattr(model, "set_dictionary"):
        model.set_dictionary(torch.randn(model.n_atoms, 64))
    for module in model.modules():  # non-trivial running statistics, so eval-mode BatchNorm does real work
        if isinstance(module, torch.nn.BatchNorm1d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    return model.eval()


def _videos(seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((3, t, 64), dtype=np.float32) for t in LENGTHS]


def test_equal_length_batches_groups_and_caps() -> None:
    batches = equal_length_batches(LENGTHS, max_snippets=24)
    assert sorted(i for batch in batches for i in batch) == list(range(len(LENGTHS)))
    for batch in batches:
        assert len({LENGTHS[i] for i in batch}) == 1
        assert len(batch) <= max(1, 24 // LENGTHS[batch[0]])
    assert [0, 2] in batches and [5, 8] in batches and [1, 4] in batches and [3] in batches
    assert equal_length_batches(LENGTHS, max_snippets=1) == [[0], [2], [5], [8], [1], [4], [3], [7], [6], [9]]


@pytest.mark.parametrize("name", sorted(SMALL))
def test_batched_scores_equal_per_video_scores(name: str) -> None:
    model, videos = _model(name), _videos()
    single = snippet_scores(model, videos, device=torch.device("cpu"), max_snippets=0)
    batched = snippet_scores(model, videos, device=torch.device("cpu"), max_snippets=4096)
    assert [s.shape for s in batched] == [(t,) for t in LENGTHS]
    for one, many in zip(single, batched):
        np.testing.assert_allclose(many, one, rtol=1e-5, atol=1e-6)
    # the scores depend on the video: a batch that mixed up its rows would fail here
    assert not np.allclose(batched[0], batched[2])


def test_batched_scores_keep_input_order_and_dtype() -> None:
    model, videos = _model("rtfm"), _videos(1)
    reversed_scores = snippet_scores(model, videos[::-1], device=torch.device("cpu"))
    forward_scores = snippet_scores(model, videos, device=torch.device("cpu"))
    for a, b in zip(forward_scores, reversed_scores[::-1]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
        assert a.dtype == np.float32


@pytest.mark.slow
def test_test_pass_benchmark_writes_its_section(tmp_path) -> None:
    from benchmarks import test_pass

    results = tmp_path / "RESULTS.md"
    results.write_text("# Benchmark results\n\n## other\n\nkept\n")
    code = test_pass.main(["--models", "rtfm,mil", "--feature-dim", "16", "--crops", "1", "--videos", "6",
                           "--repeats", "1", "--n-boot", "3", "--results", str(results)])
    text = results.read_text()
    assert code == 0
    assert "## other\n\nkept" in text and "## test_pass" in text
    assert "| rtfm |" in text and "| mil |" in text and "3 resamples" in text


@pytest.mark.slow
def test_step_time_profile_prints_the_top_ops(capsys) -> None:
    from benchmarks import step_time

    report = step_time.main(["--quick", "--profile", "--models", "rtfm", "--device", "cpu", "--profile-rows", "5"])
    tables = report["profiles"]["cpu rtfm tiny"]["tables"]
    out = capsys.readouterr().out
    assert set(tables) == {"ours", "authors' way"}
    for table in tables.values():
        assert "Self CPU" in table and "aten::" in table
        assert table in out
