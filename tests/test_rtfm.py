"""RTFM: the authors' key layout and parameter counts, forward behaviour, top-k, and the loss against its formula."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from vad.models import ModelOutput, create_loss, create_model, load_original_weights, read_checkpoint

SMALL = {"feature_dim": 16, "n_crops": 2, "hidden_dim": 8, "head_dims": (8, 4)}


def authors_layout(
    c: int, hidden: int = 512, inner: int = 256, head: tuple[int, ...] = (512, 128)
) -> dict[str, tuple[int, ...]]:
    """Key -> shape of the authors' RTFM state_dict (documented layout), generalised over the widths."""
    bn = lambda prefix, n: {  # noqa: E731
        f"{prefix}.weight": (n,), f"{prefix}.bias": (n,), f"{prefix}.running_mean": (n,),
        f"{prefix}.running_var": (n,), f"{prefix}.num_batches_tracked": (),
    }
    layout: dict[str, tuple[int, ...]] = {}
    for i in (1, 2, 3):
        layout |= {f"Aggregate.conv_{i}.0.weight": (hidden, c, 3), f"Aggregate.conv_{i}.0.bias": (hidden,)}
        layout |= bn(f"Aggregate.conv_{i}.2", hidden)
    layout["Aggregate.conv_4.0.weight"] = (hidden, c, 1)
    layout["Aggregate.conv_5.0.weight"] = (c, 4 * hidden, 3)
    layout |= bn("Aggregate.conv_5.2", c)
    layout |= {"Aggregate.non_local.g.weight": (inner, hidden, 1), "Aggregate.non_local.g.bias": (inner,)}
    layout |= {"Aggregate.non_local.W.0.weight": (hidden, inner, 1), "Aggregate.non_local.W.0.bias": (hidden,)}
    layout |= bn("Aggregate.non_local.W.1", hidden)
    for name in ("theta", "phi"):
        layout |= {f"Aggregate.non_local.{name}.weight": (inner, hidden, 1),
                   f"Aggregate.non_local.{name}.bias": (inner,)}
    widths = (c, *head, 1)
    for i in range(len(widths) - 1):
        layout |= {f"fc{i + 1}.weight": (widths[i + 1], widths[i]), f"fc{i + 1}.bias": (widths[i + 1],)}
    return layout


def random_state(layout: dict[str, tuple[int, ...]], seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in layout.items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(5)
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=g) + 0.5
        else:
            state[key] = torch.randn(shape, generator=g) * 0.3
    return state


SMALL_LAYOUT = authors_layout(16, hidden=8, inner=4, head=(8, 4))


@pytest.fixture(scope="module")
def ucf_model() -> torch.nn.Module:
    return create_model("rtfm")


@pytest.fixture(scope="module")
def xd_model() -> torch.nn.Module:
    return create_model("rtfm", feature_dim=1024, n_crops=5)


def small_model(seed: int = 0, **overrides: object) -> torch.nn.Module:
    torch.manual_seed(seed)
    return create_model("rtfm", **{**SMALL, **overrides})


# ---------------------------------------------------------------- layout, counts, loading


def test_parameter_counts(ucf_model, xd_model):
    assert sum(p.numel() for p in ucf_model.parameters()) == 24_718_849
    assert sum(p.numel() for p in xd_model.parameters()) == 12_658_177


@pytest.mark.parametrize("width", [2048, 1024])
def test_state_dict_is_the_authors_layout(width, ucf_model, xd_model):
    model = ucf_model if width == 2048 else xd_model
    own = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    layout = authors_layout(width)
    assert len(own) == 47
    assert list(own) == list(layout)  # same order too: same registration order as the authors' modules
    assert own == layout


def test_loads_authors_layout_with_module_prefix(xd_model):
    state = random_state(authors_layout(1024))
    report = load_original_weights(xd_model, {"module." + k: v for k, v in state.items()})
    assert len(report.loaded) == 47 and report.dropped_unused == []
    for key, value in xd_model.state_dict().items():
        assert torch.equal(value, state[key]), key


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda s: s.update({"Aggregate.conv_6.0.weight": torch.zeros(1)}), "unexpected 1 key"),
        (lambda s: s.pop("Aggregate.non_local.W.1.running_var"), "missing 1 key"),
        (lambda s: s.update({"fc2.weight": torch.zeros(4, 9)}), "fc2.weight: checkpoint shape (4, 9)"),
    ],
    ids=["extra-key", "missing-key", "wrong-shape"],
)
def test_load_rejects_bad_state_dicts(change, message):
    state = random_state(SMALL_LAYOUT)
    change(state)
    with pytest.raises(ValueError, match=r"do not fit 'rtfm' \(feature_dim=16, n_crops=2\).*" + message.replace(
            "(", r"\(").replace(")", r"\)")):
        load_original_weights(small_model(), state)


def test_load_rejects_other_width_and_other_model():
    other_width = random_state(authors_layout(32, hidden=8, inner=4, head=(8, 4)))
    with pytest.raises(ValueError, match=r"Aggregate.conv_1.0.weight: checkpoint shape \(8, 32, 3\), model expects "
                                         r"\(8, 16, 3\)"):
        load_original_weights(small_model(), other_width)
    mgfn_like = {"to_tokens.weight": torch.zeros(64, 16, 3), "to_tokens.bias": torch.zeros(64),
                 "fc.weight": torch.zeros(1)}
    with pytest.raises(ValueError, match="missing 47 key.*unexpected 3 key"):
        load_original_weights(small_model(), mgfn_like)


def test_state_dict_round_trip_through_a_file(tmp_path):
    model = small_model(seed=1)
    load_original_weights(model, random_state(SMALL_LAYOUT, seed=3))
    torch.save(model.state_dict(), tmp_path / "rtfm.pkl")
    copy = small_model(seed=2)
    load_original_weights(copy, read_checkpoint(tmp_path / "rtfm.pkl"))
    x = torch.randn(3, 2, 7, 16)
    with torch.no_grad():
        a, b = model.eval()(x), copy.eval()(x)
    assert torch.equal(a.scores, b.scores) and torch.equal(a.magnitudes, b.magnitudes)


# ---------------------------------------------------------------- construction and forward


def test_init_is_xavier_with_zero_biases_and_identity_non_local():
    torch.manual_seed(0)
    model = create_model("rtfm", feature_dim=256, n_crops=1)
    torch.manual_seed(0)
    again = create_model("rtfm", feature_dim=256, n_crops=1)
    for (name, p), q in zip(model.state_dict().items(), again.state_dict().values()):
        assert torch.equal(p, q), name
    for name, module in model.named_modules():
        if isinstance(module, (torch.nn.Conv1d, torch.nn.Linear)):
            w = module.weight
            fan_in, fan_out = w.shape[1] * w[0, 0].numel(), w.shape[0] * w[0, 0].numel()
            bound = math.sqrt(6.0 / (fan_in + fan_out))
            assert w.abs().max() <= bound + 1e-7, name
            if w.numel() > 10_000:  # Xavier std, not PyTorch's default (Kaiming a=sqrt(5)) std
                assert w.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.05), name
            if module.bias is not None:
                assert torch.count_nonzero(module.bias) == 0, name
    non_local = model.Aggregate.non_local.eval()
    assert torch.count_nonzero(non_local.W[1].weight) == 0
    x = torch.randn(2, 512, 6)
    assert torch.equal(non_local(x), x)


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_forward_shapes_and_ranges(mode):
    model = small_model().train(mode == "train")
    out = model(torch.randn(3, 2, 7, 16))
    assert isinstance(out, ModelOutput)
    assert out.scores.shape == (3, 7) and out.magnitudes.shape == (3, 7) and out.features.shape == (3, 2, 7, 16)
    assert bool(torch.isfinite(out.scores).all() and torch.isfinite(out.features).all())
    assert bool(((out.scores > 0) & (out.scores < 1)).all()) and bool((out.magnitudes >= 0).all())
    assert out.topk_dropout == (0.7 if mode == "train" else 0.0)
    expected = torch.linalg.vector_norm(out.features, dim=3).mean(dim=1)
    torch.testing.assert_close(out.magnitudes, expected, rtol=0, atol=0)


def test_scores_are_per_crop_scores_averaged():
    """Eval mode: a 3-crop model's scores equal the mean of a 1-crop model's scores on each crop."""
    three = small_model(n_crops=3)
    one = small_model(n_crops=1)
    state = random_state(SMALL_LAYOUT, seed=4)
    load_original_weights(three, state)
    load_original_weights(one, state)
    x = torch.randn(2, 3, 5, 16)
    with torch.no_grad():
        out = three.eval()(x)
        per_crop = [one.eval()(x[:, c : c + 1]) for c in range(3)]
    torch.testing.assert_close(out.scores, torch.stack([o.scores for o in per_crop]).mean(0))
    torch.testing.assert_close(out.magnitudes, torch.stack([o.magnitudes for o in per_crop]).mean(0))


def test_train_forward_draws_its_dropouts_in_the_authors_order():
    """features mask first, then after fc1, then after fc2 (one shared nn.Dropout), as the authors' forward."""
    model = small_model().train()
    x = torch.randn(2, 2, 6, 16)
    torch.manual_seed(11)
    out = model(x)
    torch.manual_seed(11)
    # the authors' Aggregate returns a channels-first (b, C, T) tensor seen as (b, T, C): their mask follows that memory
    channels_first = model.Aggregate(x.reshape(4, 6, 16)).transpose(1, 2).contiguous()
    features = F.dropout(channels_first, 0.7, training=True).transpose(1, 2)
    hidden = F.dropout(torch.relu(model.fc1(features)), 0.7, training=True)
    hidden = F.dropout(torch.relu(model.fc2(hidden)), 0.7, training=True)
    scores = torch.sigmoid(model.fc3(hidden)).view(2, 2, 6).mean(1)
    torch.testing.assert_close(out.features, features.view(2, 2, 6, 16), rtol=0, atol=0)
    torch.testing.assert_close(out.scores, scores, rtol=0, atol=0)


def test_dilation_pyramid_is_the_block_count():
    model = small_model(dilations=[1, 2, 4, 8], head_dims=[6])
    keys = model.state_dict()
    assert model.Aggregate.conv_4[0].dilation == (8,) and model.Aggregate.conv_4[0].padding == (8,)
    assert keys["Aggregate.conv_5.0.weight"].shape == (8, 16, 1)  # the 1x1 branch before the non-local block
    assert keys["Aggregate.conv_6.0.weight"].shape == (16, 5 * 8, 3)  # fuses 4 dilated + 1 non-local branches
    assert keys["fc1.weight"].shape == (6, 16) and keys["fc2.weight"].shape == (1, 6) and "fc3.weight" not in keys
    assert model(torch.randn(2, 2, 5, 16)).scores.shape == (2, 5)
    bare = small_model(dilations=[])
    assert bare.state_dict()["Aggregate.conv_2.0.weight"].shape == (16, 8, 3)
    assert bare(torch.randn(2, 2, 5, 16)).scores.shape == (2, 5)


def test_every_parameter_gets_a_gradient():
    model = small_model().train()
    with torch.no_grad():  # the non-local output BN starts at 0, which would block its branch's gradient
        model.Aggregate.non_local.W[1].weight.fill_(1.0)
    out = model(torch.randn(4, 2, 8, 16))
    loss, _ = create_loss("rtfm")(out, torch.tensor([0, 1, 0, 1]))
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and bool(torch.isfinite(p.grad).all()), name
        assert torch.count_nonzero(p.grad) > 0, name


@pytest.mark.parametrize(
    "shape, message",
    [((2, 7, 16), "got a 3-d tensor"), ((2, 2, 7, 15), "feature_dim=16 channels; got C=15"),
     ((2, 3, 7, 16), "n_crops=2; got N=3")],
)
def test_bad_input_is_rejected(shape, message):
    with pytest.raises(ValueError, match=message):
        small_model()(torch.randn(shape))


@pytest.mark.parametrize(
    "overrides, message",
    [({"dropout": 1.0}, "dropout"), ({"dilations": [1, 0]}, "dilations"), ({"hidden_dim": 0}, "hidden_dim"),
     ({"head_dims": [8, -1]}, "head_dims"), ({"non_local_inner": 0}, "non_local_inner")],
)
def test_bad_constructor_arguments_are_rejected(overrides, message):
    with pytest.raises(ValueError, match=message):
        create_model("rtfm", **{**SMALL, **overrides})


# ---------------------------------------------------------------- loss


def hand_output() -> ModelOutput:
    """Video 0 normal, video 1 abnormal; 1 crop, T=4, F=2 (see test_loss_on_hand_checkable_values)."""
    scores = torch.tensor([[0.1, 0.5, 0.2, 0.3], [0.6, 0.1, 0.8, 0.2]])
    magnitudes = torch.tensor([[1.0, 4.0, 2.0, 3.0], [5.0, 1.0, 6.0, 2.0]])
    features = torch.tensor(
        [[[[100.0, 100.0], [0.0, 4.0], [100.0, 100.0], [6.0, 4.0]]],
         [[[0.0, 0.0], [100.0, 100.0], [60.0, 80.0], [100.0, 100.0]]]]
    )
    return ModelOutput(scores=scores, magnitudes=magnitudes, features=features)


def test_topk_picks_the_largest_magnitudes():
    criterion = create_loss("rtfm", k=2)
    normal, abnormal = criterion.select(hand_output(), torch.tensor([0, 1]))
    assert normal.idx.tolist() == [[1, 3]] and abnormal.idx.tolist() == [[2, 0]]
    torch.testing.assert_close(normal.video_scores, torch.tensor([0.4]))
    torch.testing.assert_close(abnormal.video_scores, torch.tensor([0.7]))
    assert abnormal.features.shape == (1, 1, 2, 2)


def test_loss_on_hand_checkable_values():
    # top-2: normal snippets 1, 3 -> video score (0.5 + 0.3) / 2 = 0.4; abnormal 2, 0 -> (0.8 + 0.6) / 2 = 0.7
    # BCE = -(ln 0.6 + ln 0.7) / 2; magnitude: ||mean([0,4],[6,4])|| = 5, ||mean([60,80],[0,0])|| = 50
    # -> 1e-4 * (|100 - 50| + 5)^2 = 0.3025; sparsity 8e-3 * sqrt(0.36 + 0.01 + 0.64 + 0.04);
    # smoothness 8e-4 * (0.5^2 + 0.7^2 + 0.6^2) = 8e-4 * 1.1
    loss, terms = create_loss("rtfm", k=2)(hand_output(), torch.tensor([0, 1]))
    expected = {
        "classification": -(math.log(0.6) + math.log(0.7)) / 2,
        "magnitude": 0.3025,
        "sparsity": 8e-3 * math.sqrt(1.05),
        "smoothness": 8e-4 * 1.1,
    }
    assert set(terms) == set(expected)
    for name, value in expected.items():
        assert terms[name].item() == pytest.approx(value, rel=1e-6), name
    assert loss.item() == pytest.approx(sum(expected.values()), rel=1e-6)


def test_smoothness_flat_crosses_videos_and_per_video_does_not():
    # labels 1, 0, 0, 1: abnormal videos are rows 0 and 3 with scores [0.2, 0.4] and [0.9, 0.9]
    out = ModelOutput(
        scores=torch.tensor([[0.2, 0.4], [0.1, 0.1], [0.3, 0.2], [0.9, 0.9]]),
        magnitudes=torch.rand(4, 2),
        features=torch.rand(4, 1, 2, 3),
    )
    labels = torch.tensor([1, 0, 0, 1])
    _, flat = create_loss("rtfm", k=1, smoothness_weight=1.0)(out, labels)
    _, per_video = create_loss("rtfm", k=1, smoothness_weight=1.0, smoothness="per_video")(out, labels)
    assert flat["smoothness"].item() == pytest.approx(0.2**2 + 0.5**2)
    assert per_video["smoothness"].item() == pytest.approx(0.2**2)


def reference_rtfm_loss(out: ModelOutput, labels: list[int], k: int, masks: dict[str, torch.Tensor] | None) -> dict:
    """The RTFM loss written out from its formula, video by video (independent of the implementation)."""
    rows = {"normal": [i for i, y in enumerate(labels) if y == 0],
            "abnormal": [i for i, y in enumerate(labels) if y == 1]}
    video_scores, selected = {}, {}
    for name, videos in rows.items():
        video_scores[name], selected[name] = [], []
        for j, v in enumerate(videos):
            ranked = out.magnitudes[v] * (masks[name][j] if masks else 1.0)
            order = sorted(range(ranked.numel()), key=lambda t: -ranked[t].item())
            assert ranked[order[k - 1]] > ranked[order[k]], "ambiguous top-k (ties): pick another seed"
            top = order[:k]
            video_scores[name].append(sum(out.scores[v, t].item() for t in top) / k)
            selected[name].append([out.features[v, c, top].double().mean(0) for c in range(out.features.shape[1])])
    bce = [-math.log(1 - s) for s in video_scores["normal"]] + [-math.log(s) for s in video_scores["abnormal"]]
    pairs = [
        (abs(100.0 - a.norm().item()) + n.norm().item()) ** 2
        for a_video, n_video in zip(selected["abnormal"], selected["normal"])
        for a, n in zip(a_video, n_video)
    ]
    abnormal_scores = [out.scores[v, t].item() for v in rows["abnormal"] for t in range(out.scores.shape[1])]
    return {
        "classification": sum(bce) / len(bce),
        "magnitude": 1e-4 * sum(pairs) / len(pairs),
        "sparsity": 8e-3 * math.sqrt(sum(s * s for s in abnormal_scores)),
        "smoothness": 8e-4 * sum((b - a) ** 2 for a, b in zip(abnormal_scores, abnormal_scores[1:])),
    }


@pytest.mark.parametrize("topk_dropout", [0.0, 0.5])
def test_loss_matches_its_formula(topk_dropout):
    g = torch.Generator().manual_seed(5)
    t = 12
    out = ModelOutput(
        scores=torch.rand(6, t, generator=g) * 0.98 + 0.01,
        magnitudes=torch.rand(6, t, generator=g) * 10,
        features=torch.randn(6, 2, t, 5, generator=g) * 20,
        topk_dropout=topk_dropout,
    )
    labels = [1, 0, 0, 1, 1, 0]
    masks = None
    if topk_dropout:  # the loss draws the abnormal videos' mask first, then the normal videos'
        torch.manual_seed(9)
        abnormal_mask = F.dropout(torch.ones(3, t), topk_dropout)
        masks = {"abnormal": abnormal_mask, "normal": F.dropout(torch.ones(3, t), topk_dropout)}
        assert not torch.equal(masks["abnormal"], masks["normal"])
    torch.manual_seed(9)
    loss, terms = create_loss("rtfm")(out, torch.tensor(labels))
    expected = reference_rtfm_loss(out, labels, k=3, masks=masks)
    for name, value in expected.items():
        assert terms[name].item() == pytest.approx(value, rel=1e-5), name
    assert loss.item() == pytest.approx(sum(expected.values()), rel=1e-5)


def test_loss_weights_and_margin_are_arguments():
    out, labels = hand_output(), torch.tensor([0, 1])
    _, terms = create_loss("rtfm", k=2, margin=60.0, magnitude_weight=1.0, sparsity_weight=0.0, smoothness_weight=2.0)(
        out, labels
    )
    assert terms["magnitude"].item() == pytest.approx((abs(60 - 50) + 5) ** 2)
    assert terms["sparsity"].item() == 0.0
    assert terms["smoothness"].item() == pytest.approx(2.0 * 1.1)


@pytest.mark.parametrize(
    "labels, message",
    [([0, 0], "needs both normal and abnormal"), ([1, 1], "needs both normal and abnormal"),
     ([0, 1, 1], "pairs normal and abnormal videos one to one")],
)
def test_loss_rejects_batches_it_cannot_pair(labels, message):
    out = ModelOutput(scores=torch.rand(len(labels), 4), magnitudes=torch.rand(len(labels), 4),
                      features=torch.rand(len(labels), 1, 4, 2))
    with pytest.raises(ValueError, match=message):
        create_loss("rtfm")(out, torch.tensor(labels))


def test_loss_rejects_bad_options():
    with pytest.raises(ValueError, match="smoothness must be one of flat, per_video"):
        create_loss("rtfm", smoothness="video")
    with pytest.raises(ValueError, match="k must be a positive int"):
        create_loss("rtfm", k=0)
    too_short = ModelOutput(scores=torch.rand(2, 2), magnitudes=torch.rand(2, 2), features=torch.rand(2, 1, 2, 3))
    with pytest.raises(ValueError, match="k=3 needs at least 3 snippets"):
        create_loss("rtfm")(too_short, torch.tensor([0, 1]))
