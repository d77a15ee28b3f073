"""The small description of a feature dataset (``dataset.yaml``), validated on load.

```yaml
name: ucf-crime
layout: ucf                 # ucf: one (T, N, C) .npy per video; xd: N files (T, C) per video, <name>__<k>.npy
feature_root: /data/UCF_Train_ten_crop_i3d
test_feature_root: /data/UCF_Test_ten_crop_i3d    # optional, defaults to feature_root
train_list: /data/lists/ucf-i3d.list
test_list: /data/lists/ucf-i3d-test.list
ground_truth: /data/lists/gt-ucf.npy              # or annotations + annotation_format
annotations: null
annotation_format: null     # ucf_mat (folder of <Video>_x264.mat) | ucf_txt | xd_txt
n_crops: 10
feature_dim: 2048
split_index: 810            # optional: the authors' index split (first split_index train videos abnormal)
test_split_index: null      # optional: the same for the test list (needed when names carry no label, e.g.
                            # ShanghaiTech: 44)
val_fraction: 0.1
```
Relative paths are resolved against the folder holding the YAML file.
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from vad.yaml_file import load_yaml

LAYOUTS = ("ucf", "xd")
ANNOTATION_FORMATS = ("ucf_mat", "ucf_txt", "xd_txt")
_PATH_FIELDS = ("feature_root", "test_feature_root", "train_list", "test_list", "ground_truth", "annotations")


def _expand_variables(text: str, where: str) -> str:
    """``${VAR}`` / ``$VAR`` from the environment; an unset variable is an error naming the field."""
    for match in re.finditer(r"\$\{(\w+)\}|\$(\w+)", text):
        name = match.group(1) or match.group(2)
        if name not in os.environ:
            raise DatasetConfigError(f"{where}: environment variable {name} is not set (used in {text!r})")
    return os.path.expandvars(text)


class DatasetConfigError(ValueError):
    """A dataset description that cannot be used; the message names the file and the field."""


@dataclass(frozen=True)
class DatasetConfig:
    """Where a dataset's features, lists and ground truth live, and their expected shapes."""

    name: str
    layout: str
    feature_root: Path
    train_list: Path
    test_list: Path
    n_crops: int
    feature_dim: int
    test_feature_root: Path | None = None
    ground_truth: Path | None = None
    annotations: Path | None = None
    annotation_format: str | None = None
    split_index: int | None = None
    test_split_index: int | None = None
    val_fraction: float = 0.1
    frames_per_snippet: int = 16
    source: Path | None = field(default=None, compare=False)
    """The YAML file this config was read from (for error messages), if any."""

    def __post_init__(self) -> None:
        where = f"{self.source}: " if self.source else ""
        if self.layout not in LAYOUTS:
            raise DatasetConfigError(f"{where}layout: {self.layout!r} is not one of {', '.join(LAYOUTS)}")
        if self.annotation_format is not None and self.annotation_format not in ANNOTATION_FORMATS:
            raise DatasetConfigError(
                f"{where}annotation_format: {self.annotation_format!r} is not one of {', '.join(ANNOTATION_FORMATS)}"
            )
        if (self.annotations is None) != (self.annotation_format is None):
            raise DatasetConfigError(f"{where}annotations and annotation_format must be given together")
        for name in ("n_crops", "feature_dim", "frames_per_snippet"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise DatasetConfigError(f"{where}{name}: expected a positive integer, got {value!r}")
        for name in ("split_index", "test_split_index"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
                raise DatasetConfigError(f"{where}{name}: expected a non-negative integer or null, got {value!r}")
        if not isinstance(self.val_fraction, (int, float)) or isinstance(self.val_fraction, bool):
            raise DatasetConfigError(f"{where}val_fraction: expected a number in (0, 1), got {self.val_fraction!r}")
        if not 0.0 < float(self.val_fraction) < 1.0:
            raise DatasetConfigError(f"{where}val_fraction: expected a number in (0, 1), got {self.val_fraction!r}")

    @property
    def test_root(self) -> Path:
        """The folder test features are resolved against."""
        return self.test_feature_root or self.feature_root

    def to_dict(self) -> dict[str, Any]:
        """Plain, YAML-ready values (paths as absolute strings)."""
        out = {}
        for f in dataclasses.fields(self):
            if f.name == "source":
                continue
            value = getattr(self, f.name)
            out[f.name] = str(value) if isinstance(value, Path) else value
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any], base_dir: Path | None = None, source: Path | None = None) -> DatasetConfig:
        """Validate a mapping (unknown keys are errors) and resolve relative paths against ``base_dir``."""
        where = f"{source}: " if source else ""
        if not isinstance(data, dict):
            raise DatasetConfigError(f"{where}expected a mapping of dataset fields, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)} - {"source"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise DatasetConfigError(f"{where}unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        required = [f.name for f in dataclasses.fields(cls)
                    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        missing = [name for name in required if data.get(name) is None]
        if missing:
            raise DatasetConfigError(f"{where}missing required field(s): {', '.join(missing)}")
        values = dict(data)
        for name in _PATH_FIELDS:
            if values.get(name) is not None:
                path = Path(_expand_variables(str(values[name]), f"{where}{name}")).expanduser()
                if not path.is_absolute() and base_dir is not None:
                    path = base_dir / path
                values[name] = path.resolve()
        return cls(**values, source=source)

    @classmethod
    def from_yaml(cls, path: str | Path) -> DatasetConfig:
        """Read ``dataset.yaml`` (with ``yaml.safe_load``)."""
        path = Path(path).expanduser().resolve()
        data = load_yaml(path, "dataset file", error=DatasetConfigError)
        return cls.from_dict(data, base_dir=path.parent, source=path)

    def write_yaml(self, path: str | Path) -> Path:
        """Write this config as YAML (absolute paths) and return the path."""
        path = Path(path)
        path.write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))
        return path
