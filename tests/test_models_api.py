"""The public model API, the same for every registered model (issue 3's contract): every test runs over
``list_models()``, so a new model folder is checked here without editing this file."""

import io

import numpy as np
import pytest
import torch

from vad.models import (
    ModelOutput,
    create_loss,
    create_model,
    list_models,
    load_original_weights,
    loss_arguments,
    model_arguments,
)
from vad.models.registry import PrepareContext, attach_state, get_entry, prepare_model_state, state_arguments

MODELS = list_models()
SMALL = {  # smaller than the defaults, to keep these tests fast; a model not named here is built at its defaults
    "rtfm": {"hidden_dim": 16, "head_dims": [8, 4]},
    "mgfn": {"dims": [16, 32], "depths": [1, 1], "block_types": ["glance", "focus"], "dim_head": 8},
    "mil": {"hidden_dims": [16, 8]},
}


def prepared_state(name: str, feature_dim: int) -> dict[str, np.ndarray]:
    """The model's prepared state for 12 normal + 12 abnormal random videos, through its own hook."""
    rng = np.random.default_rng(0)
    context = PrepareContext(features=rng.random((24, 2, 8, feature_dim), dtype=np.float32),
                             labels=np.repeat([0, 1], 12), train_rows=np.arange(24),
                             inputs_key=f"test-models-api-{feature_dim}",
                             options={k: o.default for k, o in get_entry(name).data_options.items()})
    return prepare_model_state(name, context)


def small_model(name: str, feature_dim: int = 32, n_crops: int = 2) -> torch.nn.Module:
    state = prepared_state(name, feature_dim)
    torch.manual_seed(0)
    model = create_model(name, feature_dim=feature_dim, n_crops=n_crops, **SMALL.get(name, {}),
                         **state_arguments(name, state))
    attach_state(model, state)
    return model


def test_the_paper_models_and_the_baseline_are_registered():
    assert {"mgfn", "mil", "rtfm", "s3r"} <= set(MODELS) and MODELS == sorted(MODELS)


@pytest.mark.parametrize("name", MODELS)
def test_every_hyperparameter_is_a_keyword_with_a_default(name):
    for arguments in (model_arguments(name), loss_arguments(name)):
        assert arguments and all(value is not inspect_empty() for value in arguments.values())
    assert {"feature_dim", "n_crops", "dropout"} <= set(model_arguments(name))
    assert {"sparsity_weight", "smoothness_weight"} <= set(loss_arguments(name))


@pytest.mark.parametrize("name", MODELS)
def test_entry_declares_resampling_typed_data_options_and_consistent_hooks(name):
    entry = get_entry(name)
    assert entry.resample in ("mean", "linear")
    for option in entry.data_options.values():
        assert isinstance(option.default, option.type)
    # a model that prepares state must say how to attach it; one that does not has nothing to attach
    assert (entry.prepare is None) == (entry.attach is None)
    state = prepared_state(name, 16)
    assert bool(state) == (entry.prepare is not None)
    assert set(state_arguments(name, state)) <= set(model_arguments(name))


def inspect_empty():
    import inspect

    return inspect.Parameter.empty


@pytest.mark.parametrize("name", MODELS)
def test_forward_loss_and_gradients(name):
    model = small_model(name)
    x = torch.rand(4, 2, 12, 32)
    labels = torch.tensor([0, 0, 1, 1])
    model.train()
    out = model(x)
    assert isinstance(out, ModelOutput)
    assert out.scores.shape == (4, 12) and out.magnitudes.shape == (4, 12)
    assert out.features.shape[:3] == (4, 2, 12)
    assert torch.isfinite(out.scores).all() and ((out.scores >= 0) & (out.scores <= 1)).all()
    torch.testing.assert_close(out.magnitudes, out.features.norm(dim=-1).mean(dim=1))
    loss, terms = create_loss(name)(out, labels)
    assert loss.ndim == 0 and torch.isfinite(loss)
    torch.testing.assert_close(sum(terms.values()), loss)
    loss.backward()
    unused = get_entry(name).known_unused_keys
    for key, param in model.named_parameters():
        if unused and key.startswith(unused):
            continue
        assert param.grad is not None, f"{name}: {key} got no gradient"


@pytest.mark.parametrize("name", MODELS)
def test_state_dict_round_trip_and_original_layout(name):
    model = small_model(name).eval()
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    clone = small_model(name)
    for p in clone.parameters():
        torch.nn.init.zeros_(p)
    own_only = get_entry(name).own_only_keys
    foreign = {f"module.{k}": v for k, v in state.items() if not (own_only and k.startswith(own_only))}
    load_original_weights(clone, foreign)  # own-only keys (prepared state) come from the clone's own hook
    clone.eval()
    x = torch.rand(1, 2, 9, 32)
    torch.testing.assert_close(clone(x).scores, model(x).scores)


@pytest.mark.parametrize("name", MODELS)
def test_wrong_width_or_crops_is_a_clear_error(name):
    model = small_model(name)
    with pytest.raises(ValueError, match="32"):
        model(torch.rand(2, 2, 8, 33))
    with pytest.raises(ValueError, match="crop|n_crops|N"):
        model(torch.rand(2, 3, 8, 32))


@pytest.mark.parametrize("name", MODELS)
def test_weights_of_another_model_or_width_are_refused(name):
    other = next(model for model in MODELS if model != name)
    with pytest.raises(ValueError, match="do not fit"):
        load_original_weights(small_model(name), small_model(other).state_dict())
    with pytest.raises(ValueError, match="shape"):
        load_original_weights(small_model(name, feature_dim=32), small_model(name, feature_dim=64).state_dict())


@pytest.mark.parametrize("name", MODELS)
def test_one_class_batches_are_refused_by_the_loss(name):
    out = small_model(name)(torch.rand(2, 2, 8, 32))
    with pytest.raises(ValueError, match="both normal and abnormal"):
        create_loss(name)(out, torch.tensor([1, 1]))


def test_unknown_arguments_name_themselves():
    with pytest.raises(TypeError, match="droput"):
        create_model("rtfm", droput=0.5)
    with pytest.raises(TypeError, match="marginn"):
        create_loss("mgfn", marginn=1.0)
    with pytest.raises(KeyError, match="known models"):
        create_model("rtfmx")
