"""MGFN: key layout and parameter counts, blocks against their formulas, forward, loss values, strict loading."""

from __future__ import annotations

import io
import math
import re

import pytest
import torch
import torch.nn.functional as F

from vad.models import ModelOutput, create_loss, create_model, load_original_weights, read_checkpoint
from vad.models.mgfn.blocks import ChannelLayerNorm, Focus, Glance
from vad.models.mgfn.loss import MGFNLoss, contrastive_parts, crop_major_rows

SMALL = dict(feature_dim=24, n_crops=2, dims=(16, 32, 64), depths=(1, 2, 1), dim_head=16)


def authors_layout(
    feature_dim: int,
    dims: tuple[int, ...] = (64, 128, 1024),
    depths: tuple[int, ...] = (3, 3, 2),
    types: tuple[str, ...] = ("gb", "fb", "fb"),
    dim_head: int = 64,
    mult: int = 4,
    kernel: int = 5,
) -> dict[str, tuple[int, ...]]:
    """Key -> shape of the authors' MGFN state_dict, written from the documented layout (heads = dim / dim_head)."""
    shapes: dict[str, tuple[int, ...]] = {"to_tokens.weight": (dims[0], feature_dim, 3), "to_tokens.bias": (dims[0],)}
    for s, (d, depth, kind) in enumerate(zip(dims, depths, types)):
        inner = (d // dim_head) * dim_head
        heads = d // dim_head
        for i in range(depth):
            p = f"stages.{s}.0.layers.{i}."
            shapes.update({p + "0.weight": (d, d, 3), p + "0.bias": (d,)})
            if kind == "gb":
                shapes.update({p + "1.norm.g": (1, d, 1), p + "1.norm.b": (1, d, 1)})
                shapes[p + "1.to_qkv.weight"] = (3 * inner, d, 1)
            else:
                for name in ("weight", "bias", "running_mean", "running_var"):
                    shapes[p + f"1.norm.{name}"] = (d,)
                shapes.update({
                    p + "1.norm.num_batches_tracked": (),
                    p + "1.to_v.weight": (inner, d, 1),
                    p + "1.rel_pos.weight": (heads, 1, kernel),
                    p + "1.rel_pos.bias": (heads,),
                })
            shapes.update({p + "1.to_out.weight": (d, inner, 1), p + "1.to_out.bias": (d,)})
            shapes.update({
                p + "2.0.g": (1, d, 1), p + "2.0.b": (1, d, 1),
                p + "2.1.weight": (mult * d, d, 1), p + "2.1.bias": (mult * d,),
                p + "2.4.weight": (d, mult * d, 1), p + "2.4.bias": (d,),
            })
        if s + 1 < len(dims):
            shapes.update({
                f"stages.{s}.1.0.g": (1, d, 1), f"stages.{s}.1.0.b": (1, d, 1),
                f"stages.{s}.1.1.weight": (dims[s + 1], d, 1), f"stages.{s}.1.1.bias": (dims[s + 1],),
            })
    last = dims[-1]
    shapes.update({
        "to_logits.0.weight": (last,), "to_logits.0.bias": (last,),
        "fc.weight": (1, last), "fc.bias": (1,),
        "to_mag.weight": (dims[0], 1, 3), "to_mag.bias": (dims[0],),
    })
    return shapes


def random_state(shapes: dict[str, tuple[int, ...]], seed: int = 0, prefix: str = "") -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in shapes.items():
        if key.endswith("num_batches_tracked"):
            state[prefix + key] = torch.tensor(7)
        elif key.endswith("running_var"):
            state[prefix + key] = torch.rand(shape, generator=g) + 0.5
        else:
            state[prefix + key] = torch.randn(shape, generator=g) * 0.1
    return state


def n_parameters(shapes: dict[str, tuple[int, ...]]) -> int:
    buffers = ("running_mean", "running_var", "num_batches_tracked")
    return sum(math.prod(s) for k, s in shapes.items() if not k.endswith(buffers))


@pytest.fixture(scope="module")
def ucf_model() -> torch.nn.Module:
    return create_model("mgfn")


@pytest.fixture
def small_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("mgfn", **SMALL)


def small_batch(b: int = 2, t: int = 8, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2 * b, SMALL["n_crops"], t, SMALL["feature_dim"], generator=g)
    return x, torch.tensor([0] * b + [1] * b)


# ----------------------------------------------------------------------------------------------- layout and counts


def test_default_layout_and_parameter_count(ucf_model: torch.nn.Module) -> None:
    expected = authors_layout(2048)
    ours = {k: tuple(v.shape) for k, v in ucf_model.state_dict().items()}
    assert len(expected) == 145
    assert ours == expected
    assert n_parameters(expected) == 28_652_773
    assert sum(p.numel() for p in ucf_model.parameters()) == 28_652_773


def test_xd_width_parameter_count() -> None:
    model = create_model("mgfn", feature_dim=1024, n_crops=5)
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == authors_layout(1024)
    assert sum(p.numel() for p in model.parameters()) == 28_456_165


def test_block_type_aliases_lists_and_heads() -> None:
    readable = create_model("mgfn", **{**SMALL, "block_types": ["glance", "focus", "focus"]})
    authors = create_model("mgfn", **{**SMALL, "block_types": ["GB", "fb", "Fb"], "dims": [16, 32, 64]})
    assert readable.state_dict().keys() == authors.state_dict().keys()
    assert authors.block_types == ("glance", "focus", "focus") and authors.heads == (1, 2, 4)
    explicit = create_model("mgfn", **{**SMALL, "heads": [2, 1, 2]})
    assert explicit.state_dict()["stages.0.0.layers.0.1.to_qkv.weight"].shape == (3 * 2 * 16, 16, 1)
    assert explicit.state_dict()["stages.2.0.layers.0.1.rel_pos.weight"].shape == (2, 1, 5)
    all_glance = create_model("mgfn", **{**SMALL, "block_types": ("gb", "gb", "gb")})
    assert "stages.2.0.layers.0.1.to_qkv.weight" in all_glance.state_dict()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"block_types": ("glance", "local", "focus")}, "unknown MGFN block type"),
        ({"depths": (1, 1)}, "one entry per stage"),
        ({"dims": (8, 32, 64)}, "at least dim_head"),
        ({"heads": (1, 2)}, "heads must give"),
        ({"focus_kernel": 4}, "odd"),
        ({"dropout": 1.0}, "dropout"),
    ],
)
def test_bad_constructor_arguments(overrides: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        create_model("mgfn", **{**SMALL, **overrides})


# ----------------------------------------------------------------------------------------------- blocks


def test_channel_layernorm_formula() -> None:
    torch.manual_seed(0)
    norm = ChannelLayerNorm(6)
    with torch.no_grad():
        norm.g.copy_(torch.randn(1, 6, 1))
        norm.b.copy_(torch.randn(1, 6, 1))
    x = torch.randn(3, 6, 5, dtype=torch.float64)
    norm = norm.double()
    mean = x.sum(dim=1, keepdim=True) / 6
    std = (((x - mean) ** 2).sum(dim=1, keepdim=True) / 6).sqrt()  # biased, eps added to the std
    expected = (x - mean) / (std + 1e-5) * norm.g + norm.b
    torch.testing.assert_close(norm(x), expected)


def test_glance_is_head_major_attention() -> None:
    torch.manual_seed(0)
    heads, dh, d, t = 2, 3, 4, 5
    block = Glance(d, heads, dh).double().eval()
    x = torch.randn(2, d, t, dtype=torch.float64)
    qkv = block.to_qkv(block.norm(x))
    outs = []
    for h in range(heads):  # head h owns channels h*dh .. h*dh+dh-1 of q, k and v
        q, k, v = (qkv[:, j * heads * dh + h * dh: j * heads * dh + (h + 1) * dh] for j in range(3))
        weights = torch.softmax(torch.einsum("bdi,bdj->bij", q, k) / math.sqrt(dh), dim=-1)
        outs.append(torch.einsum("bij,bdj->bdi", weights, v))
    torch.testing.assert_close(block(x), block.to_out(torch.cat(outs, dim=1)))


def test_focus_groups_heads_interleaved() -> None:
    torch.manual_seed(0)
    heads, dh, d, t, kernel = 3, 2, 4, 7, 3
    block = Focus(d, heads, dh, kernel).double().eval()
    x = torch.randn(2, d, t, dtype=torch.float64)
    v = block.to_v(block.norm(x))
    channels = []
    for j in range(heads * dh):  # channel j uses the kernel of head j % heads
        head = j % heads
        w, bias = block.rel_pos.weight[head: head + 1], block.rel_pos.bias[head: head + 1]
        channels.append(F.conv1d(v[:, j: j + 1], w, bias, padding=kernel // 2))
    torch.testing.assert_close(block(x), block.to_out(torch.cat(channels, dim=1)))


# ----------------------------------------------------------------------------------------------- forward


def test_forward_shapes_ranges_and_magnitudes(small_model: torch.nn.Module) -> None:
    x, _ = small_batch()
    small_model.eval()
    out = small_model(x)
    assert isinstance(out, ModelOutput)
    assert out.scores.shape == (4, 8) and out.magnitudes.shape == (4, 8) and out.features.shape == (4, 2, 8, 64)
    assert torch.isfinite(out.scores).all() and ((out.scores >= 0) & (out.scores <= 1)).all()
    torch.testing.assert_close(out.magnitudes, out.features.norm(dim=-1).mean(dim=1))
    assert out.topk_dropout == 0.0
    small_model.train()
    assert small_model(x).topk_dropout == 0.7


def test_crops_are_processed_independently_and_averaged(small_model: torch.nn.Module) -> None:
    x, _ = small_batch()
    single = create_model("mgfn", **{**SMALL, "n_crops": 1})
    single.load_state_dict(small_model.state_dict())
    small_model.eval()
    single.eval()
    with torch.no_grad():
        out = small_model(x)
        per_crop = [single(x[:, c: c + 1]) for c in range(x.shape[1])]
    torch.testing.assert_close(out.scores, torch.stack([o.scores for o in per_crop]).mean(0))
    torch.testing.assert_close(out.features, torch.cat([o.features for o in per_crop], dim=1))


def test_magnitude_channel_is_computed_from_the_features(small_model: torch.nn.Module) -> None:
    x, _ = small_batch()
    small_model.eval()
    with torch.no_grad():
        b, n, t, c = x.shape
        flat = x.reshape(b * n, t, c).transpose(1, 2)
        norm = flat.norm(dim=1, keepdim=True)  # (b*n, 1, T): the L2 norm of each snippet
        h = small_model.to_tokens(flat) + 0.1 * small_model.to_mag(norm)
        for pair in small_model.stages:
            for module in pair:
                h = module(h)
        features = small_model.to_logits(h.transpose(1, 2))
        expected = torch.sigmoid(small_model.fc(features)).reshape(b, n, t).mean(1)
        torch.testing.assert_close(small_model(x).scores, expected)


def test_every_parameter_gets_a_gradient(small_model: torch.nn.Module) -> None:
    x, labels = small_batch()
    small_model.train()
    torch.manual_seed(3)
    loss, terms = create_loss("mgfn")(small_model(x), labels)
    loss.backward()
    missing = [n for n, p in small_model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing
    assert set(terms) == {"classification", "contrastive", "sparsity", "smoothness"}
    torch.testing.assert_close(sum(terms.values()), loss)


@pytest.mark.parametrize(
    ("shape", "message"),
    [((2, 2, 8, 24, 1), "(B, N, T, C)"), ((2, 2, 8, 25), "feature_dim=24 got C=25"), ((2, 3, 8, 24), "n_crops=2")],
)
def test_bad_input_shapes(small_model: torch.nn.Module, shape: tuple[int, ...], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        small_model(torch.zeros(shape))


def test_magnitude_channel_hint(small_model: torch.nn.Module) -> None:
    with pytest.raises(ValueError, match="adds the magnitude channel itself"):
        small_model(torch.zeros(2, 2, 8, 25))


# ----------------------------------------------------------------------------------------------- weights


def test_state_dict_round_trip(small_model: torch.nn.Module, tmp_path) -> None:
    x, _ = small_batch()
    path = tmp_path / "mgfn.pkl"
    torch.save(small_model.state_dict(), path)
    other = create_model("mgfn", **SMALL)
    load_original_weights(other, read_checkpoint(path))
    small_model.eval()
    other.eval()
    with torch.no_grad():
        torch.testing.assert_close(other(x).scores, small_model(x).scores, rtol=0, atol=0)


def test_load_authors_layout_with_module_prefix(ucf_model: torch.nn.Module) -> None:
    state = random_state(authors_layout(2048), prefix="module.")
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=True, map_location="cpu")
    report = load_original_weights(ucf_model, loaded)
    assert len(report.loaded) == 145 and report.dropped_unused == []
    ours = ucf_model.state_dict()
    assert all(torch.equal(ours[k[len("module."):]], v) for k, v in state.items())


def small_layout() -> dict[str, tuple[int, ...]]:
    return authors_layout(24, dims=(16, 32, 64), depths=(1, 2, 1), dim_head=16)


def test_small_layout_matches_formula(small_model: torch.nn.Module) -> None:
    assert {k: tuple(v.shape) for k, v in small_model.state_dict().items()} == small_layout()


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda s: s.update({"extra.weight": torch.zeros(1)}), "unexpected 1 key"),
        (lambda s: s.pop("fc.bias"), "missing 1 key"),
        (lambda s: s.update({"fc.weight": torch.zeros(1, 32)}), "fc.weight: checkpoint shape"),
    ],
)
def test_strict_loading(small_model: torch.nn.Module, edit, message: str) -> None:
    state = random_state(small_layout())
    edit(state)
    with pytest.raises(ValueError, match=message):
        load_original_weights(small_model, state)


def test_checkpoint_of_other_width_or_model_is_rejected() -> None:
    xd = create_model("mgfn", **{**SMALL, "feature_dim": 12})
    with pytest.raises(ValueError, match=r"to_tokens.weight: checkpoint shape \(16, 24, 3\)"):
        load_original_weights(xd, random_state(small_layout()))
    rtfm_like = {"Aggregate.conv_1.0.weight": torch.zeros(512, 24, 3), "fc1.weight": torch.zeros(512, 24)}
    with pytest.raises(ValueError, match="missing .* unexpected 2 key"):
        load_original_weights(xd, rtfm_like)


# ----------------------------------------------------------------------------------------------- loss


def hand_output() -> tuple[ModelOutput, torch.Tensor]:
    """One normal (row 0) and one abnormal video (row 1), 2 crops, 4 snippets, 2 feature channels."""
    scores = torch.tensor([[0.1, 0.2, 0.3, 0.4], [0.5, 0.5, 0.5, 0.8]])
    magnitudes = torch.tensor([[1.0, 5.0, 2.0, 0.0], [3.0, 0.0, 0.0, 9.0]])  # top-1: snippet 1 and snippet 3
    features = torch.zeros(2, 2, 4, 2)
    features[0, 0, 1] = torch.tensor([1.0, -2.0])  # normal, L1 3
    features[0, 1, 1] = torch.tensor([0.0, 4.0])  # L1 4
    features[1, 0, 3] = torch.tensor([100.0, 0.0])  # abnormal, L1 100
    features[1, 1, 3] = torch.tensor([-50.0, 60.0])  # L1 110
    features[1, 0, 0] = torch.tensor([1e3, 1e3])  # not selected: must not matter
    return ModelOutput(scores=scores, magnitudes=magnitudes, features=features), torch.tensor([0, 1])


def test_loss_by_hand_current_variant() -> None:
    out, labels = hand_output()
    loss, terms = MGFNLoss(k=1)(out, labels)
    # video scores 0.2 (normal) and 0.8 (abnormal): BCE = -log(0.8)
    assert terms["classification"].item() == pytest.approx(-math.log(0.8), rel=1e-6)
    # separation: (200 - 97)^2 and (200 - 106)^2; compactness: |110 - 100|^2 and |4 - 3|^2
    inner = 1e-3 * ((103**2 + 94**2) / 2) + 100 + 1
    assert terms["contrastive"].item() == pytest.approx(1e-3 * inner, rel=1e-5)
    assert terms["sparsity"].item() == pytest.approx(8e-3 * math.sqrt(0.3), rel=1e-6)  # normal scores only
    assert terms["smoothness"].item() == pytest.approx(8e-4 * (3 * 0.01 + 0.09), rel=1e-5)  # per video, both
    assert loss.item() == pytest.approx(sum(t.item() for t in terms.values()), rel=1e-6)


def test_loss_by_hand_paper_variant_and_smoothness_options() -> None:
    out, labels = hand_output()
    _, paper = MGFNLoss(k=1, variant="paper")(out, labels)
    assert paper["sparsity"].item() == pytest.approx(8e-3 * math.sqrt(3 * 0.25 + 0.64), rel=1e-6)  # abnormal only
    assert paper["smoothness"].item() == pytest.approx(8e-4 * 0.09, rel=1e-5)
    _, current_flat = MGFNLoss(k=1, smoothness="flat")(out, labels)
    # normal then abnormal as one vector: the 0.4 -> 0.5 step across the video boundary counts too
    assert current_flat["smoothness"].item() == pytest.approx(8e-4 * (4 * 0.01 + 0.09), rel=1e-5)
    two = ModelOutput(
        scores=out.scores.repeat(2, 1), magnitudes=out.magnitudes.repeat(2, 1), features=out.features.repeat(2, 1, 1, 1)
    )
    labels2 = torch.tensor([0, 1, 0, 1])
    _, flat = MGFNLoss(k=1, variant="paper")(two, labels2)
    _, per_video = MGFNLoss(k=1, variant="paper", smoothness="per_video")(two, labels2)
    assert per_video["smoothness"].item() == pytest.approx(8e-4 * 2 * 0.09, rel=1e-5)
    assert flat["smoothness"].item() == pytest.approx(8e-4 * (2 * 0.09 + 0.3**2), rel=1e-5)  # 0.8 -> 0.5 crossing


def test_separation_margin_clamps() -> None:
    far = torch.tensor([[300.0], [10.0]])
    near = torch.tensor([[0.0], [0.0]])
    separation, abnormal_compact, normal_compact = contrastive_parts(far, near, margin=200.0)
    assert separation.item() == pytest.approx((0 + 190**2) / 2, rel=1e-5)  # 300 apart: beyond the margin, no loss
    assert abnormal_compact.item() == pytest.approx(290**2, rel=1e-5)
    assert normal_compact.item() == pytest.approx(1e-12, rel=1e-3)  # pairwise_distance adds eps = 1e-6
    # the second half is the first argument: d = ||back - front + eps|| is exactly 0 here (2e-6 the other way round)
    _, _, directed = contrastive_parts(far, torch.tensor([[1e-6], [0.0]]), margin=200.0)
    assert directed.item() == 0.0


def test_crop_major_rows_and_halves_at_five_crops() -> None:
    b, n, k = 2, 5, 1
    norms = torch.zeros(b, n, k)
    for v in range(b):
        for c in range(n):
            norms[v, c, 0] = 10 * c + v  # the L1 norm encodes (crop, video)
    rows = crop_major_rows(norms)
    assert rows[:, 0].tolist() == [0, 1, 10, 11, 20, 21, 30, 31, 40, 41]
    # halves: rows 5..9 against rows 0..4, so crop 2 is split between the halves (video 1 vs video 0)
    _, compact, _ = contrastive_parts(rows, rows, margin=1.0)
    pairs = [(21, 0), (30, 1), (31, 10), (40, 11), (41, 20)]
    assert compact.item() == pytest.approx(sum((a - b) ** 2 for a, b in pairs) / 5, rel=1e-5)


def reference_loss(out: ModelOutput, labels: list[int], *, k: int, variant: str, smoothness: str) -> float:
    """The MGFN objective written out with loops, in float64 (masks drawn abnormal first, like the authors)."""
    scores, mags, feats = out.scores.double(), out.magnitudes.double(), out.features.double()
    normal = [i for i, y in enumerate(labels) if y == 0]
    abnormal = [i for i, y in enumerate(labels) if y == 1]
    b, t = len(normal), scores.shape[1]
    n_crops = feats.shape[1]
    masks = {}
    for name in ("abnormal", "normal"):
        ones = torch.ones(b, t)
        masks[name] = F.dropout(ones, out.topk_dropout, training=True) if out.topk_dropout > 0 else ones
    picks, video_score = {}, {}
    for name, rows in (("abnormal", abnormal), ("normal", normal)):
        picks[name] = [torch.topk(mags[v] * masks[name][j].double(), k).indices.tolist() for j, v in enumerate(rows)]
        video_score[name] = [sum(scores[v, i].item() for i in p) / k for v, p in zip(rows, picks[name])]
    bce = -sum(math.log(1 - s) for s in video_score["normal"]) - sum(math.log(s) for s in video_score["abnormal"])
    bce /= 2 * b
    l1 = {}
    for name, rows in (("abnormal", abnormal), ("normal", normal)):
        l1[name] = [
            [feats[v, c, i].abs().sum().item() for i in picks[name][j]]
            for c in range(n_crops)
            for j, v in enumerate(rows)
        ]

    def dist(x: list[float], y: list[float]) -> float:
        return math.sqrt(sum((a - c + 1e-6) ** 2 for a, c in zip(x, y)))

    r = len(l1["abnormal"])
    h = r // 2
    sep = sum(max(0.0, 200.0 - dist(a, n)) ** 2 for a, n in zip(l1["abnormal"], l1["normal"])) / r
    comp = {name: sum(dist(l1[name][h + i], l1[name][i]) ** 2 for i in range(h)) / h for name in l1}
    contrastive = 1e-3 * (1e-3 * sep + comp["abnormal"] + comp["normal"])
    sparse_rows = normal if variant == "current" else abnormal
    smooth_rows = normal + abnormal if variant == "current" else abnormal
    sparsity = 8e-3 * math.sqrt(sum(scores[v, i].item() ** 2 for v in sparse_rows for i in range(t)))
    if smoothness == "per_video":
        smooth = sum((scores[v, i + 1] - scores[v, i]).item() ** 2 for v in smooth_rows for i in range(t - 1))
    else:
        flat = [scores[v, i].item() for v in smooth_rows for i in range(t)]
        smooth = sum((flat[i + 1] - flat[i]) ** 2 for i in range(len(flat) - 1))
    return bce + contrastive + sparsity + 8e-4 * smooth


@pytest.mark.parametrize(
    ("variant", "smoothness", "p"),
    [("current", "per_video", 0.0), ("current", "flat", 0.7), ("paper", "flat", 0.7), ("paper", "per_video", 0.0)],
)
def test_loss_matches_formula_transcription(variant: str, smoothness: str, p: float) -> None:
    g = torch.Generator().manual_seed(5)
    b, n, t, f = 3, 4, 10, 6
    out = ModelOutput(
        scores=torch.rand(2 * b, t, generator=g) * 0.98 + 0.01,
        magnitudes=torch.rand(2 * b, t, generator=g),
        features=torch.randn(2 * b, n, t, f, generator=g) * 20,
        topk_dropout=p,
    )
    labels = [1, 0, 0, 1, 1, 0]  # classes interleaved: rows are paired by their order within each class
    torch.manual_seed(11)
    loss, _ = MGFNLoss(variant=variant, smoothness=smoothness)(out, torch.tensor(labels))
    torch.manual_seed(11)
    expected = reference_loss(out, labels, k=3, variant=variant, smoothness=smoothness)
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_topk_picks_the_largest_masked_magnitudes() -> None:
    t = 6
    scores = torch.tensor([[0.01, 0.02, 0.03, 0.04, 0.05, 0.06], [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]])
    magnitudes = torch.tensor([[5.0, 1.0, 4.0, 0.0, 3.0, 2.0], [0.0, 9.0, 1.0, 8.0, 2.0, 7.0]])
    out = ModelOutput(scores=scores, magnitudes=magnitudes, features=torch.zeros(2, 2, t, 1))
    _, terms = MGFNLoss()(out, torch.tensor([0, 1]))
    normal, abnormal = (0.01 + 0.03 + 0.05) / 3, (0.2 + 0.4 + 0.6) / 3  # snippets {0, 2, 4} and {1, 3, 5}
    expected = -(math.log(1 - normal) + math.log(abnormal)) / 2
    assert terms["classification"].item() == pytest.approx(expected, rel=1e-6)
    # training: the magnitudes are multiplied by dropout(ones), the abnormal videos' mask drawn first
    out.topk_dropout = 0.5
    torch.manual_seed(2)
    mask_abnormal = F.dropout(torch.ones(1, t), 0.5, training=True)
    mask_normal = F.dropout(torch.ones(1, t), 0.5, training=True)
    picks_n = torch.topk(magnitudes[0] * mask_normal[0], 3).indices
    picks_a = torch.topk(magnitudes[1] * mask_abnormal[0], 3).indices
    expected = -(torch.log(1 - scores[0, picks_n].mean()) + torch.log(scores[1, picks_a].mean())) / 2
    torch.manual_seed(2)
    _, terms = MGFNLoss()(out, torch.tensor([0, 1]))
    assert terms["classification"].item() == pytest.approx(expected.item(), rel=1e-6)


def test_batch_order_does_not_matter_within_classes(small_model: torch.nn.Module) -> None:
    x, labels = small_batch(b=2)
    order = torch.tensor([2, 0, 3, 1])  # abnormal, normal, abnormal, normal; class order kept
    small_model.eval()
    criterion = create_loss("mgfn")
    with torch.no_grad():
        out_a, out_b = small_model(x), small_model(x[order])
    for out in (out_a, out_b):
        out.topk_dropout = 0.7
    torch.manual_seed(4)
    loss_a, _ = criterion(out_a, labels)
    torch.manual_seed(4)
    loss_b, _ = criterion(out_b, labels[order])
    assert loss_a.item() == pytest.approx(loss_b.item(), rel=1e-6)


@pytest.mark.parametrize(
    ("labels", "message"),
    [([0, 0, 0, 0], "both normal and abnormal"), ([0, 0, 0, 1], "one to one"), ([0, 2, 1, 1], "must be 0")],
)
def test_bad_batches(labels: list[int], message: str) -> None:
    out = ModelOutput(scores=torch.full((4, 5), 0.5), magnitudes=torch.rand(4, 5), features=torch.rand(4, 2, 5, 3))
    with pytest.raises(ValueError, match=message):
        MGFNLoss()(out, torch.tensor(labels))


def test_odd_row_count_and_short_videos_are_rejected() -> None:
    out = ModelOutput(scores=torch.full((2, 5), 0.5), magnitudes=torch.rand(2, 5), features=torch.rand(2, 5, 5, 3))
    with pytest.raises(ValueError, match="even count"):
        MGFNLoss()(out, torch.tensor([0, 1]))
    out = ModelOutput(scores=torch.full((2, 2), 0.5), magnitudes=torch.rand(2, 2), features=torch.rand(2, 2, 2, 3))
    with pytest.raises(ValueError, match="k=3"):
        MGFNLoss()(out, torch.tensor([0, 1]))


@pytest.mark.parametrize(("kwargs", "message"), [({"variant": "v2"}, "variant"), ({"smoothness": "avg"}, "smoothness")])
def test_unknown_loss_options(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        create_loss("mgfn", **kwargs)
