"""The one atomic writer (vad.atomic) and the one YAML loader (vad.yaml_file)."""

import errno
import json
import os
from pathlib import Path

import numpy as np
import pytest

import vad.atomic
from vad.atomic import atomic_output, atomic_write_bytes, atomic_write_json, atomic_write_text
from vad.checkpoint import load_checkpoint, save_checkpoint
from vad.config import ConfigError, TrainConfig
from vad.data.config import DatasetConfig, DatasetConfigError
from vad.yaml_file import load_yaml, read_yaml


def test_atomic_writes_replace_the_file_and_leave_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "out.json"
    atomic_write_text(target, "old")
    assert target.read_text() == "old"
    atomic_write_json(target, {"x": np.float32(1.5), "n": np.int64(3), "a": np.arange(2)})
    assert json.loads(target.read_text()) == {"x": 1.5, "n": 3, "a": [0, 1]}
    atomic_write_bytes(target, b"\x00\x01")
    assert target.read_bytes() == b"\x00\x01"
    with atomic_output(tmp_path / "array.npy") as tmp:
        assert tmp.parent == tmp_path and tmp.suffix == ".npy" and tmp.name != "array.npy"
        np.save(tmp, np.arange(4))
    assert np.load(tmp_path / "array.npy").tolist() == [0, 1, 2, 3]
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["array.npy", "out.json", "sub"]


def test_no_space_left_names_the_path_and_keeps_the_old_file(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "result.json"
    atomic_write_text(target, "previous")

    def full_disk(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(vad.atomic.os, "fsync", full_disk)
    with pytest.raises(OSError) as caught:
        atomic_write_json(target, {"a": 1})
    assert caught.value.errno == errno.ENOSPC
    assert str(caught.value).endswith(f"No space left on device ({target})")
    assert target.read_text() == "previous"
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]  # the temporary file is gone


def test_a_failing_writer_leaves_the_old_checkpoint(tmp_path: Path, monkeypatch) -> None:
    path = save_checkpoint(tmp_path / "last.pt", {"epoch": 1})

    def broken_save(obj, f) -> None:
        Path(f).write_bytes(b"half a checkp")
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr("vad.checkpoint.torch.save", broken_save)
    with pytest.raises(OSError, match=r"Input/output error \(.*last\.pt\)"):
        save_checkpoint(path, {"epoch": 2})
    assert load_checkpoint(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_load_yaml_reads_safely_and_names_missing_files(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("a: 1\nb: [x, y]\n")
    assert load_yaml(good, "config file") == {"a": 1, "b": ["x", "y"]}
    assert read_yaml(good, "config file")[1] == good.read_text()
    (tmp_path / "empty.yaml").write_text("")
    assert load_yaml(tmp_path / "empty.yaml", "config file") is None
    with pytest.raises(ConfigError, match=r"^space file not found: .*nope\.yaml$"):
        load_yaml(tmp_path / "nope.yaml", "space file")
    unsafe = tmp_path / "unsafe.yaml"
    unsafe.write_text("x: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(ConfigError, match="malformed YAML"):  # safe_load refuses Python tags
        load_yaml(unsafe, "config file")


def test_malformed_yaml_names_the_file_the_line_and_what_it_is(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  name: rtfm\n  hidden: [1, 2\noptim: {}\n")
    with pytest.raises(ConfigError) as caught:
        load_yaml(bad, "config file")
    message = str(caught.value)
    assert message.startswith(f"{bad}: malformed YAML in the config file, line ")
    assert "\n" not in message
    line = int(message.split(", line ")[1].split(",")[0])
    assert 3 <= line <= 4  # where PyYAML notices the unclosed flow sequence
    # every YAML reader goes through it, each with its own error class
    with pytest.raises(ConfigError, match=r"bad\.yaml: malformed YAML in the config file, line \d+"):
        TrainConfig.from_yaml(bad)
    with pytest.raises(DatasetConfigError, match=r"bad\.yaml: malformed YAML in the dataset file, line \d+"):
        DatasetConfig.from_yaml(bad)
    from search.sweep.space import SpaceError, load_space

    with pytest.raises(SpaceError, match=r"bad\.yaml: malformed YAML in the space file, line \d+"):
        load_space(bad)


def test_train_cli_prints_one_error_line_for_malformed_yaml(tmp_path: Path, capsys) -> None:
    from vad.train import main

    bad = tmp_path / "broken.yaml"
    bad.write_text("train: {epochs: 3\n")
    assert main(["--config", str(bad), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "broken.yaml" in err[0] and "line " in err[0]
