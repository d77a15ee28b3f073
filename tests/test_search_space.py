"""Search-space files: every shipped space loads; invalid ones fail fast naming the file and the key."""

from pathlib import Path

import pytest
import yaml

from search.sweep.space import SearchSpace, SpaceError, load_space
from vad.config import TrainSection

REPO = Path(__file__).resolve().parents[1]
SPACES = sorted((REPO / "spaces").glob("*.yaml"))
BASE = {
    "data": {"dataset": "synthetic:tiny"},
    "model": {"name": "rtfm", "dropout": 0.7, "hidden_dim": 16, "head_dims": [16, 8]},
    "loss": {"k": 3},
    "optim": {"lr": 1.0e-3, "weight_decay": 5.0e-4},
    "train": {"epochs": 4, "batch_per_class": 4},
}
BASE_TRAIN = TrainSection()
GOOD = {
    "base": "base.yaml",
    "search": {"num_samples": 4, "epochs": 3},
    "params": {"optim.weight_decay": {"loguniform": [1.0e-5, 1.0e-2]}, "model.dropout": {"uniform": [0.3, 0.8]}},
}


def write_space(folder: Path, space: dict, base: dict | None = None) -> Path:
    (folder / "base.yaml").write_text(yaml.safe_dump(base or BASE))
    path = folder / "space.yaml"
    path.write_text(yaml.safe_dump(space))
    return path


def with_params(**params) -> dict:
    return {**GOOD, "params": params}


def test_the_shipped_spaces_exist_and_load():
    names = {path.stem for path in SPACES}
    assert {"demo", "rtfm_ucf", "rtfm_xd", "mgfn_ucf", "mgfn_xd", "s3r_ucf", "s3r_xd"} <= names
    for path in SPACES:
        space = load_space(path)
        assert space.params and space.search.num_samples >= 1
        assert space.baseline == {name: space.base.flat().get(name, space.baseline[name]) for name in space.params}


def test_paper_spaces_search_the_regularisers_and_smoke_on_their_shape():
    for stem, keys, smoke in [("rtfm_ucf", {"optim.weight_decay", "model.dropout", "model.dilations"}, "ucf"),
                              ("mgfn_xd", {"optim.weight_decay", "model.dropout", "model.depths"}, "xd"),
                              ("s3r_xd", {"optim.weight_decay", "loss.macro_weight"}, "xd")]:
        space = load_space(REPO / "spaces" / f"{stem}.yaml")
        assert keys <= set(space.params)
        assert space.for_smoke_test().base.data.dataset == f"synthetic:{smoke}-shaped"


def test_baseline_is_the_base_configs_own_values_with_registry_defaults(tmp_path):
    space = load_space(write_space(tmp_path, with_params(**{
        "optim.weight_decay": {"loguniform": [1.0e-5, 1.0e-2]},
        "loss.margin": {"uniform": [50, 200]},             # not in the base file: the loss's default (100)
        "model.dilations": {"choice": [[1, 2, 4], [1, 2]]},
    })))
    assert space.baseline == {"optim.weight_decay": 5.0e-4, "loss.margin": 100.0, "model.dilations": [1, 2, 4]}
    point = space.baseline_point()
    assert point["model.dilations"] == "[1, 2, 4]"  # list candidates travel as JSON strings
    assert space.decode(point) == space.baseline
    config = space.trial_config(point)
    assert config.model["dilations"] == (1, 2, 4) and config.loss["margin"] == 100.0


def test_sweep_config_sets_the_managed_keys(tmp_path):
    space = load_space(write_space(tmp_path, {**GOOD, "resources": {"cpus_per_trial": 2, "gpus_per_trial": 0.5}}))
    train = space.sweep_config().train
    assert (train.epochs, train.num_threads, train.device, train.evaluate_selected) == (3, 2, "cuda",
                                                                                       "on_improvement")
    assert space.with_settings(gpus_per_trial=0).sweep_config().train.device == "cpu"


def test_smoke_test_is_one_short_trial(tmp_path):
    smoke = load_space(write_space(tmp_path, GOOD)).for_smoke_test()
    assert (smoke.search.num_samples, smoke.search.epochs, smoke.scheduler.name) == (1, 1, "fifo")
    config = smoke.sweep_config()
    assert config.train.steps_per_epoch == 2 and config.train.batch_per_class == 2
    assert config.data.dataset == "synthetic:tiny"  # already synthetic: kept


@pytest.mark.parametrize("change, words", [
    ({"params": {"optim.weight_decy": {"loguniform": [1e-5, 1e-2]}}}, ["params.optim.weight_decy", "unknown"]),
    ({"params": {"weight_decay": {"loguniform": [1e-5, 1e-2]}}}, ["params.weight_decay", "<section>.<key>"]),
    ({"params": {"data.n_segments": {"int": [16, 64]}}}, ["params.data.n_segments"]),
    ({"params": {"train.epochs": {"int": [2, 5]}}}, ["params.train.epochs", "search.epochs"]),
    ({"params": {"optim.weight_decay": {"loguniform": [1e-2, 1e-5]}}}, ["params.optim.weight_decay", "below"]),
    ({"params": {"optim.weight_decay": {"loguniform": [0.0, 1e-2]}}}, ["params.optim.weight_decay", "positive"]),
    ({"params": {"model.dropout": {"uniform": [0.1]}}}, ["params.model.dropout", "[lo, hi]"]),
    ({"params": {"model.dropout": {"normal": [0.1, 0.9]}}}, ["params.model.dropout", "unknown distribution"]),
    ({"params": {"model.dropout": {"uniform": [0.1, 0.5]}}}, ["params.model.dropout", "0.7", "outside"]),
    ({"params": {"model.dropout": {"choice": ["high", 0.7]}}}, ["model.dropout", "number"]),
    ({"params": {"loss.k": {"int": [1.5, 4]}}}, ["params.loss.k", "integers"]),
    ({"params": {"model.dropout": {"grid": [0.5, 0.7]}, "optim.lr": {"loguniform": [1e-4, 1e-2]}},
      "search": {"sampler": "grid"}}, ["search.sampler", "grid"]),
    ({"search": {"sampler": "grid", "num_samples": 3}}, ["search.sampler"]),
    ({"search": {"num_samples": None}}, ["search.num_samples", "missing"]),
    ({"search": {"metric": "val_loss", "mode": "max"}}, ["search.mode"]),
    ({"search": {"metric": "val_accuracy"}}, ["search.metric"]),
    ({"search": {"metric": "test_auc"}}, ["search.metric", "test set", "--diagnostic", "val_ref_loss"]),
    ({"search": {"metric": "test_ap"}}, ["search.metric", "test set", "--diagnostic"]),
    ({"fixed": {"train.selection": "test_auc"}}, ["fixed.train.selection", "test_auc", "search.metric"]),
    ({"fixed": {"train.min_delta": 0.1}}, ["fixed.train.min_delta", "search.min_delta"]),
    ({"fixed": {"train.reference_loss": {"k": 4}}}, ["fixed.train.reference_loss", "managed"]),
    ({"params": {"train.selection_window": {"int": [1, 5]}}},
     ["params.train.selection_window", "search.selection_window"]),
    ({"search": {"selection_rule": "median"}}, ["search.metric, search.selection_rule", "median"]),
    ({"search": {"selection_ema": 1.5}}, ["search.selection_ema", "selection_ema"]),
    ({"search": {"epochs": 0}}, ["search.epochs"]),
    ({"scheduler": {"name": "hyperband"}}, ["scheduler.name"]),
    ({"scheduler": {"grace_period": 10}}, ["scheduler.grace_period"]),
    ({"resources": {"gpus_per_trial": 1.5}}, ["resources.gpus_per_trial"]),
    ({"resources": {"cpu_per_trial": 1}}, ["resources", "cpu_per_trial"]),
    ({"fixed": {"train.batch_size": 8}}, ["fixed", "train.batch_size"]),
    ({"sampler": "tpe"}, ["unknown key", "sampler"]),
    ({"base": "missing.yaml"}, ["base", "missing.yaml"]),
])
def test_invalid_spaces_name_the_file_and_the_key(tmp_path, change, words):
    merged = {**GOOD, **change}
    if "search" in change:
        merged["search"] = {**GOOD["search"], **change["search"]}
    space = write_space(tmp_path, merged)
    with pytest.raises(SpaceError) as error:
        load_space(space)
    message = str(error.value)
    assert str(space) in message
    for word in words:
        assert word in message, message


def test_grid_runs_exactly_its_grid(tmp_path):
    space = load_space(write_space(tmp_path, {
        **GOOD, "search": {"sampler": "grid", "epochs": 2},
        "params": {"optim.weight_decay": {"grid": [5e-5, 5e-4, 5e-3]}, "model.dropout": {"grid": [0.5, 0.7]}}}))
    assert space.search.num_samples == space.grid_size == 6
    with pytest.raises(SpaceError, match="exactly its grid"):
        space.with_settings(num_samples=4)


def test_command_line_resources_are_validated(tmp_path):
    space = load_space(write_space(tmp_path, GOOD))
    assert space.with_settings(cpus_per_trial=3, gpus_per_trial=0.25).resources.threads == 3
    for bad in ({"cpus_per_trial": 0}, {"gpus_per_trial": -1}, {"num_samples": 0}):
        with pytest.raises(SpaceError):
            space.with_settings(**bad)


def test_dataset_paths_in_a_space_are_made_absolute(tmp_path):
    (tmp_path / "data").mkdir()
    space = load_space(write_space(tmp_path, {**GOOD, "dataset": "data/dataset.yaml"}))
    assert space.base.data.dataset == str((tmp_path / "data" / "dataset.yaml").resolve())
    assert isinstance(space, SearchSpace)


# ------------------------------------------------------------------------------------------------ honest ranking

LOSS_SEARCH = {"loss.margin": {"uniform": [50.0, 200.0]}, "optim.weight_decay": {"loguniform": [1.0e-5, 1.0e-2]}}


def test_ranking_on_the_trained_objective_while_searching_the_loss_is_refused(tmp_path):
    path = write_space(tmp_path, {**with_params(**LOSS_SEARCH), "search": {**GOOD["search"], "metric": "val_loss"}})
    with pytest.raises(SpaceError) as error:
        load_space(path)
    message = str(error.value)
    for word in (str(path), "search.metric", "val_loss", "loss.margin", "val_ref_loss", "val_video_auc",
                 "val_video_ap"):
        assert word in message, message
    # without a searched loss key, val_loss is one function for every trial: accepted
    assert load_space(write_space(tmp_path, {**GOOD, "search": {**GOOD["search"], "metric": "val_loss"}}))


def test_val_ref_loss_is_the_default_and_every_trial_selects_with_it_and_gets_the_base_loss(tmp_path):
    space = load_space(write_space(tmp_path, with_params(**LOSS_SEARCH)))
    assert (space.search.metric, space.search.mode) == ("val_ref_loss", "min")
    trial = space.trial_config({"loss.margin": 150.0, "optim.weight_decay": 1.0e-3}).train
    assert trial.selection == "val_ref_loss"
    # the base file sets k: 3; every other loss argument is the loss's default (margin 100, not the trial's 150)
    assert trial.reference_loss["k"] == 3 and trial.reference_loss["margin"] == 100.0
    assert space.trial_config(space.baseline_point()).train.reference_loss == trial.reference_loss
    assert space.protocol == {"checkpoint_chosen_by": "val", "trial_chosen_by": "val"}


def test_the_metric_direction_comes_from_the_catalogue(tmp_path):
    for metric, mode in (("val_video_ap", "max"), ("val_video_auc", "max"), ("val_ref_loss", "min")):
        space = load_space(write_space(tmp_path, {**GOOD, "search": {**GOOD["search"], "metric": metric}}))
        assert space.search.mode == mode and space.sweep_config().train.selection == metric
    with pytest.raises(SpaceError, match="maximised"):
        load_space(write_space(tmp_path, {**GOOD, "search": {**GOOD["search"], "metric": "val_video_ap",
                                                             "mode": "min"}}))


def test_a_test_metric_needs_diagnostic_and_is_labelled_test_selected(tmp_path):
    path = write_space(tmp_path, {**GOOD, "search": {**GOOD["search"], "metric": "test_auc"}})
    with pytest.raises(SpaceError, match="--diagnostic"):
        load_space(path)
    space = load_space(path, diagnostic=True)
    assert space.diagnostic and space.search.uses_test_data and space.search.mode == "max"
    assert space.sweep_config().train.selection == "test_auc"
    assert space.protocol == {"checkpoint_chosen_by": "test", "trial_chosen_by": "test",
                              "protocol": "test-selected"}


def test_the_space_sets_the_selection_rule_of_every_trial(tmp_path):
    fixed_same = {"train.selection": "val_video_auc"}  # repeating the metric is allowed
    space = load_space(write_space(tmp_path, {
        **GOOD, "fixed": fixed_same,
        "search": {**GOOD["search"], "metric": "val_video_auc", "selection_rule": "moving_average",
                   "selection_window": 4, "min_delta": 0.01}}))
    train = space.trial_config(space.baseline_point()).train
    assert (train.selection, train.selection_rule, train.selection_window, train.min_delta) == (
        "val_video_auc", "moving_average", 4, 0.01)
    assert train.selection_ema == BASE_TRAIN.selection_ema  # not set by the space: the base config's
    base = load_space(write_space(tmp_path, {**GOOD, "search": {**GOOD["search"]}},
                                  {**BASE, "train": {**BASE["train"], "selection_rule": "ema", "selection_ema": 0.3}}))
    train = base.sweep_config().train
    assert (train.selection_rule, train.selection_ema, train.selection) == ("ema", 0.3, "val_ref_loss")
