"""The typed, validated training configuration: sections ``data``, ``model``, ``loss``, ``optim``, ``train``.

``model`` and ``loss`` take the constructor argument names of the chosen model and loss (checked against the
registry), so a search space can vary ``model.dropout`` or ``loss.smoothness_weight`` by name. Unknown keys and
wrong types are errors naming the key (and the file). The resolved config (every default filled in) is what
checkpoints and results store.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from vad.coerce import (
    NON_NEGATIVE,
    POSITIVE,
    POSITIVE_INT,
    ConfigError,
    Limit,
    coerce,
    coerce_kwargs,
    signature_hints,
)
from vad.metrics.catalogue import selectable_metrics
from vad.yaml_file import load_yaml

SECTIONS = ("data", "model", "loss", "optim", "train")
SelectionMetric = Literal[tuple(selectable_metrics())]  # type: ignore[valid-type]
"""The metrics that may choose a checkpoint: the catalogue's selectable ones."""


@dataclass
class DataConfig:
    """Which features to train on and how training videos are resampled."""

    dataset: str = "synthetic:demo"
    """Path to a ``dataset.yaml`` (relative to the config file) or ``synthetic:<preset>`` (generated on first use)."""
    n_segments: int = 32
    resample: Literal["mean", "linear"] | None = None
    """``mean`` or ``linear``; ``None`` picks the model's own (its registry entry's ``resample``)."""
    val_fraction: float | None = None
    """Share of training videos held out for validation; ``None`` takes the dataset's default (10% UCF, 20% XD)."""
    split_seed: int = 0
    options: dict[str, Any] = field(default_factory=dict)
    """The model's own ``data.*`` options (its registry entry's ``data_options``, e.g. S3R's
    ``dictionary_ratio``), defaults filled in. Written flat in YAML (``data.dictionary_ratio``) and readable as
    attributes (``config.data.dictionary_ratio``)."""

    def __getattr__(self, name: str) -> Any:
        options = self.__dict__.get("options", {})
        if name in options:
            return options[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")


@dataclass
class OptimConfig:
    """Optimizer settings (the papers all use Adam)."""

    name: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = 1e-3
    weight_decay: float = 5e-3
    betas: tuple[float, float] = (0.9, 0.999)
    momentum: float = 0.9
    """SGD only."""
    scheduler: Literal["none", "cosine"] = "none"
    fused: bool = True
    """Adam/AdamW's fused kernel (the same update, 3-10x faster per step on the CPU; equal up to float rounding)."""


@dataclass
class TrainSection:
    """The loop: schedule, selection, early stopping, device."""

    epochs: int = 100
    batch_per_class: int = 32
    steps_per_epoch: int | None = None
    """``None``: an epoch is one pass over the training videos; an int reproduces the papers' iteration counts."""
    selection: SelectionMetric = "val_loss"
    """A selectable catalogue metric (``vad.metrics.catalogue.selectable_metrics()``); ``test_auc``/``test_ap``
    select on the test set: the original papers' protocol, a labelled diagnostic."""
    selection_rule: Literal["min", "moving_average", "ema"] = "min"
    """How the selection metric's per-epoch values are smoothed before the best epoch is chosen (see
    :mod:`vad.selection`): ``min`` the raw values, ``moving_average`` over ``selection_window`` epochs, ``ema``
    with ``selection_ema``. ``min`` is the default by evidence: on ``synthetic:ucf-like`` no smoothing rule beat it
    beyond seed noise (``benchmarks/selection.py``, ``## selection`` of ``benchmarks/RESULTS.md``)."""
    selection_window: int = 3
    selection_ema: float = 0.5
    """The EMA's weight of the newest epoch, in (0, 1]."""
    patience: int | None = None
    """Stop after this many epochs without improvement of the rule's value (``None``: never)."""
    min_delta: float = 0.0
    """An improvement must beat the best value so far by more than this (absolute)."""
    reference_loss: dict[str, Any] | None = None
    """Loss arguments of the reference objective reported as ``val_ref_loss`` (a sweep sets the base config's
    ``loss`` section, so every trial is scored by one function); ``None``: this run's own ``loss``."""
    test_every_epoch: bool = False
    """Also compute frame-level test metrics every epoch (forced on by the ``test_*`` selections)."""
    threshold: float = 0.5
    seed: int = 0
    device: str = "auto"
    """``auto`` (CUDA when available, else CPU), ``cpu``, ``cuda`` or ``cuda:N``."""
    precision: Literal["fp32", "bf16"] = "fp32"
    """``bf16`` autocast on CUDA (ignored with a warning on CPU)."""
    data_on_device: bool = True
    """Keep the resampled training array on the accelerator (no host-to-device copy per step)."""
    num_threads: int | None = None
    """CPU threads for torch (``None``: leave torch's default)."""
    evaluate_selected: Literal["end", "on_improvement"] = "end"
    """When the selected checkpoint meets the test set: once at the ``end``, or each time the selection improves
    (``on_improvement``: a run stopped early, e.g. by ASHA, still has the test metrics of its selected checkpoint,
    reported as ``selected_<metric>``). Selection never looks at these numbers."""

    def __post_init__(self) -> None:
        if self.selection_window < 1:
            raise ConfigError(f"train.selection_window: must be at least 1, got {self.selection_window}")
        if not 0.0 < self.selection_ema <= 1.0:
            raise ConfigError(f"train.selection_ema: must lie in (0, 1], got {self.selection_ema}")
        if self.min_delta < 0:
            raise ConfigError(f"train.min_delta: must not be negative, got {self.min_delta}")


@dataclass
class TrainConfig:
    """The whole run: ``data``, ``model`` (``name`` + constructor args), ``loss`` args, ``optim``, ``train``."""

    model_name: str
    data: DataConfig = field(default_factory=DataConfig)
    model: dict[str, Any] = field(default_factory=dict)
    loss: dict[str, Any] = field(default_factory=dict)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainSection = field(default_factory=TrainSection)
    source: str | None = None
    """The YAML file this config came from (dataset paths are relative to its folder)."""

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str | Path | None = None) -> TrainConfig:
        """Validate a nested mapping; unknown sections/keys and wrong types raise :class:`ConfigError`."""
        where = f"{source}: " if source else ""
        try:
            return cls._from_dict(data, source)
        except ConfigError as exc:
            raise ConfigError(f"{where}{exc}") from None

    @classmethod
    def _from_dict(cls, data: dict[str, Any], source: str | Path | None) -> TrainConfig:
        from vad.models.registry import get_entry, list_models

        if not isinstance(data, dict):
            raise ConfigError(f"expected a mapping with sections {', '.join(SECTIONS)}, got {type(data).__name__}")
        unknown = sorted(set(data) - set(SECTIONS))
        if unknown:
            raise ConfigError(f"unknown section(s) {', '.join(unknown)}; known: {', '.join(SECTIONS)}")
        for name in SECTIONS:
            if data.get(name) is not None and not isinstance(data[name], dict):
                raise ConfigError(f"{name}: expected a mapping, got {type(data[name]).__name__}")
        model = dict(data.get("model") or {})
        if "name" not in model:
            raise ConfigError(f"model.name: missing (one of the registered models: {', '.join(list_models())})")
        name = model.pop("name")
        try:
            entry = get_entry(name)
        except KeyError as exc:
            raise ConfigError(f"model.name: {exc.args[0]}") from None
        config = cls(
            model_name=name,
            data=_data_section(data.get("data"), name),
            model=coerce_kwargs(model, entry.model_cls, "model"),
            loss=coerce_kwargs(dict(data.get("loss") or {}), entry.loss_cls, "loss"),
            optim=_section(OptimConfig, data.get("optim"), "optim"),
            train=_reference_loss(_section(TrainSection, data.get("train"), "train"), entry.loss_cls),
            source=str(source) if source else None,
        )
        if config.k > config.data.n_segments:
            raise ConfigError(f"loss.k: {config.k} snippets cannot be picked from data.n_segments="
                              f"{config.data.n_segments}; lower loss.k or raise data.n_segments")
        return config

    @classmethod
    def from_yaml(cls, path: str | Path, overrides: dict[str, Any] | None = None) -> TrainConfig:
        """Read a config file (``yaml.safe_load``), apply dotted ``overrides`` and validate."""
        path = Path(path).expanduser().resolve()
        data = load_yaml(path, "config file")
        if overrides:
            data = apply_overrides(data or {}, overrides, source=path)
        return cls.from_dict(data, source=path)

    # ------------------------------------------------------------------ views
    def to_dict(self) -> dict[str, Any]:
        """Nested plain values (tuples as lists), loadable again with :meth:`from_dict`."""
        out = {
            "data": _flat_data(self.data),
            "model": {"name": self.model_name, **self.model},
            "loss": dict(self.loss),
            "optim": dataclasses.asdict(self.optim),
            "train": dataclasses.asdict(self.train),
        }
        return _plain(out)

    def flat(self) -> dict[str, Any]:
        """``{"optim.lr": 0.001, "model.dropout": 0.7, ...}``: dotted names, as search spaces and MLflow use them."""
        return {f"{section}.{k}": v for section, values in self.to_dict().items() for k, v in values.items()}

    def with_overrides(self, overrides: dict[str, Any]) -> TrainConfig:
        """A new config with dotted ``overrides`` applied and validated again."""
        return TrainConfig.from_dict(apply_overrides(self.to_dict(), overrides), source=self.source)

    def resolved(self, feature_dim: int, n_crops: int) -> TrainConfig:
        """Fill every model/loss default (and the dataset's width and crops); mismatches name the key."""
        from vad.models.registry import get_entry

        entry = get_entry(self.model_name)
        model = {k: default for k, (_, default) in signature_hints(entry.model_cls).items()}
        model.update(feature_dim=feature_dim, n_crops=n_crops)
        for key, expected in (("feature_dim", feature_dim), ("n_crops", n_crops)):
            if key in self.model and self.model[key] != expected:
                raise ConfigError(
                    f"model.{key}: the config says {self.model[key]} but the dataset has {expected}"
                )
        model.update(self.model)
        loss = {k: default for k, (_, default) in signature_hints(entry.loss_cls).items()}
        loss.update(self.loss)
        out = copy.deepcopy(self)
        out.model, out.loss = _plain(model), _plain(loss)
        out.model = coerce_kwargs(out.model, entry.model_cls, "model")
        out.loss = coerce_kwargs(out.loss, entry.loss_cls, "loss")
        return out

    @property
    def resample_method(self) -> str:
        """The resampling of training videos: the configured one, else the model's (S3R: linear)."""
        from vad.models.registry import get_entry

        return self.data.resample or get_entry(self.model_name).resample

    @property
    def k(self) -> int:
        """The top-k size used for video scores (the loss's ``k``, else 3)."""
        return int(self.loss.get("k", 3))


SECTION_LIMITS: dict[str, Limit] = {
    "data.n_segments": POSITIVE_INT,
    "data.val_fraction": Limit(0.0, 1.0, low_open=True, high_open=True),
    "optim.lr": POSITIVE,
    "optim.weight_decay": NON_NEGATIVE,
    "optim.betas": Limit(0.0, 1.0, high_open=True),
    "optim.momentum": NON_NEGATIVE,
    "train.epochs": POSITIVE_INT,
    "train.batch_per_class": POSITIVE_INT,
    "train.steps_per_epoch": POSITIVE_INT,
    "train.patience": POSITIVE_INT,
    "train.min_delta": NON_NEGATIVE,
    "train.threshold": Limit(0.0, 1.0, low_open=True, high_open=True),
    "train.num_threads": POSITIVE_INT,
}
"""The ranges of the generic sections' values (``None`` always allowed), checked by :func:`_section` before any
work; models and losses declare theirs as ``ARG_LIMITS`` (:func:`vad.coerce.check_limits`)."""


def _section(cls: type, values: dict[str, Any] | None, name: str) -> Any:
    values = dict(values or {})
    hints = signature_hints(cls)
    unknown = sorted(set(values) - set(hints))
    if unknown:
        raise ConfigError(
            f"unknown key(s) {', '.join(f'{name}.{k}' for k in unknown)}; known: {', '.join(sorted(hints))}"
        )
    coerced = {k: coerce(v, hints[k][0], f"{name}.{k}") for k, v in values.items()}
    for key, value in coerced.items():
        limit = SECTION_LIMITS.get(f"{name}.{key}")
        if limit is not None and (why := limit.problem(value)) is not None:
            raise ConfigError(f"{name}.{key}: {why}")
    return cls(**coerced)


def _data_section(values: dict[str, Any] | None, model_name: str) -> DataConfig:
    """The ``data`` section: the generic keys plus the options model ``model_name`` declares in its entry."""
    from vad.models.registry import get_entry, list_models

    values = dict(values or {})
    declared = get_entry(model_name).data_options
    own = {k: values.pop(k) for k in list(values) if k in declared}
    for key in [k for k in values if k == "options" or k not in signature_hints(DataConfig)]:
        owners = [m for m in list_models() if key in get_entry(m).data_options]
        if owners and values[key] == get_entry(owners[0]).data_options[key].default:
            del values[key]  # configs stored before options moved to their models carry S3R's default everywhere
        elif owners:
            raise ConfigError(f"data.{key}: an option of model {', '.join(owners)}, not of {model_name}")
        else:
            known = sorted({*signature_hints(DataConfig), *declared} - {"options"})
            raise ConfigError(f"unknown key data.{key}; known: {', '.join(known)}")
    section = _section(DataConfig, values, "data")
    section.options = {k: option.default for k, option in declared.items()}
    section.options.update({k: coerce(v, declared[k].type, f"data.{k}") for k, v in own.items()})
    for key, value in section.options.items():
        limit = declared[key].limit
        if limit is not None and (why := limit.problem(value)) is not None:
            raise ConfigError(f"data.{key}: {why} (the limit model {model_name} declares)")
    return section


def _flat_data(data: DataConfig) -> dict[str, Any]:
    out = dataclasses.asdict(data)
    out.update(out.pop("options"))
    return out


def _reference_loss(train: TrainSection, loss_cls: type) -> TrainSection:
    """``train.reference_loss`` checked against the model's loss arguments, like the ``loss`` section."""
    if train.reference_loss is not None:
        train.reference_loss = coerce_kwargs(dict(train.reference_loss), loss_cls, "train.reference_loss")
    return train


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def apply_overrides(data: dict[str, Any], overrides: dict[str, Any], source: str | Path | None = None) -> dict:
    """Set dotted keys (``"optim.lr"``) in a nested config mapping; the section must exist in :data:`SECTIONS`."""
    out = copy.deepcopy(data)
    for dotted, value in overrides.items():
        section, _, key = dotted.partition(".")
        if section not in SECTIONS or not key:
            where = f"{source}: " if source else ""
            raise ConfigError(f"{where}{dotted}: expected <section>.<key> with section in {', '.join(SECTIONS)}")
        target = out.setdefault(section, {}) or {}
        out[section] = target
        target[key] = value
    return out


def parse_set_arguments(items: list[str]) -> dict[str, Any]:
    """``["optim.lr=1e-4", "model.depths=[2,2,1]"]`` -> ``{"optim.lr": 1e-4, "model.depths": [2, 2, 1]}``."""
    out = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected key=value, e.g. optim.lr=1e-4")
        try:
            out[key.strip()] = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise ConfigError(f"--set {item!r}: not a YAML value ({str(exc).splitlines()[0]})") from None
    return out
