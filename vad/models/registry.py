"""Model registry: ``create_model``, ``create_loss``, ``list_models`` and strict loading of the authors' weights.

Each model folder registers itself with :func:`register_model`, naming its model class, its loss class and how
the authors' checkpoint keys map onto ours (identity by default: our layout *is* the authors' layout).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class ModelEntry:
    """Everything the toolkit knows about one model family."""

    name: str
    model_cls: type[nn.Module]
    loss_cls: type[nn.Module]
    known_unused_keys: tuple[str, ...] = ()
    """Key prefixes present in the authors' checkpoints that our model deliberately does not hold."""
    own_only_keys: tuple[str, ...] = ()
    """Keys of our state_dict that the authors' checkpoints never contain (S3R's dictionary buffer)."""
    map_original_keys: Callable[[dict[str, Tensor]], dict[str, Tensor]] | None = None
    """Renames foreign keys into ours; ``None`` when the layouts already agree."""


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(entry: ModelEntry) -> ModelEntry:
    """Add a model family to the registry (called once by each model package)."""
    if entry.name in _REGISTRY and _REGISTRY[entry.name] != entry:
        raise ValueError(f"model {entry.name!r} is already registered")
    _REGISTRY[entry.name] = entry
    return entry


def list_models() -> list[str]:
    """Names accepted by :func:`create_model` and :func:`create_loss`, sorted."""
    return sorted(_REGISTRY)


def get_entry(name: str) -> ModelEntry:
    """The registry entry for ``name``; a clear error listing the known names otherwise."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; known models: {', '.join(list_models())}") from None


def entry_for(model: nn.Module) -> ModelEntry:
    """The registry entry whose model class built ``model``."""
    for entry in _REGISTRY.values():
        if type(model) is entry.model_cls:
            return entry
    raise TypeError(f"{type(model).__name__} is not a registered model class")


def _check_kwargs(cls: type, name: str, what: str, overrides: Mapping[str, object]) -> None:
    accepted = set(_defaults(cls))
    unknown = sorted(set(overrides) - accepted)
    if unknown:
        raise TypeError(
            f"unknown {what} argument(s) for {name!r}: {', '.join(unknown)}; "
            f"accepted: {', '.join(sorted(accepted))}"
        )


def model_arguments(name: str) -> dict[str, object]:
    """The constructor keyword arguments of model ``name`` with their defaults (what configs may set)."""
    return _defaults(get_entry(name).model_cls)


def loss_arguments(name: str) -> dict[str, object]:
    """The constructor keyword arguments of loss ``name`` with their defaults."""
    return _defaults(get_entry(name).loss_cls)


def _defaults(cls: type) -> dict[str, object]:
    params = inspect.signature(cls.__init__).parameters
    return {p: v.default for p, v in params.items() if p != "self" and v.kind in
            (v.KEYWORD_ONLY, v.POSITIONAL_OR_KEYWORD)}


def create_model(name: str, **overrides: object) -> nn.Module:
    """Build model ``name`` with the authors' defaults, overridden by keyword: ``create_model("rtfm", dropout=0.5)``."""
    entry = get_entry(name)
    _check_kwargs(entry.model_cls, name, "model", overrides)
    return entry.model_cls(**overrides)


def create_loss(name: str, **overrides: object) -> nn.Module:
    """Build the training objective of model ``name``; ``loss, terms = criterion(output, labels)``."""
    entry = get_entry(name)
    _check_kwargs(entry.loss_cls, name, "loss", overrides)
    return entry.loss_cls(**overrides)


def read_checkpoint(path: str | Path) -> dict[str, Tensor]:
    """Load a plain state_dict file safely (``weights_only=True``) on the CPU."""
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise FileNotFoundError(f"checkpoint not found: {path}") from None
    except Exception as exc:  # pickle errors, non-weights content
        raise ValueError(f"{path}: not a loadable weights-only state_dict ({exc})") from exc
    if isinstance(state, Mapping) and "state_dict" in state and isinstance(state["state_dict"], Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping):
        raise ValueError(f"{path}: expected a state_dict (a mapping of tensors), got {type(state).__name__}")
    return dict(state)


@dataclass
class LoadReport:
    """What :func:`load_original_weights` did: keys loaded and known-unused keys it dropped."""

    loaded: list[str]
    dropped_unused: list[str]


def load_original_weights(
    model: nn.Module,
    state_dict: Mapping[str, Tensor] | str | Path,
    *,
    dictionary: Tensor | None = None,
) -> LoadReport:
    """Load the authors' weights (their key layout, optional ``module.`` prefix) into ``model``, strictly.

    Every key must be used or be on the model's documented list of known-unused keys; every shape must match;
    every key our model needs (except the ones that never live in the authors' files) must be present.
    S3R also takes its ``(n_atoms, C)`` ``dictionary``. ``state_dict`` may be a path (loaded weights-only).
    """
    entry = entry_for(model)
    if isinstance(state_dict, (str, Path)):
        state_dict = read_checkpoint(state_dict)
    foreign = {(k[len("module."):] if k.startswith("module.") else k): v for k, v in state_dict.items()}
    if entry.map_original_keys is not None:
        foreign = entry.map_original_keys(foreign)
    own = model.state_dict()
    # keys the authors save but never use are dropped only when this model does not hold them
    dropped = sorted(k for k in foreign if entry.known_unused_keys and k.startswith(entry.known_unused_keys)
                     and k not in own)
    foreign = {k: v for k, v in foreign.items() if k not in set(dropped)}

    expected = {k for k in own if not (entry.own_only_keys and k.startswith(entry.own_only_keys))}
    missing = sorted(expected - set(foreign))
    unexpected = sorted(set(foreign) - set(own))
    problems = []
    if missing:
        problems.append(f"missing {len(missing)} key(s): {', '.join(missing[:8])}{' ...' if len(missing) > 8 else ''}")
    if unexpected:
        problems.append(
            f"unexpected {len(unexpected)} key(s): {', '.join(unexpected[:8])}{' ...' if len(unexpected) > 8 else ''}"
        )
    for key in sorted(expected & set(foreign)):
        if tuple(foreign[key].shape) != tuple(own[key].shape):
            problems.append(
                f"{key}: checkpoint shape {tuple(foreign[key].shape)}, model expects {tuple(own[key].shape)}"
            )
    if problems:
        raise ValueError(
            f"these weights do not fit {entry.name!r} "
            f"({_describe(model)}): " + "; ".join(problems[:12])
        )
    if dictionary is not None:
        if not hasattr(model, "set_dictionary"):
            raise TypeError(f"{entry.name!r} has no dictionary; do not pass dictionary=")
        model.set_dictionary(torch.as_tensor(dictionary))
        own = model.state_dict()  # now holding the new dictionary
    model.load_state_dict({**own, **foreign}, strict=True)
    return LoadReport(loaded=sorted(foreign), dropped_unused=dropped)


def _describe(model: nn.Module) -> str:
    parts = [f"{k}={getattr(model, k)}" for k in ("feature_dim", "n_crops") if hasattr(model, k)]
    return ", ".join(parts) or type(model).__name__
