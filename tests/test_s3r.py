"""S3R: model shapes, key layout and strict loading, parameter counts, dictionary buffer, loss formulas, top-k and the
offline dictionary learning (determinism, cache, equality with scikit-learn's own fit)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.decomposition import MiniBatchDictionaryLearning

from vad.models import ModelOutput, create_loss, create_model, load_original_weights
from vad.models.s3r import dictionary as dictionary_module
from vad.models.s3r.dictionary import (
    dictionary_cache_path,
    fit_dictionary,
    learn_dictionary,
    normal_video_vectors,
)

pytestmark = pytest.mark.filterwarnings("ignore:Orthogonal matching pursuit ended prematurely")

C, N, T, S = 64, 2, 8, 6  # small widths for behaviour tests (GroupNorm(8) needs C/4 to be a multiple of 8)


def authors_layout(c: int, projections: bool = True) -> dict[str, tuple[int, ...]]:
    """The authors' state_dict keys and shapes at width ``c`` (from their detector.py / modules), written out."""
    h, inner, g = c // 4, c // 8, c // 16
    keys: dict[str, tuple[int, ...]] = {}
    for branch in ("video_embedding.0", "macro_embedding.0"):
        for i in (1, 2, 3):
            keys |= {f"{branch}.conv_{i}.0.weight": (h, c, 3), f"{branch}.conv_{i}.0.bias": (h,),
                     f"{branch}.conv_{i}.1.weight": (h,), f"{branch}.conv_{i}.1.bias": (h,)}
        keys[f"{branch}.conv_4.0.weight"] = (h, c, 1)
        keys |= {f"{branch}.conv_5.0.weight": (c, c, 3), f"{branch}.conv_5.1.weight": (c,),
                 f"{branch}.conv_5.1.bias": (c,)}
        for name in ("value", "query", "key"):
            keys |= {f"{branch}.non_local.{name}.weight": (inner, h, 1), f"{branch}.non_local.{name}.bias": (inner,)}
        keys |= {f"{branch}.non_local.alter.0.weight": (h, inner, 1), f"{branch}.non_local.alter.0.bias": (h,)}
        for name in ("weight", "bias", "running_mean", "running_var"):
            keys[f"{branch}.non_local.alter.1.{name}"] = (h,)
        keys[f"{branch}.non_local.alter.1.num_batches_tracked"] = ()
    for name, out in (("query_embedding", h), ("cache_embedding", h), ("value_embedding", c)):
        prefix = f"en_normal.en_normal_module.{name}"
        keys |= {f"{prefix}.weight": (out, c), f"{prefix}.bias": (out,)}
    gate = "de_normal.channel_attention.channel_gate.mlp"
    keys |= {f"{gate}.1.weight": (g, c), f"{gate}.1.bias": (g,), f"{gate}.3.weight": (c, g), f"{gate}.3.bias": (c,)}
    if projections:
        for p in ("video_projection", "macro_projection"):
            keys |= {f"{p}.0.weight": (c, c, 3), f"{p}.0.bias": (c,), f"{p}.1.weight": (c,), f"{p}.1.bias": (c,)}
    for head in ("video_classifier", "macro_classifier.mlp"):
        keys |= {f"{head}.0.weight": (h, c), f"{head}.0.bias": (h,), f"{head}.3.weight": (g, h), f"{head}.3.bias": (g,),
                 f"{head}.6.weight": (1, g), f"{head}.6.bias": (1,)}
    return keys


def authors_state_dict(c: int, seed: int = 0, projections: bool = True) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in authors_layout(c, projections).items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(3)
        elif key.endswith("running_var"):
            state[key] = 0.5 + torch.rand(shape, generator=gen)
        else:
            state[key] = 0.1 * torch.randn(shape, generator=gen)
    return state


def small_model(**overrides: object) -> torch.nn.Module:
    torch.manual_seed(0)
    model = create_model("s3r", feature_dim=C, n_crops=N, n_atoms=S, **overrides)
    model.set_dictionary(torch.randn(S, C, generator=torch.Generator().manual_seed(1)))
    return model


def batch(b: int = 4, seed: int = 2) -> torch.Tensor:
    return torch.randn(b, N, T, C, generator=torch.Generator().manual_seed(seed))


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.fixture(scope="module")
def ucf_model() -> torch.nn.Module:
    return create_model("s3r")


# --------------------------------------------------------------------------- counts and key layout


def test_parameter_counts_with_and_without_the_unused_projections(ucf_model: torch.nn.Module) -> None:
    assert n_params(ucf_model) == 81_436_802
    assert n_params(create_model("s3r", keep_unused_projections=False)) == 56_258_690
    assert n_params(create_model("s3r", feature_dim=1024, n_crops=5)) == 20_369_474
    assert n_params(create_model("s3r", feature_dim=1024, n_crops=5, keep_unused_projections=False)) == 14_071_874


def test_state_dict_is_the_authors_layout_plus_our_dictionary(ucf_model: torch.nn.Module) -> None:
    ours = {k: tuple(v.shape) for k, v in ucf_model.state_dict().items()}
    assert ours.pop("dictionary") == (400, 2048)
    assert ours == authors_layout(2048)
    assert len(ours) == 88
    slim = create_model("s3r", feature_dim=C, n_crops=N, n_atoms=S, keep_unused_projections=False)
    assert {k: tuple(v.shape) for k, v in slim.state_dict().items() if k != "dictionary"} == authors_layout(
        C, projections=False
    )


def test_initialisation_is_the_authors() -> None:
    model = create_model("s3r", feature_dim=C, n_crops=N, n_atoms=S)
    for name, p in model.named_parameters():
        if name.endswith("bias") and ".1." not in name:  # conv/linear biases (norm-layer biases also start at 0)
            assert torch.count_nonzero(p) == 0, name
    for branch in (model.video_embedding[0], model.macro_embedding[0]):
        assert torch.count_nonzero(branch.non_local.alter[1].weight) == 0  # the non-local block starts as identity
        assert torch.equal(branch.conv_1[1].weight, torch.ones(C // 4))  # GroupNorm untouched by the Xavier init
    torch.manual_seed(5)
    a = create_model("s3r", feature_dim=C, n_crops=N, n_atoms=S).state_dict()
    torch.manual_seed(5)
    b = create_model("s3r", feature_dim=C, n_crops=N, n_atoms=S).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


# --------------------------------------------------------------------------- loading


def test_loads_the_authors_checkpoint_with_module_prefix_and_dictionary() -> None:
    state = authors_state_dict(C)
    model = create_model("s3r", feature_dim=C, n_crops=N, n_atoms=S)
    atoms = torch.randn(S, C)
    report = load_original_weights(model, {f"module.{k}": v for k, v in state.items()}, dictionary=atoms)
    assert report.dropped_unused == [] and len(report.loaded) == 88
    loaded = model.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state.items())
    assert torch.equal(loaded["dictionary"], atoms)
    assert model.has_dictionary
    out = model.eval()(batch())
    assert torch.isfinite(out.scores).all()


def test_loading_without_a_dictionary_leaves_the_model_unusable_until_one_is_set() -> None:
    model = create_model("s3r", feature_dim=C, n_crops=N, n_atoms=S)
    load_original_weights(model, authors_state_dict(C))
    with pytest.raises(RuntimeError, match="no dictionary"):
        model(batch())
    model.set_dictionary(np.random.default_rng(0).normal(size=(S, C)).astype(np.float32))
    assert model(batch()).scores.shape == (4, T)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda sd: sd.update({"extra.weight": torch.zeros(1)}), "unexpected 1 key"),
        (lambda sd: sd.pop("video_classifier.6.bias"), "missing 1 key"),
        (lambda sd: sd.update({"video_classifier.6.weight": torch.zeros(2, C // 16)}), "video_classifier.6.weight"),
    ],
)
def test_strict_loading_names_what_does_not_fit(edit, message: str) -> None:
    state = authors_state_dict(C)
    edit(state)
    with pytest.raises(ValueError, match=message):
        load_original_weights(create_model("s3r", feature_dim=C, n_crops=N, n_atoms=S), state)


def test_checkpoint_of_another_width_or_model_is_refused() -> None:
    model = create_model("s3r", feature_dim=C, n_crops=N, n_atoms=S)
    with pytest.raises(ValueError, match=r"feature_dim=64.*checkpoint shape"):
        load_original_weights(model, authors_state_dict(2 * C))
    rtfm = create_model("rtfm", feature_dim=C, n_crops=N).state_dict()
    with pytest.raises(ValueError, match="do not fit 's3r'"):
        load_original_weights(model, rtfm)
    with pytest.raises(ValueError, match=r"dictionary.*\(6, 64\)"):
        load_original_weights(model, authors_state_dict(C), dictionary=torch.randn(S + 1, C))


def test_slim_model_loads_the_authors_full_checkpoint_dropping_only_the_unused_projections() -> None:
    slim = create_model("s3r", feature_dim=C, n_crops=N, n_atoms=S, keep_unused_projections=False)
    load_original_weights(slim, authors_state_dict(C, projections=False), dictionary=torch.randn(S, C))
    report = load_original_weights(slim, authors_state_dict(C), dictionary=torch.randn(S, C))
    assert report.dropped_unused and all(k.startswith(("video_projection.", "macro_projection."))
                                         for k in report.dropped_unused)
    # the default model holds the projections, so for it they are loaded, never dropped
    full = create_model("s3r", feature_dim=C, n_crops=N, n_atoms=S)
    assert load_original_weights(full, authors_state_dict(C), dictionary=torch.randn(S, C)).dropped_unused == []
    # any other foreign key is still an error
    with pytest.raises(ValueError, match="unexpected"):
        load_original_weights(slim, {**authors_state_dict(C), "extra.weight": torch.zeros(1)})


def test_state_dict_round_trip_keeps_weights_and_dictionary() -> None:
    model = small_model().eval()
    clone = create_model("s3r", feature_dim=C, n_crops=N, n_atoms=S).eval()
    clone.load_state_dict(model.state_dict())
    assert clone.has_dictionary
    x = batch()
    a, b = model(x), clone(x)
    assert torch.equal(a.scores, b.scores) and torch.equal(a.extras["macro_scores"], b.extras["macro_scores"])


def test_the_unused_projections_do_not_change_the_outputs() -> None:
    full = small_model().eval()
    slim = create_model("s3r", feature_dim=C, n_crops=N, n_atoms=S, keep_unused_projections=False).eval()
    slim.load_state_dict({k: v for k, v in full.state_dict().items() if "projection" not in k})
    x = batch()
    assert torch.equal(full(x).scores, slim(x).scores)


# --------------------------------------------------------------------------- forward


def test_forward_shapes_ranges_and_dropout_flag() -> None:
    model = small_model()
    out = model.train()(batch(6))
    assert out.scores.shape == (6, T) and out.magnitudes.shape == (6, T)
    assert out.features.shape == (6, N, T, C) and out.extras["macro_scores"].shape == (6,)
    assert out.topk_dropout == 0.7
    for tensor in (out.scores, out.extras["macro_scores"]):
        assert torch.isfinite(tensor).all() and ((tensor >= 0) & (tensor <= 1)).all()
    assert torch.allclose(out.magnitudes, out.features.norm(dim=-1).mean(dim=1))
    assert model.eval()(batch(1)).topk_dropout == 0.0


def test_eval_forward_is_deterministic_and_per_video() -> None:
    model = small_model().eval()
    x = batch(3)
    together = model(x)
    alone = model(x[1:2])
    assert torch.allclose(together.scores[1], alone.scores[0], atol=1e-6)
    assert torch.allclose(together.extras["macro_scores"][1], alone.extras["macro_scores"][0], atol=1e-6)


def test_projecting_the_atoms_once_gives_the_same_outputs() -> None:
    exact, once = small_model().eval(), small_model(project_atoms_once=True).eval()
    once.load_state_dict(exact.state_dict())
    x = batch()
    a, b = exact(x), once(x)
    assert torch.allclose(a.scores, b.scores, atol=1e-5) and torch.allclose(a.magnitudes, b.magnitudes, rtol=1e-5)


@pytest.mark.parametrize(
    "shape, message",
    [((4, N, T), r"\(B, N, T, C\), got 3 dims"), ((4, N, T, C + 8), "feature_dim=64"), ((4, N + 1, T, C), "n_crops=2")],
)
def test_bad_input_shapes_are_refused(shape: tuple[int, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        small_model()(torch.randn(*shape))


def test_set_dictionary_validates() -> None:
    model = create_model("s3r", feature_dim=C, n_crops=N, n_atoms=S)
    with pytest.raises(ValueError, match=r"\(6, 64\)"):
        model.set_dictionary(torch.randn(S, C + 1))
    bad = torch.randn(S, C)
    bad[2, 3] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        model.set_dictionary(bad)
    with pytest.raises(ValueError, match="zero"):
        model.set_dictionary(torch.zeros(S, C))
    with pytest.raises(RuntimeError, match="no dictionary"):
        model(batch())


def test_constructor_options() -> None:
    model = create_model("s3r", feature_dim=C, n_crops=N, n_atoms=S, dilations=[1, 3])  # YAML gives lists
    assert model.dilations == (1, 3)
    keys = model.state_dict()
    assert "video_embedding.0.conv_2.0.weight" in keys and "video_embedding.0.conv_5.0.weight" not in keys
    assert keys["video_embedding.0.conv_2.0.weight"].shape == (C // 4, C, 3)
    assert model.video_embedding[0].conv_2[0].dilation == (3,)
    assert keys["video_embedding.0.conv_3.0.weight"].shape == (C // 4, C, 1)  # the non-local branch's 1x1 conv
    assert keys["macro_embedding.0.conv_4.0.weight"].shape == (C, 3 * (C // 4), 3)  # the fusing conv
    model.set_dictionary(torch.randn(S, C))
    assert model(batch()).scores.shape == (4, T)
    wide = create_model("s3r", feature_dim=C, n_crops=N, n_atoms=S, hidden_dim=32, attention_dim=8, gate_dim=2)
    assert wide.state_dict()["video_embedding.0.conv_1.0.weight"].shape == (32, C, 3)
    assert wide.state_dict()["en_normal.en_normal_module.query_embedding.weight"].shape == (8, C)
    with pytest.raises(ValueError, match="multiple of 8"):
        create_model("s3r", feature_dim=C, n_crops=N, hidden_dim=12)
    with pytest.raises(ValueError, match="dropout"):
        create_model("s3r", feature_dim=C, n_crops=N, dropout=1.0)


# --------------------------------------------------------------------------- loss


def hand_output(scores: torch.Tensor, magnitudes: torch.Tensor, features: torch.Tensor, macro: torch.Tensor,
                dropout: float = 0.0) -> ModelOutput:
    return ModelOutput(scores=scores, magnitudes=magnitudes, features=features, topk_dropout=dropout,
                       extras={"macro_scores": macro})


def test_loss_on_a_hand_checkable_batch() -> None:
    # 1 normal + 1 abnormal video, 1 crop, T = 4, k = 1, features of width 1 equal to the magnitudes.
    scores = torch.tensor([[0.1, 0.2, 0.3, 0.4], [0.5, 0.9, 0.5, 0.5]])
    magnitudes = torch.tensor([[1.0, 3.0, 2.0, 0.0], [0.0, 60.0, 1.0, 2.0]])
    out = hand_output(scores, magnitudes, magnitudes[:, None, :, None], torch.tensor([0.5, 0.5]))
    loss, terms = create_loss("s3r", k=1)(out, torch.tensor([0, 1]))
    expected = {
        "classification": -(math.log(1 - 0.2) + math.log(0.9)) / 2,  # top-1: snippet 1 of each video
        "magnitude": 1e-4 * (abs(100 - 60) + 3) ** 2,
        "sparsity": 8e-3 * math.sqrt(0.5**2 * 3 + 0.9**2),
        "smoothness": 8e-4 * (0.4**2 + 0.4**2),
        "macro": math.log(2.0),  # BCE(0.5, 0) for every video
    }
    assert set(terms) == set(expected)
    for name, value in expected.items():
        assert terms[name].item() == pytest.approx(value, rel=1e-6), name
    assert loss.item() == pytest.approx(sum(expected.values()), rel=1e-6)


def formula_loss(out: ModelOutput, labels: torch.Tensor, k: int, per_video: bool = False,
                 weights: tuple[float, float, float, float] = (1e-4, 8e-3, 8e-4, 1.0)) -> dict[str, float]:
    """Direct transcription of S3R's objective (eval-mode selection), independent of the implementation."""
    mag_w, sparse_w, smooth_w, macro_w = weights
    normal = [i for i in range(len(labels)) if labels[i] == 0]
    abnormal = [i for i in range(len(labels)) if labels[i] == 1]
    bce, mags = [], []
    chosen = {}
    for i in normal + abnormal:
        idx = sorted(range(out.magnitudes.shape[1]), key=lambda t: -out.magnitudes[i, t].item())[:k]
        chosen[i] = idx
        p = sum(out.scores[i, t].item() for t in idx) / k
        y = 1.0 if i in abnormal else 0.0
        bce.append(-(y * math.log(p) + (1 - y) * math.log(1 - p)))
    for a, n in zip(abnormal, normal):
        for crop in range(out.features.shape[1]):
            fa = out.features[a, crop, chosen[a]].mean(dim=0).norm().item()
            fn = out.features[n, crop, chosen[n]].mean(dim=0).norm().item()
            mags.append((abs(100.0 - fa) + fn) ** 2)
    flat = [out.scores[i, t].item() for i in abnormal for t in range(out.scores.shape[1])]
    if per_video:
        width = out.scores.shape[1]
        smooth = sum((flat[j + 1] - flat[j]) ** 2 for j in range(len(flat) - 1) if (j + 1) % width)
    else:
        smooth = sum((flat[j + 1] - flat[j]) ** 2 for j in range(len(flat) - 1))
    macro = [-math.log(1 - m.item()) for m in out.extras["macro_scores"]]
    return {
        "classification": sum(bce) / len(bce),
        "magnitude": mag_w * sum(mags) / len(mags),
        "sparsity": sparse_w * math.sqrt(sum(s * s for s in flat)),
        "smoothness": smooth_w * smooth,
        "macro": macro_w * sum(macro) / len(macro),
    }


@pytest.mark.parametrize("smoothness", ["flat", "per_video"])
def test_loss_matches_a_direct_transcription_of_the_formula(smoothness: str) -> None:
    model = small_model().eval()
    labels = torch.tensor([1, 0, 0, 1, 1, 0])  # order must not matter
    out = model(batch(6))
    criterion = create_loss("s3r", smoothness=smoothness, magnitude_weight=2e-4, macro_weight=0.5)
    loss, terms = criterion(out, labels)
    expected = formula_loss(out, labels, k=3, per_video=smoothness == "per_video", weights=(2e-4, 8e-3, 8e-4, 0.5))
    for name, value in expected.items():
        assert terms[name].item() == pytest.approx(value, rel=1e-4, abs=1e-7), name
    assert loss.item() == pytest.approx(sum(t.item() for t in terms.values()), rel=1e-6)


def test_topk_picks_the_largest_magnitudes_and_draws_masks_abnormal_first() -> None:
    scores = torch.rand(4, 6, generator=torch.Generator().manual_seed(0))
    magnitudes = torch.tensor([[0, 5, 1, 4, 3, 2], [9, 0, 8, 1, 7, 2], [1, 2, 3, 4, 5, 6], [6, 5, 4, 3, 2, 1.0]])
    out = hand_output(scores, magnitudes, torch.randn(4, 1, 6, 2), torch.full((4,), 0.3))
    criterion = create_loss("s3r")
    normal, abnormal = criterion.select(out, torch.tensor([0, 1, 0, 1]))
    assert normal.idx.sort(dim=1).values.tolist() == [[1, 3, 4], [3, 4, 5]]
    assert abnormal.idx.sort(dim=1).values.tolist() == [[0, 2, 4], [0, 1, 2]]
    assert torch.allclose(abnormal.video_scores, scores[[1, 3]].gather(1, abnormal.idx).mean(dim=1))
    # Training: the masks are dropout(ones) drawn for the abnormal videos first, then the normal ones.
    train_out = hand_output(scores, magnitudes, out.features, out.extras["macro_scores"], dropout=0.7)
    torch.manual_seed(11)
    mask_abnormal = F.dropout(torch.ones(2, 6), p=0.7)
    mask_normal = F.dropout(torch.ones(2, 6), p=0.7)
    torch.manual_seed(11)
    normal, abnormal = criterion.select(train_out, torch.tensor([0, 1, 0, 1]))
    assert torch.equal(abnormal.idx, torch.topk(magnitudes[[1, 3]] * mask_abnormal, 3).indices)
    assert torch.equal(normal.idx, torch.topk(magnitudes[[0, 2]] * mask_normal, 3).indices)


def test_every_used_parameter_gets_a_gradient_and_the_projections_none() -> None:
    model = small_model().train()
    loss, terms = create_loss("s3r")(model(batch()), torch.tensor([0, 0, 1, 1]))
    loss.backward()
    for name, p in model.named_parameters():
        if "projection" in name:
            assert p.grad is None, name  # never called in forward, as in the authors' code
        else:
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert terms["macro"].requires_grad


@pytest.mark.parametrize(
    "labels, message", [([0, 0, 0, 0], "both normal and abnormal"), ([0, 1, 1, 1], "one to one")]
)
def test_loss_refuses_batches_it_cannot_pair(labels: list[int], message: str) -> None:
    out = small_model().eval()(batch())
    with pytest.raises(ValueError, match=message):
        create_loss("s3r")(out, torch.tensor(labels))


def test_loss_options_are_checked() -> None:
    with pytest.raises(ValueError, match="smoothness"):
        create_loss("s3r", smoothness="sideways")
    out = small_model().eval()(batch())
    out.extras.clear()
    with pytest.raises(ValueError, match="macro_scores"):
        create_loss("s3r")(out, torch.tensor([0, 0, 1, 1]))


# --------------------------------------------------------------------------- dictionary learning


def video_features(v: int = 20, c: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(v, 3, 5, c)).astype(np.float32)


def test_video_vectors_are_crop_and_time_means() -> None:
    features = video_features()
    vectors = normal_video_vectors(features, chunk=7)
    assert vectors.dtype == np.float32 and vectors.shape == (20, 32)
    np.testing.assert_allclose(vectors, features.mean(axis=(1, 2)), rtol=1e-6)
    np.testing.assert_array_equal(normal_video_vectors(iter(list(features))), vectors)
    with pytest.raises(ValueError, match="video 1 has width"):
        normal_video_vectors([features[0], features[1][..., :5]])
    broken = features.copy()
    broken[4, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="video 4"):
        normal_video_vectors(broken)


def test_learned_dictionary_shape_sparsity_and_determinism() -> None:
    features = video_features()
    atoms = learn_dictionary(features, ratio=0.5, n_iter=10, batch_size=8, cache=False, progress=False)
    assert atoms.shape == (10, 32) and atoms.dtype == np.float32
    # The dictionary is the transposed OMP code of the channels: at most 2 atoms per channel are non-zero.
    assert ((atoms != 0).sum(axis=0) <= 2).all() and np.abs(atoms).sum() > 0
    again = learn_dictionary(features, ratio=0.5, n_iter=10, batch_size=8, cache=False, progress=False)
    np.testing.assert_array_equal(atoms, again)
    assert learn_dictionary(features, ratio=0.3, n_iter=10, batch_size=8, cache=False, progress=False).shape == (6, 32)


def test_n_iter_steps_equal_scikit_learns_own_fit_over_the_same_steps() -> None:
    vectors = normal_video_vectors(video_features(v=20, c=48))
    ours = fit_dictionary(vectors, ratio=0.5, n_iter=12, batch_size=8, random_state=3, progress=False)
    reference = MiniBatchDictionaryLearning(
        n_components=10, batch_size=8, random_state=3, max_iter=2, tol=0, max_no_improvement=None,
        transform_algorithm="omp", transform_n_nonzero_coefs=2,
    )  # 2 passes over 48 channels in batches of 8 = 12 steps
    expected = reference.fit_transform(vectors.T.astype(np.float64)).T.astype(np.float32)
    assert reference.n_steps_ == 12
    np.testing.assert_array_equal(ours, expected)


def test_dictionary_cache_hit_skips_the_fit(monkeypatch: pytest.MonkeyPatch) -> None:
    features = video_features(seed=3)
    settings = {"ratio": 0.5, "n_iter": 5, "batch_size": 8, "random_state": 42}
    first = learn_dictionary(features, **settings, progress=False)
    path = dictionary_cache_path(normal_video_vectors(features), **settings)
    assert path.is_file() and not list(path.parent.glob("*.tmp"))

    def no_refit(*args: object, **kwargs: object) -> np.ndarray:
        raise AssertionError("the cached dictionary should have been used")

    monkeypatch.setattr(dictionary_module, "fit_dictionary", no_refit)
    np.testing.assert_array_equal(learn_dictionary(features, **settings, progress=False), first)
    with pytest.raises(AssertionError, match="cached"):  # other settings: a different key, so a new fit
        learn_dictionary(features, **{**settings, "n_iter": 6}, progress=False)


def test_cache_key_depends_on_inputs_and_settings() -> None:
    vectors = normal_video_vectors(video_features())
    settings = {"ratio": 0.5, "n_iter": 100, "batch_size": 32, "random_state": 42}
    key = dictionary_cache_path(vectors, **settings)
    assert dictionary_cache_path(vectors.copy(), **settings) == key
    other = vectors.copy()
    other[0, 0] += 1e-3
    assert dictionary_cache_path(other, **settings) != key
    for name, value in (("ratio", 0.4), ("n_iter", 50), ("batch_size", 16), ("random_state", 0)):
        assert dictionary_cache_path(vectors, **{**settings, name: value}) != key


def test_dictionary_learning_errors_and_progress(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ValueError, match="needs at least 2"):
        learn_dictionary(video_features(v=3), ratio=0.2, cache=False, progress=False)
    with pytest.raises(ValueError, match="shape"):
        learn_dictionary(np.zeros((2, 3, 4)), cache=False)
    learn_dictionary(video_features(), n_iter=3, batch_size=8, cache=False, progress=True)
    assert "S3R dictionary (10 atoms)" in capsys.readouterr().err


def test_learned_dictionary_drives_the_model() -> None:
    atoms = learn_dictionary(video_features(v=12, c=C), n_iter=5, batch_size=16, cache=False, progress=False)
    model = create_model("s3r", feature_dim=C, n_crops=N, n_atoms=atoms.shape[0])
    model.set_dictionary(atoms)
    assert torch.isfinite(model.eval()(batch()).scores).all()


def test_keyed_dictionary_cache_hit_computes_no_vectors() -> None:
    import numpy as np

    from vad.models.s3r.dictionary import learn_dictionary

    calls = []

    def vectors() -> np.ndarray:
        calls.append(1)
        return np.random.default_rng(0).random((12, 16), dtype=np.float32)

    first = learn_dictionary(vectors, ratio=0.5, n_iter=5, inputs_key="cache-abc+rows-1", progress=False)
    second = learn_dictionary(vectors, ratio=0.5, n_iter=5, inputs_key="cache-abc+rows-1", progress=False)
    assert calls == [1] and np.array_equal(first, second) and first.shape == (6, 16)
    learn_dictionary(vectors, ratio=0.5, n_iter=5, inputs_key="cache-abc+rows-2", progress=False)
    assert calls == [1, 1]
