"""The typed training config: validation errors name the key and file; overrides; resolution of defaults."""

from pathlib import Path

import pytest
import yaml

from vad.config import ConfigError, TrainConfig, parse_set_arguments

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("name", ["rtfm_ucf", "rtfm_xd", "mgfn_ucf", "mgfn_xd", "s3r_ucf", "s3r_xd", "demo"])
def test_shipped_configs_validate(name):
    config = TrainConfig.from_yaml(CONFIGS / f"{name}.yaml")
    assert config.model_name in {"rtfm", "mgfn", "s3r"}
    assert TrainConfig.from_dict(config.to_dict()).to_dict() == config.to_dict()


def test_paper_defaults_match_the_authors():
    rtfm = TrainConfig.from_yaml(CONFIGS / "rtfm_ucf.yaml")
    assert (rtfm.optim.lr, rtfm.optim.weight_decay, rtfm.train.batch_per_class) == (1e-3, 5e-3, 32)
    assert rtfm.train.epochs * rtfm.train.steps_per_epoch == 15000
    mgfn = TrainConfig.from_yaml(CONFIGS / "mgfn_xd.yaml")
    assert (mgfn.optim.lr, mgfn.optim.weight_decay, mgfn.train.batch_per_class) == (1e-3, 5e-4, 16)
    s3r = TrainConfig.from_yaml(CONFIGS / "s3r_ucf.yaml")
    assert s3r.resample_method == "linear" and s3r.data.dictionary_ratio == 0.5


@pytest.mark.parametrize(
    "data, message",
    [
        ({"model": {"name": "rtfm"}, "optimizer": {}}, "unknown section(s) optimizer"),
        ({"model": {"name": "rtfm", "dropuot": 0.5}}, "model.dropuot"),
        ({"model": {"name": "rtfm"}, "loss": {"k": "three"}}, "loss.k: expected an integer"),
        ({"model": {"name": "rtfm"}, "optim": {"lr": "fast"}}, "optim.lr: expected a number"),
        ({"model": {"name": "rtfm"}, "train": {"selection": "test_f1"}}, "train.selection"),
        ({"model": {"name": "rtfm"}, "train": {"epoch": 3}}, "train.epoch"),
        ({"model": {"name": "rtfn"}}, "unknown model 'rtfn'"),
        ({"model": {}}, "model.name: missing"),
        ({"model": {"name": "mgfn", "depths": 3}}, "model.depths: expected a list"),
    ],
)
def test_invalid_configs_name_the_key_and_file(tmp_path, data, message):
    path = write(tmp_path, data)
    with pytest.raises(ConfigError) as info:
        TrainConfig.from_yaml(path)
    assert message in str(info.value) and str(path) in str(info.value)


def test_malformed_yaml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: {name: rtfm\n")
    with pytest.raises(ConfigError, match="malformed YAML"):
        TrainConfig.from_yaml(bad)
    with pytest.raises(ConfigError, match="not found"):
        TrainConfig.from_yaml(tmp_path / "nope.yaml")


def test_overrides_are_validated_and_typed():
    config = TrainConfig.from_yaml(CONFIGS / "demo.yaml", parse_set_arguments(["optim.lr=1e-4", "model.dropout=0.5"]))
    assert config.optim.lr == 1e-4 and config.model["dropout"] == 0.5
    assert config.with_overrides({"loss.k": 5}).loss["k"] == 5
    with pytest.raises(ConfigError, match="loss.kk"):
        config.with_overrides({"loss.kk": 5})
    with pytest.raises(ConfigError, match="expected <section>.<key>"):
        config.with_overrides({"lr": 5})
    with pytest.raises(ConfigError, match="expected key=value"):
        parse_set_arguments(["optim.lr"])


def test_resolved_fills_every_default_and_checks_the_dataset_width():
    config = TrainConfig.from_yaml(CONFIGS / "demo.yaml")
    resolved = config.resolved(feature_dim=128, n_crops=3)
    assert resolved.model["feature_dim"] == 128 and resolved.model["n_crops"] == 3
    assert resolved.model["dilations"] == (1, 2, 4) and resolved.loss["margin"] == 100.0
    with pytest.raises(ConfigError, match="model.feature_dim: the config says 2048 but the dataset has 128"):
        config.with_overrides({"model.feature_dim": 2048}).resolved(feature_dim=128, n_crops=3)


def test_flat_names_are_the_config_names():
    flat = TrainConfig.from_yaml(CONFIGS / "demo.yaml").flat()
    assert flat["model.name"] == "rtfm" and "optim.weight_decay" in flat and "train.selection" in flat
