"""A sweep's name, folders and record: where it lives, whether it may start, what ``--resume`` continues.

``<storage>/<name>/`` is the Tune experiment folder; ``<storage>/<name>/search/`` holds the toolkit's own files:
``sweep.json`` (this record), ``tracking.json`` (the MLflow target), ``asha.json`` (the ASHA rungs),
``base_config.yaml``, ``space.yaml``, and at the end ``summary.md``, ``summary.json`` and ``best_config.yaml``.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from search.space import SearchSpace

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
RECORD_FILE = "sweep.json"


class SweepStateError(RuntimeError):
    """A sweep that may not start (name taken) or cannot be resumed (nothing there, space changed)."""


@dataclass(frozen=True)
class SweepRecord:
    """The facts a resumed sweep must agree with."""

    name: str
    space_path: str
    space_digest: str
    tracking_uri: str
    created: str
    smoke: bool = False
    cpus_per_trial: float | None = None
    gpus_per_trial: float | None = None
    """The resources the trials got (after the GPU check): a resumed sweep keeps them."""

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / RECORD_FILE).write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, folder: Path) -> SweepRecord:
        return cls(**json.loads((folder / RECORD_FILE).read_text()))


@dataclass(frozen=True)
class SweepPaths:
    storage: Path
    name: str

    @property
    def experiment_dir(self) -> Path:
        """The Tune experiment folder, ``<storage>/<name>``."""
        return self.storage / self.name

    @property
    def search_dir(self) -> Path:
        """The toolkit's files of the sweep, ``<storage>/<name>/search``."""
        return self.experiment_dir / "search"


def default_name(space: SearchSpace) -> str:
    """``<space stem>-<YYYYmmdd-HHMMSS>`` (``smoke-`` in front for a smoke test)."""
    return f"{'smoke-' if space.smoke else ''}{space.stem}-{time.strftime('%Y%m%d-%H%M%S')}"


def check_name(name: str) -> str:
    if not NAME.match(name):
        raise SweepStateError(f"--name {name!r}: use letters, digits, '.', '_' and '-' (up to 128 characters)")
    return name


def new_sweep(space: SearchSpace, storage: Path, name: str | None) -> SweepPaths:
    """Folders of a new sweep; refused when ``<storage>/<name>`` exists already."""
    paths = SweepPaths(storage, check_name(name or default_name(space)))
    if paths.experiment_dir.exists():
        raise SweepStateError(f"sweep {paths.name!r} already exists in {storage}; continue it with --resume "
                              f"(--name {paths.name} --resume) or choose another --name")
    return paths


def resumed_sweep(space: SearchSpace, storage: Path, name: str | None, path: str | None) -> tuple[SweepPaths,
                                                                                                   SweepRecord]:
    """The sweep ``--resume [PATH]`` continues: ``PATH`` (an experiment folder), else ``--name`` in the storage,
    else the newest sweep of this space file there. It must have been started from the same space file."""
    if path:
        folder = Path(path).expanduser().resolve()
        if name and name != folder.name:
            raise SweepStateError(f"--resume {path} is sweep {folder.name!r}, not --name {name!r}")
        paths = SweepPaths(folder.parent, folder.name)
    elif name:
        paths = SweepPaths(storage, check_name(name))
    else:
        paths = _latest_of(space, storage)
    record_folder = paths.search_dir
    if not (record_folder / RECORD_FILE).is_file():
        raise SweepStateError(f"nothing to resume: {paths.experiment_dir} holds no sweep started by search.run "
                              f"(pass the --storage the sweep used, or --resume <its folder>)")
    record = SweepRecord.load(record_folder)
    if record.space_digest != space.digest:
        raise SweepStateError(f"sweep {paths.name!r} was started from {record.space_path} as it was then; "
                              f"{space.path} differs now (restore that file, or start a new sweep)")
    return paths, record


def _latest_of(space: SearchSpace, storage: Path) -> SweepPaths:
    candidates = []
    for record_file in storage.glob(f"*/search/{RECORD_FILE}"):
        record = json.loads(record_file.read_text())
        if record.get("space_path") == str(space.path) and not record.get("smoke"):
            candidates.append((record.get("created", ""), record_file.parents[1].name))
    if not candidates:
        raise SweepStateError(f"no sweep of {space.path} in {storage} to resume; pass --name or --resume PATH")
    return SweepPaths(storage, max(candidates)[1])


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S")
