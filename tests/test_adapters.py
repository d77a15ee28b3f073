"""The third-party internals the sweep machinery relies on (search/adapters/) still exist on the installed versions;
their use stays inside the adapters; MLflow is written by search/sweep/tracking.py and read by
search/reporting/data.py only;
every dependency is bounded below its next major version and the installed versions satisfy the bounds."""

import re
from pathlib import Path

import optuna
import pytest
import ray
from ray.tune.schedulers import AsyncHyperBandScheduler
from ray.tune.schedulers.async_hyperband import _Bracket
from ray.tune.search.optuna import OptunaSearch

from search.adapters import AdapterError, require
from search.adapters import optuna as ot_adapter
from search.adapters import tune as tune_adapter
from search.sweep.scheduler import PersistentASHA
from search.sweep.searcher import BaselineFirstGridSampler, DistinctPointSearch

ROOT = Path(__file__).resolve().parents[1]
SEARCH = ROOT / "search"
INTERNALS = ("_ot_study", "_ot_trials", "_space", "_all_grids", "_param_names", "_brackets", "_rungs", "_trial_info",
             "_num_stopped", "_time_attr", "_max_t")
"""Private attributes of Tune and Optuna classes the adapters use."""
MLFLOW_WRITER, MLFLOW_READER = "sweep/tracking.py", "reporting/data.py"


# ------------------------------------------------------------------------------------------- the installed versions

@pytest.mark.parametrize("adapter", [tune_adapter, ot_adapter], ids=["tune", "optuna"])
def test_installed_libraries_have_every_internal_the_adapters_use(adapter):
    try:
        adapter.check()
    except AdapterError as exc:
        pytest.fail(str(exc), pytrace=False)


def test_a_missing_tune_internal_fails_naming_the_version_and_the_attribute(monkeypatch):
    original = _Bracket.__init__

    def without_rungs(self, *args, **kwargs):
        original(self, *args, **kwargs)
        del self._rungs

    monkeypatch.setattr(_Bracket, "__init__", without_rungs)
    with pytest.raises(AdapterError, match=rf"^ray\[tune\] {re.escape(ray.__version__)}: "
                                           r"AsyncHyperBandScheduler\._brackets\[0\]\._rungs is missing"):
        tune_adapter.check()


@pytest.mark.parametrize("attribute", ["_ot_trials", "_ot_study", "_space"])
def test_a_missing_optuna_search_internal_fails_naming_the_version_and_the_attribute(monkeypatch, attribute):
    original = OptunaSearch.__init__

    def without(self, *args, **kwargs):
        original(self, *args, **kwargs)
        delattr(self, attribute)

    monkeypatch.setattr(OptunaSearch, "__init__", without)
    with pytest.raises(AdapterError, match=rf"{re.escape(ray.__version__)} .*OptunaSearch\.{attribute} is missing"):
        ot_adapter.check()


def test_a_reshaped_grid_fails_with_the_optuna_version(monkeypatch):
    original = optuna.samplers.GridSampler.__init__

    def as_tuple(self, *args, **kwargs):
        original(self, *args, **kwargs)
        self._all_grids = tuple(self._all_grids)

    monkeypatch.setattr(optuna.samplers.GridSampler, "__init__", as_tuple)
    with pytest.raises(AdapterError, match=rf"^optuna {re.escape(optuna.__version__)}: GridSampler\._all_grids is "
                                           r"a tuple, not a list"):
        ot_adapter.check()


def test_require_walks_attributes_and_indices():
    holder = type("Holder", (), {})()
    holder.items = [{"a": 1}]
    assert require("lib", "1.0", "x.py", holder, "items[0]", dict) == {"a": 1}
    with pytest.raises(AdapterError, match=r"^lib 1\.0: Holder\.items\[1\] is missing \(x\.py relies on it\)"):
        require("lib", "1.0", "x.py", holder, "items[1]", dict)


# ------------------------------------------------------------------------------------------- what the adapters do

def test_grid_point_moves_first_and_an_off_grid_point_is_refused():
    sampler = optuna.samplers.GridSampler({"b": [1, 2, 3], "a": ["x", "y"]}, seed=3)
    before = sorted(sampler._all_grids)
    assert ot_adapter.move_grid_point_first(sampler, {"a": "x", "b": 3})
    assert sampler._all_grids[0] == ("x", 3) and sorted(sampler._all_grids) == before
    assert not ot_adapter.move_grid_point_first(sampler, {"a": "z", "b": 3})
    study = optuna.create_study(sampler=BaselineFirstGridSampler({"b": [1, 2, 3], "a": ["x", "y"]}, {"a": "y", "b": 2}))
    first = study.ask()  # the grid sampler gives trial 0 the first grid point
    assert (first.suggest_categorical("a", ["x", "y"]), first.suggest_categorical("b", [1, 2, 3])) == ("y", 2)


def test_asked_trials_and_rungs_are_the_libraries_live_state():
    space = {"a": optuna.distributions.CategoricalDistribution(["x", "y"])}
    search = OptunaSearch(space=space, metric="m", mode="min", sampler=optuna.samplers.RandomSampler(seed=0))
    config = search.suggest("t0")
    assert ot_adapter.asked_trial(search, "t0").params == config and list(ot_adapter.search_space(search)) == ["a"]
    assert ot_adapter.pop_asked_trial(search, "t0").number == 0
    with pytest.raises(KeyError):
        ot_adapter.asked_trial(search, "t0")
    assert len(ot_adapter.study(search).get_trials()) == 1

    scheduler = AsyncHyperBandScheduler(time_attr="epoch", metric="m", mode="min", max_t=4, grace_period=1,
                                        reduction_factor=2, brackets=1)
    trial = type("Trial", (), {"trial_id": "a"})()
    scheduler.on_trial_add(None, trial)
    assert tune_adapter.knows_trial(scheduler, "a") and tune_adapter.time_attr(scheduler) == "epoch"
    scheduler.on_trial_result(None, trial, {"epoch": 1, "m": 2.0})
    assert dict(tune_adapter.rungs(scheduler))[1] == {"a": -2.0} and tune_adapter.max_t(scheduler) == 4
    tune_adapter.set_num_stopped(scheduler, 5)
    assert tune_adapter.num_stopped(scheduler) == 5
    tune_adapter.forget_trial(scheduler, "a")
    assert not tune_adapter.knows_trial(scheduler, "a")


def test_our_subclasses_do_not_shadow_library_attributes(tmp_path):
    """The attributes PersistentASHA and DistinctPointSearch add must not overwrite ones of the class they extend."""
    kwargs = {"metric": "m", "mode": "min", "max_t": 4, "grace_period": 1, "reduction_factor": 2}
    ours = set(vars(PersistentASHA(tmp_path / "asha.json", **kwargs)))
    theirs = set(vars(AsyncHyperBandScheduler(time_attr="epoch", brackets=1, stop_last_trials=False, **kwargs)))
    assert ours - theirs == {"state_path", "stopped", "_loaded", "_added", "_pruned"}
    space = {"a": optuna.distributions.CategoricalDistribution(["x", "y"])}
    sampler = optuna.samplers.RandomSampler(seed=0)
    ours = set(vars(DistinctPointSearch(space=space, metric="m", mode="min", sampler=sampler, finite_size=2, seed=0)))
    theirs = set(vars(OptunaSearch(space=space, metric="m", mode="min", sampler=sampler)))
    assert ours - theirs == {"_finite_size", "_rng"}


# ------------------------------------------------------------------------------------------- the house rules

def _search_sources() -> list[Path]:
    return sorted(path for path in SEARCH.rglob("*.py") if "adapters" not in path.relative_to(SEARCH).parts)


def test_private_internals_are_used_only_in_the_adapters():
    pattern = re.compile(r"\.(" + "|".join(INTERNALS) + r")\b")
    uses = [f"{path.relative_to(ROOT)}:{number}: {line.strip()}" for path in _search_sources()
            for number, line in enumerate(path.read_text().splitlines(), 1) if pattern.search(line)]
    assert not uses, "use search/adapters/ for third-party internals:\n" + "\n".join(uses)


def test_mlflow_is_written_by_tracking_and_read_by_report_data_only():
    pattern = re.compile(r"^\s*(import mlflow|from mlflow\b)|MlflowClient\(")
    offenders = [f"{path.relative_to(ROOT)}:{number}: {line.strip()}" for path in _search_sources()
                 if path.relative_to(SEARCH).as_posix() not in (MLFLOW_WRITER, MLFLOW_READER)
                 for number, line in enumerate(path.read_text().splitlines(), 1) if pattern.search(line)]
    assert not offenders, (f"MLflow writes go through search/{MLFLOW_WRITER}, reads through search/{MLFLOW_READER}:\n"
                           + "\n".join(offenders))
    reader = (SEARCH / MLFLOW_READER).read_text()
    writes = re.findall(r"\.(log_\w+|set_tag|set_terminated|create_run|create_experiment|update_run|delete_run)\(",
                        reader)
    assert not writes, f"search/{MLFLOW_READER} writes to MLflow: {writes}"


def test_every_dependency_has_an_upper_bound_the_installed_version_meets():
    tomllib = pytest.importorskip("tomllib")
    from importlib.metadata import PackageNotFoundError, version

    from packaging.requirements import Requirement

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = [Requirement(text) for text in project["dependencies"]]
    requirements += [Requirement(text) for group in project["optional-dependencies"].values() for text in group]
    unbounded = [str(r) for r in requirements if not any(s.operator in ("<", "<=", "~=", "==") for s in r.specifier)]
    assert not unbounded, f"dependencies without an upper bound in pyproject.toml: {unbounded}"
    outside = []
    for requirement in requirements:
        try:
            installed = version(requirement.name)
        except PackageNotFoundError:
            continue
        if not requirement.specifier.contains(installed, prereleases=True):
            outside.append(f"{requirement.name} {installed} (pyproject.toml: {requirement.specifier})")
    assert not outside, f"installed versions outside the declared bounds: {outside}"
