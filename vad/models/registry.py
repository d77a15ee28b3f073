"""Model registry: ``create_model``, ``create_loss``, ``list_models`` and strict loading of the authors' weights.

Each model folder registers itself with :func:`register_model`, naming its model class, its loss class, how the
authors' checkpoint keys map onto ours (identity by default: our layout *is* the authors' layout), and what the
rest of the toolkit must know about it: its resampling of training videos, its own ``data.*`` options, and the
optional hooks that prepare per-dataset state once (S3R's dictionary) and attach it to a model. The config,
preparation, training and manifest code call these hooks (:func:`prepare_model_state`, :func:`attach_state`,
:func:`state_arguments`) and never test a model's name.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor, nn

from vad.coerce import Limit

ModelState = dict[str, np.ndarray]
"""Per-dataset state a model prepares once (named arrays, saved beside the prepared-data manifest)."""


@dataclass(frozen=True)
class DataOption:
    """One ``data.<name>`` option a model owns: its type and default (set in configs and search spaces)."""

    type: type
    default: Any
    help: str = ""
    limit: Limit | None = None
    """Its allowed values (checked with the config, before any work); ``None``: any value of ``type``."""


@dataclass(frozen=True)
class PrepareContext:
    """What a model's ``prepare`` hook reads: the resampled training cache and the training split.

    ``features``: ``(V, N, T, C)`` float32 (memory-mapped); ``labels``: ``(V,)`` 0 normal / 1 abnormal;
    ``train_rows``: ``(V_train,)`` rows of the training split (validation videos are never seen);
    ``inputs_key``: names the cache and the rows (a key for the hook's own disk cache);
    ``options``: the model's ``data`` options, every default filled in.
    """

    features: np.ndarray
    labels: np.ndarray
    train_rows: np.ndarray
    inputs_key: str
    options: Mapping[str, Any]

    @property
    def normal_rows(self) -> np.ndarray:
        """``(V_normal,)`` rows of the training split's normal videos."""
        return self.train_rows[np.asarray(self.labels)[self.train_rows] == 0]


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
    resample: str = "mean"
    """How training videos are resampled to ``n_segments`` when ``data.resample`` is unset (``mean``/``linear``)."""
    data_options: Mapping[str, DataOption] = field(default_factory=dict)
    """``data.*`` options of this model only (S3R: ``dictionary_ratio``)."""
    prepare: Callable[[PrepareContext], ModelState] | None = None
    """Run once per dataset and data settings, before training or a sweep; its result is cached by the manifest."""
    attach: Callable[[nn.Module, Mapping[str, np.ndarray]], None] | None = None
    """Give a freshly built model its prepared state (S3R: ``set_dictionary``)."""
    state_arguments: Callable[[Mapping[str, np.ndarray]], dict[str, Any]] | None = None
    """Constructor arguments the prepared state fixes (S3R: ``n_atoms`` = the dictionary's rows)."""


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


def data_options(name: str) -> dict[str, DataOption]:
    """The ``data.*`` options model ``name`` owns (empty for most models)."""
    return dict(get_entry(name).data_options)


def prepare_model_state(name: str, context: PrepareContext) -> ModelState:
    """Run model ``name``'s ``prepare`` hook (an empty state when it has none)."""
    entry = get_entry(name)
    if entry.prepare is None:
        return {}
    state = entry.prepare(context)
    return {key: np.asarray(value) for key, value in state.items()}


def state_arguments(name: str, state: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """The constructor arguments fixed by model ``name``'s prepared ``state`` (empty without state or hook)."""
    entry = get_entry(name)
    return dict(entry.state_arguments(state)) if state and entry.state_arguments is not None else {}


def attach_state(model: nn.Module, state: Mapping[str, np.ndarray]) -> None:
    """Give ``model`` its prepared ``state`` through its entry's ``attach`` hook (a no-op without state)."""
    if not state:
        return
    entry = entry_for(model)
    if entry.attach is None:
        raise TypeError(f"{entry.name!r} takes no prepared state; got {', '.join(sorted(state))}")
    entry.attach(model, state)


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
    from vad.checkpoint import read_torch_file

    path = Path(path)
    state = read_torch_file(path, "PyTorch weights file")
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
    model_state: Mapping[str, np.ndarray | Tensor] | None = None,
    dictionary: Tensor | np.ndarray | None = None,
) -> LoadReport:
    """Load the authors' weights (their key layout, optional ``module.`` prefix) into ``model``, strictly.

    Every key must be used or be on the model's documented list of known-unused keys; every shape must match;
    every key our model needs (except the ones that never live in the authors' files) must be present.
    ``model_state``: the model's prepared state, attached first (the entry's ``attach`` hook), for the keys the
    authors' files never hold; ``dictionary=D`` is S3R's shorthand for ``model_state={"dictionary": D}``.
    ``state_dict`` may be a path (loaded weights-only).
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
        model_state = {**(model_state or {}), "dictionary": dictionary}
    if model_state:
        attach_state(model, {k: np.asarray(v.cpu() if isinstance(v, Tensor) else v) for k, v in model_state.items()})
        own = model.state_dict()  # now holding the attached state
    model.load_state_dict({**own, **foreign}, strict=True)
    return LoadReport(loaded=sorted(foreign), dropped_unused=dropped)


def _describe(model: nn.Module) -> str:
    parts = [f"{k}={getattr(model, k)}" for k in ("feature_dim", "n_crops") if hasattr(model, k)]
    return ", ".join(parts) or type(model).__name__
