"""``benchmarks/step_time.py``: the quick mode end to end (output structure, not timings), the authors'-pattern
baselines against our models (the benchmark must time the same computation), and the ``--authors-repo`` loader."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from benchmarks.authors_pattern import LOSSES, baseline_input, baseline_step  # noqa: E402
from benchmarks.authors_repo import AuthorsRepoError, load_authors_model, parse_authors_repos  # noqa: E402
from benchmarks.step_time import format_table, sparse_dictionary  # noqa: E402
from vad.models import create_loss, create_model  # noqa: E402

TINY = {
    "rtfm": {"feature_dim": 32, "n_crops": 2, "hidden_dim": 16, "head_dims": [8, 4]},
    "mgfn": {"feature_dim": 32, "n_crops": 2, "dims": [16, 32], "depths": [1, 1], "block_types": ["glance", "focus"],
             "dim_head": 8},
    "s3r": {"feature_dim": 32, "n_crops": 2, "n_atoms": 6},
}

# A stand-in for the authors' RTFM checkout (``model.py`` with ``Model(n_features, batch_size)`` returning their
# 10-tuple): built on our model, it does what their file does that the loader must survive on a CPU-only torch.
FAKE_RTFM_MODEL = '''
import torch
torch.set_default_tensor_type("torch.cuda.FloatTensor")  # as the authors' model.py; fails on CPU without the shim
from benchmarks.authors_pattern import rtfm_forward
from vad.models.rtfm import RTFM


class Model(RTFM):
    def __init__(self, n_features, batch_size):
        super().__init__(feature_dim=n_features, n_crops=10)
        self.batch_size = batch_size

    def forward(self, inputs):
        torch.ones(1).cuda()  # as their forward: must be a no-op on CPU
        sel = rtfm_forward(self, inputs, self.batch_size, 3)
        a = sel["feat_abnormal"]
        return (sel["score_abnormal"], sel["score_normal"], a, sel["feat_normal"], a, a, sel["scores"], a, a, None)
'''


def run_benchmark(*args: str, tmp_path: Path) -> tuple[str, dict]:
    out_json = tmp_path / "step_time.json"
    proc = subprocess.run(
        [sys.executable, str(REPO_ROOT / "benchmarks" / "step_time.py"), "--quick", "--device", "cpu",
         "--json", str(out_json), *args],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout, json.loads(out_json.read_text())


@pytest.fixture
def fake_rtfm_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "RTFM"
    repo.mkdir()
    (repo / "model.py").write_text(textwrap.dedent(FAKE_RTFM_MODEL))
    return repo


@pytest.mark.slow
def test_quick_run_prints_the_table_and_writes_json(tmp_path: Path, fake_rtfm_repo: Path) -> None:
    stdout, report = run_benchmark("--authors-repo", f"rtfm={fake_rtfm_repo}", tmp_path=tmp_path)
    assert "== step_time on cpu" in stdout and "torch threads" in stdout
    assert "float32 matmul peak measured in this run" in stdout
    header = next(line for line in stdout.splitlines() if line.startswith("case"))
    titles = ("implementation", "fwd+bwd s", "optim s", "CPU s", "s/video", "videos/s", "GFLOP/v", "%peak", "x step")
    for title in titles:
        assert title in header
    # the authors' RTFM hard-codes UCF shapes: on the tiny row it is reported as skipped, not silently dropped
    assert "skipped: the authors' rtfm hard-codes 2048 channels and 10 crops" in stdout
    cpu = report["devices"]["cpu"]
    assert cpu["quick"] is True and cpu["peak_flops"] > 0 and cpu["machine"]["cpu"]
    rows = [row for row in report["rows"] if not row["note"]]
    assert {(row["model"], row["impl"]) for row in rows} == {
        (model, impl) for model in ("rtfm", "mgfn", "s3r") for impl in ("ours", "authors' way")
    }
    for row in rows:
        assert row["step_s"] > 0 and row["fwd_bwd_s"] > 0 and row["cpu_s"] > 0 and row["videos_per_step"] == 4
        assert row["step_s"] == pytest.approx(row["s_per_video"] * 4)
        assert row["gflop_per_video"] > 0 and 0 < row["peak_fraction"]
        assert (row["speedup_step"] is None) == (row["impl"] == "ours")


@pytest.mark.slow
def test_bad_authors_repo_argument_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(AuthorsRepoError, match="MODEL=PATH"):
        parse_authors_repos(["mystery=/tmp"])
    with pytest.raises(AuthorsRepoError, match="is not a folder"):
        parse_authors_repos([f"rtfm={tmp_path / 'missing'}"])
    proc = subprocess.run([sys.executable, str(REPO_ROOT / "benchmarks" / "step_time.py"), "--quick",
                           "--authors-repo", "rtfm"], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "MODEL=PATH" in proc.stderr


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message given when no GPU is present")
def test_cuda_without_a_gpu_is_a_clear_error_and_all_devices_skip_it(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(REPO_ROOT / "benchmarks" / "step_time.py"), "--quick",
                           "--device", "cuda"], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "torch sees none" in proc.stderr
    stdout, report = run_benchmark("--device", "all", "--models", "rtfm", "--no-baseline", tmp_path=tmp_path)
    assert list(report["devices"]) == ["cpu"] and "CUDA: no GPU visible" in stdout


@pytest.mark.parametrize("name", ["rtfm", "mgfn", "s3r"])
@pytest.mark.parametrize("mode", ["eval", "train"])
def test_authors_way_baseline_computes_our_loss_and_gradients(name: str, mode: str) -> None:
    """Same weights and seed: the baseline's loss and gradients equal ours (so the benchmark times one maths)."""
    torch.manual_seed(0)
    model = create_model(name, **TINY[name])
    if name == "s3r":
        model.set_dictionary(sparse_dictionary(6, 32))
    with torch.no_grad():  # away from MGFN's init, where near-tied magnitudes make top-k a coin toss
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    criterion = create_loss(name)
    base = copy.deepcopy(model)
    b = 2
    x = torch.relu(torch.randn(2 * b, 2, 8, 32))
    labels = torch.tensor([0] * b + [1] * b)
    model.train(mode == "train")
    base.train(mode == "train")
    torch.manual_seed(5)
    loss, _ = criterion(model(x), labels)
    loss.backward()
    torch.manual_seed(5)
    base_loss = baseline_step(base, criterion, baseline_input(base, x), b)
    base_loss.backward()
    torch.testing.assert_close(base_loss, loss, rtol=1e-5, atol=1e-6)
    for (key, p), q in zip(model.named_parameters(), base.parameters()):
        assert (p.grad is None) == (q.grad is None), key
        if p.grad is not None:
            torch.testing.assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-5, msg=key)


def test_authors_repo_loader_runs_their_class_with_our_weights(fake_rtfm_repo: Path) -> None:
    torch.manual_seed(1)
    ours = create_model("rtfm").eval()  # the authors' RTFM runs only at UCF shapes (2048 channels, 10 crops)
    criterion = create_loss("rtfm")
    original_cuda = torch.Tensor.cuda
    theirs = load_authors_model("rtfm", fake_rtfm_repo, ours, batch_size=1, n_segments=4, device=torch.device("cpu"))
    assert theirs.module is not ours and type(theirs.module).__name__ == "Model"
    assert torch.get_default_dtype() == torch.float32 and torch.zeros(1).device.type == "cpu"  # nothing leaked
    theirs.module.eval()
    x = torch.relu(torch.randn(2, 10, 4, 2048))
    with torch.no_grad():
        expected, _ = criterion(ours(x), torch.tensor([0, 1]))
        got = LOSSES["rtfm"](theirs.forward(x), criterion, 1)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert torch.Tensor.cuda is original_cuda and "model" not in sys.modules  # shims undone, their module not kept


def test_format_table_marks_missing_speedups() -> None:
    from benchmarks.step_time import Row

    row = Row("cpu", "rtfm ucf", "rtfm", "ours", 8, 64, 1.0, 0.1, 1.1, 2.0, 1.2, 0.1375, 7.3, 40.0, 0.3, 0.5)
    lines = format_table([row]).splitlines()
    assert lines[0].startswith("case") and lines[2].startswith("rtfm ucf") and lines[2].rstrip().endswith("-")
