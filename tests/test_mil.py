"""MIL ranking baseline (Sultani et al., CVPR 2018): the MLP's shapes and layers, the loss against a hand
computation, the label-based split, training through ``vad.train`` and the smoke test of its spaces."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from vad.config import TrainConfig
from vad.metrics.catalogue import frame_metric_names
from vad.models import create_loss, create_model
from vad.models.output import ModelOutput
from vad.training import train

REPO = Path(__file__).resolve().parents[1]


def scores_output(scores: list[list[float]]) -> ModelOutput:
    s = torch.tensor(scores, dtype=torch.float32)
    return ModelOutput(scores=s, magnitudes=s, features=s[:, None, :, None])


def test_ucf_shaped_model_shapes_and_parameter_count():
    model = create_model("mil", feature_dim=2048, n_crops=10).eval()
    out = model(torch.rand(3, 10, 32, 2048))
    assert out.scores.shape == (3, 32) and out.magnitudes.shape == (3, 32) and out.features.shape == (3, 10, 32, 32)
    assert ((out.scores > 0) & (out.scores < 1)).all()
    assert sum(p.numel() for p in model.parameters()) == 2048 * 512 + 512 + 512 * 32 + 32 + 32 + 1
    assert [tuple(v.shape) for v in model.state_dict().values()] == [(512, 2048), (512,), (32, 512), (32,), (1, 32),
                                                                     (1,)]


def test_forward_is_the_authors_mlp_per_crop_averaged_over_crops():
    torch.manual_seed(0)
    model = create_model("mil", feature_dim=8, n_crops=3, hidden_dims=[6, 4]).eval()
    x = torch.randn(2, 3, 5, 8)
    w = [(layer.weight, layer.bias) for layer in model.layers]
    hidden = torch.relu(x @ w[0][0].T + w[0][1]) @ w[1][0].T + w[1][1]  # the 2nd hidden layer is linear
    expected = torch.sigmoid(hidden @ w[2][0].T + w[2][1]).squeeze(-1).mean(dim=1)
    out = model(x)
    torch.testing.assert_close(out.scores, expected)
    torch.testing.assert_close(out.features, hidden)
    assert (hidden < 0).any()  # so the check above would see a ReLU that is not the authors'
    relu_all = create_model("mil", feature_dim=8, n_crops=3, hidden_dims=[6, 4], relu_all=True)
    relu_all.load_state_dict(model.state_dict())
    assert (relu_all.eval()(x).features >= 0).all()


def test_dropout_only_in_training():
    model = create_model("mil", feature_dim=16, n_crops=1, dropout=0.6)
    x = torch.rand(2, 1, 4, 16)
    assert not torch.equal(model.train()(x).scores, model.train()(x).scores)
    assert torch.equal(model.eval()(x).scores, model.eval()(x).scores)


def test_loss_matches_a_hand_computation():
    normal = [[0.1, 0.3, 0.2], [0.6, 0.0, 0.1]]
    abnormal = [[0.9, 0.2, 0.4], [0.5, 0.5, 0.8]]
    criterion = create_loss("mil", margin=1.0, smoothness_weight=0.1, sparsity_weight=0.01)
    loss, terms = criterion(scores_output(normal + abnormal), torch.tensor([0, 0, 1, 1]))
    # normal maxima 0.3, 0.6; abnormal maxima 0.9, 0.8
    ranking = ((1 - 0.9 + 0.3) + (1 - 0.8 + 0.3) + (1 - 0.9 + 0.6) + (1 - 0.8 + 0.6)) / 2
    smoothness = 0.1 * ((0.9 - 0.2) ** 2 + (0.2 - 0.4) ** 2 + 0.0 ** 2 + (0.5 - 0.8) ** 2)
    sparsity = 0.01 * (0.9 + 0.2 + 0.4 + 0.5 + 0.5 + 0.8)
    assert terms["ranking"].item() == pytest.approx(ranking)
    assert terms["smoothness"].item() == pytest.approx(smoothness)
    assert terms["sparsity"].item() == pytest.approx(sparsity)
    assert loss.item() == pytest.approx(ranking + smoothness + sparsity)
    # only the pairs where the abnormal maximum does not beat the normal one by the margin count
    _, terms = create_loss("mil", margin=0.35)(scores_output(normal + abnormal), torch.tensor([0, 0, 1, 1]))
    assert terms["ranking"].item() == pytest.approx(((0.35 - 0.9 + 0.6) + (0.35 - 0.8 + 0.6)) / 2)
    _, terms = create_loss("mil", margin=0.2)(scores_output(normal + abnormal), torch.tensor([0, 0, 1, 1]))
    assert terms["ranking"].item() == 0.0


def test_defaults_are_the_papers():
    criterion = create_loss("mil")
    assert (criterion.margin, criterion.smoothness_weight, criterion.sparsity_weight) == (1.0, 8e-5, 8e-5)
    model = create_model("mil")
    assert (model.feature_dim, model.dropout, [layer.out_features for layer in model.layers]) == (4096, 0.6,
                                                                                                  [512, 32, 1])


def test_split_comes_from_the_labels_not_the_positions():
    rows = [[0.1, 0.3, 0.2], [0.9, 0.2, 0.4], [0.6, 0.0, 0.1], [0.5, 0.5, 0.8], [0.2, 0.2, 0.2]]
    labels = torch.tensor([0, 1, 0, 1, 0])  # interleaved, 3 normal and 2 abnormal: all pairs are ranked
    criterion = create_loss("mil")
    loss, terms = criterion(scores_output(rows), labels)
    order = [1, 3, 0, 2, 4]
    again, _ = criterion(scores_output([rows[i] for i in order]), labels[order])
    assert loss.item() == pytest.approx(again.item())
    assert terms["ranking"].item() == pytest.approx(sum(max(0.0, 1 - a + n) for n in (0.3, 0.6, 0.2)
                                                        for a in (0.9, 0.8)) / 3)
    with pytest.raises(ValueError, match="both normal and abnormal"):
        criterion(scores_output(rows[:1]), labels[:1])


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="dropout"):
        create_model("mil", dropout=1.0)
    with pytest.raises(ValueError, match="hidden_dims"):
        create_model("mil", hidden_dims=[])
    with pytest.raises(ValueError, match="margin"):
        create_loss("mil", margin=-1.0)
    with pytest.raises(ValueError, match="C=2048"):
        create_model("mil", feature_dim=2048, n_crops=10)(torch.rand(1, 10, 4, 1024))


def test_configs_load_with_the_papers_settings():
    for name, width, crops in (("mil_ucf", 2048, 10), ("mil_xd", 1024, 5)):
        config = TrainConfig.from_yaml(REPO / "configs" / f"{name}.yaml")
        assert config.model_name == "mil" and config.resample_method == "mean"
        assert (config.model["feature_dim"], config.model["n_crops"]) == (width, crops)
        assert config.train.batch_per_class == 30 and config.data.n_segments == 32


def test_trains_at_ucf_width_through_vad_train(tmp_path):
    config = TrainConfig.from_dict({
        "data": {"dataset": "synthetic:ucf-shaped"},
        "model": {"name": "mil"},
        "train": {"epochs": 2, "batch_per_class": 4, "steps_per_epoch": 3, "seed": 1, "num_threads": 1},
    })
    result = train(config, report=lambda metrics, out: None, out_dir=tmp_path)
    assert result.status == "completed" and len(result.epochs) == 2
    assert (result.config["model"]["feature_dim"], result.config["model"]["n_crops"]) == (2048, 10)
    for epoch in result.epochs:
        assert all(torch.isfinite(torch.tensor(float(epoch[k]))) for k in ("train_loss", "val_loss", "val_video_auc"))
    assert 0.0 <= result.test["auc"] <= 1.0 and set(frame_metric_names()) <= set(result.test)
    assert (tmp_path / "best.pt").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("space", ["mil_ucf", "mil_xd"])
def test_space_smoke_test(tmp_path, space):
    run = subprocess.run([sys.executable, "-m", "search.run", "--space", f"spaces/{space}.yaml", "--smoke-test",
                          "--storage", str(tmp_path / "ray"), "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db"],
                         cwd=REPO, capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
