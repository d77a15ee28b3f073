"""Search-space files (``spaces/*.yaml``) read into a validated :class:`SearchSpace`, before any trial starts.

```yaml
base: ../configs/rtfm_ucf.yaml        # the base config (relative to this file); its values are the baseline
dataset: null                         # optional: replaces the base config's data.dataset
smoke_dataset: synthetic:ucf-shaped   # optional: what --smoke-test trains on (derived from the model width else)
fixed: {train.steps_per_epoch: 50}    # optional: dotted config values set for every trial (not searched)
search: {sampler: tpe, num_samples: 60, epochs: 100, metric: val_ref_loss, mode: min, seed: 0, checkpoint_every: 1,
         selection_rule: null, selection_window: null, selection_ema: null, min_delta: null}   # null: the base's
scheduler: {name: asha, grace_period: 10, reduction_factor: 3}
resources: {cpus_per_trial: 2, gpus_per_trial: 0.25, max_concurrent: null}
confirm: {top: 3, seeds: 3}           # optional: after the search, the top 3 (+ paper default) x 3 new seeds
params:                               # dotted config names of the model/loss/optim/train sections
  optim.weight_decay: {loguniform: [5.0e-5, 5.0e-2]}
  model.dropout: {uniform: [0.3, 0.8]}
  loss.k: {int: [2, 6]}
  model.dilations: {choice: [[1, 2, 4], [1, 2], [1]]}
```

A leaf is ``{loguniform: [lo, hi]}``, ``{uniform: [lo, hi]}``, ``{int: [lo, hi]}``, ``{choice: [...]}`` or
``{grid: [...]}`` (every leaf ``grid``: Optuna's GridSampler runs exactly the grid). The base config's own value of
every searched key (the paper default) must lie in its range: it is evaluated first. Every error names the file
and the key.

The ranking is honest by construction: every trial selects its checkpoint with ``search.metric`` (its
``train.selection``) under the space's selection rule, and is ranked by that metric's value at the selected
checkpoint; every trial gets the base config's loss settings as ``train.reference_loss``, so ``val_ref_loss`` is one
function for the whole sweep. A space that searches ``loss.*`` and ranks on ``val_loss`` (the trained objective,
which moves with the searched values) is refused, and so is a test-set metric unless loaded with
``diagnostic=True`` (``--diagnostic``: the papers' test-selected protocol, tagged ``protocol=test-selected``).
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from vad.config import ConfigError, TrainConfig
from vad.metrics.catalogue import get_metric, selectable_metrics
from vad.models import loss_arguments, model_arguments
from vad.yaml_file import read_yaml

KINDS = ("loguniform", "uniform", "int", "choice", "grid")
SAMPLERS = ("tpe", "random", "grid")
SCHEDULERS = ("asha", "fifo")
METRIC_MODES = selectable_metrics()
"""Metrics a sweep may rank on and their direction (from the catalogue; test-set ones need ``diagnostic``)."""
COMPARABLE_METRICS = ("val_ref_loss", "val_video_auc", "val_video_ap")
"""Validation metrics that do not move with the searched loss settings (the choices offered when refusing)."""
SELECTION_KEYS = {"selection_rule": "train.selection_rule", "selection_window": "train.selection_window",
                  "selection_ema": "train.selection_ema", "min_delta": "train.min_delta"}
"""``search.<key>`` -> the trials' ``train.<key>``: the rule that picks each trial's checkpoint and ranked value."""
SEARCHABLE_SECTIONS = ("model", "loss", "optim", "train")
MANAGED_KEYS = {
    "train.epochs": "set it with search.epochs",
    "train.num_threads": "set by resources.cpus_per_trial",
    "train.device": "set by resources.gpus_per_trial",
    "train.evaluate_selected": "sweeps always evaluate the selected checkpoint on improvement",
    "model.feature_dim": "it is the dataset's feature width",
    "model.n_crops": "it is the dataset's crop count",
    "train.selection": "every trial selects its checkpoint with search.metric",
    "train.reference_loss": "every trial gets the base config's loss section (one val_ref_loss for the sweep)",
    **{train_key: f"set it with search.{key} (one selection rule for every trial)"
       for key, train_key in SELECTION_KEYS.items()},
}
"""Config keys the sweep sets itself (neither searched nor fixed by a space file), and why."""
SMOKE_DATASETS = {(2048, 10): "synthetic:ucf-shaped", (1024, 5): "synthetic:xd-shaped"}
SMOKE_OVERRIDES = {"train.steps_per_epoch": 2, "train.batch_per_class": 2, "train.patience": None}
TOP_LEVEL = ("base", "dataset", "smoke_dataset", "fixed", "search", "scheduler", "resources", "confirm", "params")
SEARCH_DEFAULTS: dict[str, Any] = {"sampler": "tpe", "num_samples": None, "epochs": None, "metric": "val_ref_loss",
                                   "mode": None, "seed": 0, "checkpoint_every": 1, "selection_rule": None,
                                   "selection_window": None, "selection_ema": None, "min_delta": None}
SCHEDULER_DEFAULTS: dict[str, Any] = {"name": "asha", "grace_period": 1, "reduction_factor": 3}
"""ASHA, first rung after one epoch, reduction factor 3 (benchmarks/RESULTS.md ``## search_quality``)."""
RESOURCE_DEFAULTS: dict[str, Any] = {"cpus_per_trial": 1, "gpus_per_trial": 0, "max_concurrent": None}
CONFIRM_DEFAULTS: dict[str, Any] = {"top": 3, "seeds": 3}
"""After the search: the top configurations (plus the paper default) retrained with fresh seeds (0 skips)."""


class SpaceError(ConfigError):
    """An invalid search-space file; the message names the file and the key."""


@dataclass(frozen=True)
class Param:
    """One searched config key and its distribution.

    ``values`` holds ``(lo, hi)`` for ``loguniform``/``uniform``/``int`` and the canonical candidates (as the
    config stores them, lists for sequences) for ``choice``/``grid``.
    """

    name: str
    kind: str
    values: tuple[Any, ...]

    @property
    def encoded(self) -> bool:
        """Candidates that Optuna cannot hold as such (lists) travel as JSON strings."""
        return self.kind in ("choice", "grid") and any(isinstance(v, (list, dict)) for v in self.values)

    def encode(self, value: Any) -> Any:
        """The value as the searcher holds it (a JSON string for list candidates)."""
        return json.dumps(value) if self.encoded else value

    def decode(self, value: Any) -> Any:
        """Inverse of :meth:`encode`."""
        return json.loads(value) if self.encoded and isinstance(value, str) else value

    def candidates(self) -> list[Any]:
        """The searcher's candidates (``choice``/``grid``), encoded."""
        return [self.encode(v) for v in self.values]

    def contains(self, value: Any) -> bool:
        if self.kind in ("choice", "grid"):
            return value in self.values
        lo, hi = self.values
        return isinstance(value, (int, float)) and not isinstance(value, bool) and lo <= value <= hi

    def describe(self) -> str:
        return f"{self.kind} {list(self.values)}"


@dataclass(frozen=True)
class SearchSettings:
    sampler: str
    num_samples: int
    epochs: int
    metric: str
    mode: str
    seed: int
    checkpoint_every: int
    selection: dict[str, Any] = field(default_factory=dict)
    """The trials' ``train.*`` selection-rule keys the space sets (``search.selection_rule`` etc.); the others
    keep the base config's values."""

    @property
    def uses_test_data(self) -> bool:
        """Whether the ranking metric comes from the test set (a diagnostic, test-selected sweep)."""
        return get_metric(self.metric).uses_test_data


@dataclass(frozen=True)
class SchedulerSettings:
    name: str
    grace_period: int
    reduction_factor: float


@dataclass(frozen=True)
class Resources:
    cpus_per_trial: float
    gpus_per_trial: float
    max_concurrent: int | None

    @property
    def threads(self) -> int:
        """torch CPU threads per trial: the trial's CPU share, at least one."""
        return max(1, int(self.cpus_per_trial))


@dataclass(frozen=True)
class ConfirmSettings:
    top: int
    """How many of the sweep's best configurations are confirmed (the paper default is added)."""
    seeds: int
    """Fresh seeds per configuration; 0 (either) skips the confirmation."""

    @property
    def enabled(self) -> bool:
        return self.top > 0 and self.seeds > 0


@dataclass(frozen=True)
class SearchSpace:
    """A validated space file: the base config, the searched parameters and the sweep settings."""

    path: Path
    base_path: Path
    base: TrainConfig
    """The base config with ``dataset`` and ``fixed`` applied (not yet the sweep-managed keys)."""
    params: dict[str, Param]
    baseline: dict[str, Any]
    """The base config's value of every searched key (canonical form): the paper defaults."""
    search: SearchSettings
    scheduler: SchedulerSettings
    resources: Resources
    smoke_dataset: str | None
    fixed: dict[str, Any] = field(default_factory=dict)
    text: str = ""
    smoke: bool = False
    diagnostic: bool = False
    """Loaded with ``diagnostic=True``: a test-set metric may rank the trials (the papers' protocol)."""
    confirm: ConfirmSettings = ConfirmSettings(CONFIRM_DEFAULTS["top"], CONFIRM_DEFAULTS["seeds"])

    @property
    def stem(self) -> str:
        return self.path.stem

    @property
    def digest(self) -> str:
        """sha256 of the space file's text (a resumed sweep must use the same file)."""
        return hashlib.sha256(self.text.encode()).hexdigest()

    @property
    def grid_size(self) -> int:
        return math.prod(len(p.values) for p in self.params.values()) if self.search.sampler == "grid" else 0

    @property
    def finite_size(self) -> int | None:
        """The number of points when every key is discrete (``choice``, ``grid``, ``int``); else None."""
        if any(p.kind not in ("choice", "grid", "int") for p in self.params.values()):
            return None
        return math.prod(int(p.values[1]) - int(p.values[0]) + 1 if p.kind == "int" else len(p.values)
                         for p in self.params.values())

    @property
    def trials_to_run(self) -> int:
        """``num_samples``, or fewer when a finite space has fewer points (no point runs twice)."""
        size = self.finite_size
        return self.search.num_samples if size is None else min(self.search.num_samples, size)

    def trial_config(self, params: dict[str, Any]) -> TrainConfig:
        """The config of one trial: the sweep config with the (decoded) searched values."""
        return self.sweep_config().with_overrides(self.decode(params))

    def sweep_config(self) -> TrainConfig:
        """The base config with the keys a sweep manages: epochs, threads, device, on-improvement test metrics,
        and the selection (see :meth:`selection_overrides`)."""
        return self.base.with_overrides({
            "train.epochs": self.search.epochs,
            "train.num_threads": self.resources.threads,
            "train.device": "cuda" if self.resources.gpus_per_trial > 0 else "cpu",
            "train.evaluate_selected": "on_improvement",
            **self.selection_overrides(),
        })

    def selection_overrides(self) -> dict[str, Any]:
        """What every trial (and the best config) selects with: ``train.selection`` = ``search.metric``, the
        space's selection-rule keys, and ``train.reference_loss`` = the base config's loss settings."""
        return selection_overrides(self.base, self.search)

    @property
    def protocol(self) -> dict[str, str]:
        """Which data chooses each trial's checkpoint and the trial (``val``/``test``): the MLflow tags
        ``checkpoint_chosen_by`` and ``trial_chosen_by``, plus ``protocol=test-selected`` when either is test."""
        return protocol_tags(self.search.metric, self.search.metric)

    def decode(self, params: dict[str, Any]) -> dict[str, Any]:
        """Searcher values -> config values (JSON-encoded list candidates decoded); unknown names are errors."""
        unknown = sorted(set(params) - set(self.params))
        if unknown:
            raise SpaceError(f"{self.path}: not searched in this space: {', '.join(unknown)}")
        return {name: self.params[name].decode(value) for name, value in params.items()}

    def baseline_point(self) -> dict[str, Any]:
        """The paper defaults as a searcher point (encoded), for ``points_to_evaluate``."""
        return {name: self.params[name].encode(value) for name, value in self.baseline.items()}

    def with_settings(self, *, num_samples: int | None = None, cpus_per_trial: float | None = None,
                      gpus_per_trial: float | None = None) -> SearchSpace:
        """Command-line overrides of the number of trials and the resources, validated like the file."""
        space = self
        if num_samples is not None:
            if num_samples < 1:
                raise SpaceError(f"--num-samples must be at least 1, got {num_samples}")
            if self.search.sampler == "grid" and num_samples != self.grid_size:
                raise SpaceError(f"{self.path}: a grid space runs exactly its grid of {self.grid_size} trials; "
                                 f"drop --num-samples {num_samples}")
            space = replace(space, search=replace(space.search, num_samples=num_samples))
        resources = space.resources
        if cpus_per_trial is not None:
            resources = replace(resources, cpus_per_trial=_positive(cpus_per_trial, "--cpus-per-trial"))
        if gpus_per_trial is not None:
            resources = replace(resources, gpus_per_trial=_gpus(gpus_per_trial, "--gpus-per-trial"))
        return replace(space, resources=resources)

    def for_smoke_test(self) -> SearchSpace:
        """One trial (the baseline), one epoch, a couple of small steps, on synthetic data shaped like the
        space's dataset (the space's own dataset when it is synthetic already)."""
        dataset = self.base.data.dataset
        if not dataset.startswith("synthetic:"):
            dataset = self.smoke_dataset or _derived_smoke_dataset(self)
        base = self.base.with_overrides({"data.dataset": dataset, **SMOKE_OVERRIDES})
        search = replace(self.search, num_samples=1, epochs=1, checkpoint_every=1,
                         sampler="random" if self.search.sampler == "grid" else self.search.sampler)
        return replace(self, base=base, search=search, smoke=True, confirm=ConfirmSettings(0, 0),
                       scheduler=replace(self.scheduler, name="fifo"),
                       resources=replace(self.resources, max_concurrent=1))


def selection_overrides(base: TrainConfig, search: SearchSettings) -> dict[str, Any]:
    """The ``train.*`` keys a sweep sets on every trial (see :meth:`SearchSpace.selection_overrides`)."""
    reference = base.flat().get("train.reference_loss")
    if reference is None:  # the base's loss settings, every default written out: one function for all trials
        reference = {**loss_arguments(base.model_name), **copy.deepcopy(base.loss)}
    return {"train.selection": search.metric, **search.selection, "train.reference_loss": reference}


def protocol_tags(checkpoint_metric: str, trial_metric: str) -> dict[str, str]:
    """``checkpoint_chosen_by``/``trial_chosen_by`` (``val`` or ``test``: which data produced the metric) and, when
    either is ``test``, ``protocol=test-selected``."""
    tags = {"checkpoint_chosen_by": _source(checkpoint_metric), "trial_chosen_by": _source(trial_metric)}
    if "test" in tags.values():
        tags["protocol"] = "test-selected"
    return tags


def _source(metric: str) -> str:
    return "test" if get_metric(metric).uses_test_data else "val"


def _derived_smoke_dataset(space: SearchSpace) -> str:
    model = space.base.model
    key = (model.get("feature_dim"), model.get("n_crops"))
    if key in SMOKE_DATASETS:
        return SMOKE_DATASETS[key]
    raise SpaceError(f"{space.path}: smoke_dataset: not set, and the base config's model.feature_dim/n_crops "
                     f"{key} match no synthetic preset; add e.g. `smoke_dataset: synthetic:ucf-shaped`")


# --------------------------------------------------------------------------------------------------- loading

def load_space(path: str | Path, *, diagnostic: bool = False) -> SearchSpace:
    """Read and validate a space file; raises :class:`SpaceError` naming the file and the key. ``diagnostic``
    allows a test-set ranking metric (``test_auc``, ``test_ap``: the papers' test-selected protocol)."""
    path = Path(path).expanduser().resolve()
    data, text = read_yaml(path, "space file", error=SpaceError)
    if not isinstance(data, dict):
        raise SpaceError(f"{path}: expected a mapping with keys {', '.join(TOP_LEVEL)}")
    unknown = sorted(set(data) - set(TOP_LEVEL))
    if unknown:
        raise SpaceError(f"{path}: unknown key(s) {', '.join(unknown)}; known: {', '.join(TOP_LEVEL)}")
    if not data.get("base"):
        raise SpaceError(f"{path}: base: missing (the base config, e.g. base: ../configs/rtfm_ucf.yaml)")
    base_path = (path.parent / str(data["base"])).resolve()
    try:
        base = TrainConfig.from_yaml(base_path)
    except ConfigError as exc:
        raise SpaceError(f"{path}: base: {exc}") from None

    fixed = _mapping(data.get("fixed"), path, "fixed")
    for key in fixed:
        _check_key(key, path, "fixed", allow_data=True)
    if data.get("dataset") is not None:
        fixed = {"data.dataset": _dataset_spec(data["dataset"], path, "dataset"), **fixed}
    try:
        base = base.with_overrides(fixed)
    except ConfigError as exc:
        raise SpaceError(f"{path}: fixed: {exc}") from None

    params_data = _mapping(data.get("params"), path, "params")
    if not params_data:
        raise SpaceError(f"{path}: params: nothing to search (add at least one key, e.g. optim.weight_decay)")
    params, baseline = {}, {}
    for name, leaf in params_data.items():
        _check_key(name, path, "params", allow_data=False)
        params[name] = _param(name, leaf, base, path)
        baseline[name] = _baseline_value(name, params[name], base, path)

    search = _search_settings(_section(data, "search", SEARCH_DEFAULTS, path), params, base, path, diagnostic)
    _check_selection(fixed, search, base, path)
    scheduler = _scheduler_settings(_section(data, "scheduler", SCHEDULER_DEFAULTS, path), search, path)
    resources = _resources(_section(data, "resources", RESOURCE_DEFAULTS, path), path)
    confirm = _section(data, "confirm", CONFIRM_DEFAULTS, path)
    confirm = ConfirmSettings(*(_int(confirm[key], f"{path}: confirm.{key}", minimum=0) for key in CONFIRM_DEFAULTS))
    smoke = data.get("smoke_dataset")
    if smoke is not None:
        smoke = _dataset_spec(smoke, path, "smoke_dataset")
        if not smoke.startswith("synthetic:"):
            raise SpaceError(f"{path}: smoke_dataset: expected synthetic:<preset>, got {smoke!r}")
    return SearchSpace(path, base_path, base, params, baseline, search, scheduler, resources, smoke, fixed, text,
                       confirm=confirm, diagnostic=diagnostic)


def _mapping(value: Any, path: Path, key: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise SpaceError(f"{path}: {key}: expected a mapping, got {type(value).__name__}")
    return dict(value)


def _dataset_spec(value: Any, path: Path, key: str) -> str:
    if not isinstance(value, str) or not value:
        raise SpaceError(f"{path}: {key}: expected a dataset.yaml path or synthetic:<preset>, got {value!r}")
    if value.startswith("synthetic:"):
        return value
    return str((path.parent / value).resolve())  # relative to the space file, made absolute


def _check_key(name: Any, path: Path, where: str, *, allow_data: bool) -> None:
    sections = ("data", *SEARCHABLE_SECTIONS) if allow_data else SEARCHABLE_SECTIONS
    section, _, key = str(name).partition(".")
    if not isinstance(name, str) or section not in sections or not key:
        raise SpaceError(f"{path}: {where}.{name}: expected <section>.<key> with section in {', '.join(sections)}"
                         + ("" if allow_data else " (data settings are prepared once per sweep: put them in fixed)"))
    if name in MANAGED_KEYS and not (where == "fixed" and name == "train.selection"):  # checked against the metric
        raise SpaceError(f"{path}: {where}.{name}: managed by the sweep ({MANAGED_KEYS[name]})")


def _param(name: str, leaf: Any, base: TrainConfig, path: Path) -> Param:
    where = f"{path}: params.{name}"
    if not isinstance(leaf, dict) or len(leaf) != 1:
        raise SpaceError(f"{where}: expected one of {{{': ..., '.join(KINDS)}: ...}}, got {leaf!r}")
    ((kind, values),) = leaf.items()
    if kind not in KINDS:
        raise SpaceError(f"{where}: unknown distribution {kind!r}; known: {', '.join(KINDS)}")
    if not isinstance(values, list) or not values:
        raise SpaceError(f"{where}: {kind}: expected a non-empty list, got {values!r}")
    if kind in ("choice", "grid"):
        canonical = [_canonical(name, v, base, where) for v in values]
        if len({json.dumps(v, sort_keys=True) for v in canonical}) != len(canonical):
            raise SpaceError(f"{where}: {kind}: duplicate candidates in {values!r}")
        return Param(name, kind, tuple(canonical))
    if len(values) != 2:
        raise SpaceError(f"{where}: {kind}: expected [lo, hi], got {values!r}")
    lo, hi = (_number(v, where, kind) for v in values)
    if kind == "int" and not (float(lo).is_integer() and float(hi).is_integer()):
        raise SpaceError(f"{where}: int: bounds must be integers, got {values!r}")
    if not lo < hi:
        raise SpaceError(f"{where}: {kind}: lo must be below hi, got [{lo}, {hi}]")
    if kind == "loguniform" and lo <= 0:
        raise SpaceError(f"{where}: loguniform: lo must be positive, got {lo}")
    if kind == "int":
        lo, hi = int(lo), int(hi)
    for bound in (lo, hi):
        _canonical(name, bound, base, where)  # the config accepts the bounds (type check)
    return Param(name, kind, (lo, hi))


def _number(value: Any, where: str, kind: str) -> float:
    if isinstance(value, str):  # YAML reads 1e-3 without a dot as a string
        try:
            value = float(value)
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise SpaceError(f"{where}: {kind}: bounds must be finite numbers, got {value!r}")
    return value


def _canonical(name: str, value: Any, base: TrainConfig, where: str) -> Any:
    """``value`` as the config stores it (validated by ``TrainConfig.with_overrides``)."""
    try:
        return base.with_overrides({name: copy.deepcopy(value)}).flat()[name]
    except ConfigError as exc:
        raise SpaceError(f"{where}: {exc}") from None


def _baseline_value(name: str, param: Param, base: TrainConfig, path: Path) -> Any:
    section, _, key = name.partition(".")
    flat = base.flat()
    if name in flat:
        value = flat[name]
    else:
        defaults = model_arguments(base.model_name) if section == "model" else loss_arguments(base.model_name)
        value = _canonical(name, defaults[key], base, f"{path}: params.{name}")
    if not param.contains(value):
        raise SpaceError(f"{path}: params.{name}: the base config's value {value!r} (the paper default, evaluated "
                         f"first) is outside {param.describe()}; include it")
    return value


def _section(data: dict, name: str, defaults: dict[str, Any], path: Path) -> dict[str, Any]:
    values = _mapping(data.get(name), path, name)
    unknown = sorted(set(values) - set(defaults))
    if unknown:
        raise SpaceError(f"{path}: {name}: unknown key(s) {', '.join(unknown)}; known: {', '.join(defaults)}")
    return {**defaults, **values}


def _int(value: Any, where: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise SpaceError(f"{where}: expected an integer >= {minimum}, got {value!r}")
    return value


def _positive(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise SpaceError(f"{where}: expected a positive number, got {value!r}")
    return float(value)


def _gpus(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise SpaceError(f"{where}: expected a number >= 0 (fractions pack trials: 0.25 = four per GPU), "
                         f"got {value!r}")
    if value > 1 and not float(value).is_integer():
        raise SpaceError(f"{where}: above one GPU a trial needs whole GPUs, got {value}")
    return float(value)


def _search_settings(values: dict[str, Any], params: dict[str, Param], base: TrainConfig, path: Path,
                     diagnostic: bool) -> SearchSettings:
    where = f"{path}: search"
    kinds = {p.kind for p in params.values()}
    sampler = values["sampler"]
    if sampler not in SAMPLERS:
        raise SpaceError(f"{where}.sampler: {sampler!r} is not one of {', '.join(SAMPLERS)}")
    if "grid" in kinds and (kinds != {"grid"} or sampler != "grid"):
        raise SpaceError(f"{where}.sampler: grid leaves need `sampler: grid` and every leaf a grid "
                         f"(found {', '.join(sorted(kinds))} with sampler {sampler})")
    if sampler == "grid" and kinds != {"grid"}:
        raise SpaceError(f"{where}.sampler: grid needs every leaf to be a grid (found {', '.join(sorted(kinds))})")
    grid_size = math.prod(len(p.values) for p in params.values())
    num_samples = values["num_samples"]
    if sampler == "grid":
        if num_samples is not None and num_samples != grid_size:
            raise SpaceError(f"{where}.num_samples: a grid runs exactly its {grid_size} points; got {num_samples}")
        num_samples = grid_size
    if num_samples is None:
        raise SpaceError(f"{where}.num_samples: missing (the number of trials)")
    num_samples = _int(num_samples, f"{where}.num_samples")
    epochs = _int(values["epochs"] if values["epochs"] is not None else base.train.epochs, f"{where}.epochs")
    metric = _metric(values["metric"], params, where, diagnostic)
    mode = values["mode"] or METRIC_MODES[metric]
    if mode != METRIC_MODES[metric]:
        raise SpaceError(f"{where}.mode: {metric} is better when {METRIC_MODES[metric]}imised, not {mode!r}")
    seed = _int(values["seed"], f"{where}.seed", minimum=0)
    every = _int(values["checkpoint_every"], f"{where}.checkpoint_every")
    selection = {SELECTION_KEYS[key]: values[key] for key in SELECTION_KEYS if values[key] is not None}
    return SearchSettings(sampler, num_samples, epochs, metric, mode, seed, every, selection)


def _metric(metric: Any, params: dict[str, Param], where: str, diagnostic: bool) -> str:
    """The ranking metric: a selectable catalogue metric; not the trained objective when ``loss.*`` is searched;
    a test-set one only for a diagnostic sweep."""
    if metric not in METRIC_MODES:
        raise SpaceError(f"{where}.metric: {metric!r} is not one of {', '.join(METRIC_MODES)}")
    searched_loss = [name for name in params if name.startswith("loss.")]
    if metric == "val_loss" and searched_loss:
        raise SpaceError(f"{where}.metric: val_loss is each trial's own trained objective, which moves with the "
                         f"searched {', '.join(searched_loss)}: trials would not be comparable; rank on "
                         f"{', '.join(COMPARABLE_METRICS)} (val_ref_loss: the validation objective with the base "
                         f"config's loss settings for every trial)")
    if get_metric(metric).uses_test_data and not diagnostic:
        raise SpaceError(f"{where}.metric: {metric} is measured on the test set: ranking or selecting with it is "
                         f"the papers' test-selected protocol; use {', '.join(COMPARABLE_METRICS)}, or pass "
                         f"--diagnostic to run it as a sweep tagged protocol=test-selected")
    return metric


def _check_selection(fixed: dict[str, Any], search: SearchSettings, base: TrainConfig, path: Path) -> None:
    """``fixed: {train.selection: ...}`` may only repeat ``search.metric``; the selection keys must be valid
    config values."""
    chosen = fixed.get("train.selection")
    if chosen is not None and chosen != search.metric:
        raise SpaceError(f"{path}: fixed.train.selection: {chosen!r} differs from search.metric "
                         f"({search.metric}); every trial selects its checkpoint with the metric it is ranked by: "
                         f"drop it or set search.metric")
    try:
        base.with_overrides(selection_overrides(base, search))
    except ConfigError as exc:
        keys = ", ".join(f"search.{k}" for k, v in SELECTION_KEYS.items() if v in search.selection)
        raise SpaceError(f"{path}: search.metric{', ' + keys if keys else ''}: {exc}") from None


def _scheduler_settings(values: dict[str, Any], search: SearchSettings, path: Path) -> SchedulerSettings:
    where = f"{path}: scheduler"
    if values["name"] not in SCHEDULERS:
        raise SpaceError(f"{where}.name: {values['name']!r} is not one of {', '.join(SCHEDULERS)}")
    grace = _int(values["grace_period"], f"{where}.grace_period")
    if values["name"] == "asha" and grace > search.epochs:
        raise SpaceError(f"{where}.grace_period: {grace} is beyond search.epochs ({search.epochs})")
    factor = values["reduction_factor"]
    if isinstance(factor, bool) or not isinstance(factor, (int, float)) or factor <= 1:
        raise SpaceError(f"{where}.reduction_factor: expected a number > 1, got {factor!r}")
    return SchedulerSettings(values["name"], grace, float(factor))


def _resources(values: dict[str, Any], path: Path) -> Resources:
    where = f"{path}: resources"
    cpus = _positive(values["cpus_per_trial"], f"{where}.cpus_per_trial")
    gpus = _gpus(values["gpus_per_trial"], f"{where}.gpus_per_trial")
    limit = values["max_concurrent"]
    if limit is not None:
        limit = _int(limit, f"{where}.max_concurrent")
    return Resources(cpus, gpus, limit)
