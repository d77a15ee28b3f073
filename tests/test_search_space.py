"""Search-space files: every shipped space loads; invalid ones fail fast naming the file and the key."""

from pathlib import Path

import pytest
import yaml

from search.space import SearchSpace, SpaceError, load_space

REPO = Path(__file__).resolve().parents[1]
SPACES = sorted((REPO / "spaces").glob("*.yaml"))
BASE = {
    "data": {"dataset": "synthetic:tiny"},
    "model": {"name": "rtfm", "dropout": 0.7, "hidden_dim": 16, "head_dims": [16, 8]},
    "loss": {"k": 3},
    "optim": {"lr": 1.0e-3, "weight_decay": 5.0e-4},
    "train": {"epochs": 4, "batch_per_class": 4},
}
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
    ({"search": {"metric": "test_auc"}}, ["search.metric", "train.test_every_epoch"]),
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
