"""A sweep's name, folders and record: where it lives, whether it may start, what ``--resume`` continues.

``<storage>/<name>/`` is the Tune experiment folder; ``<storage>/<name>/search/`` holds the toolkit's own files:
``sweep.json`` (this record, with the sweep's stage), ``tracking.json`` (the MLflow target), ``asha.json`` (the ASHA
rungs), ``base_config.yaml``, ``space.yaml``, ``confirm_plan.json`` (the confirmation's plan), and at the end
``summary.md``, ``summary.json``, ``confirm.md``, ``confirm.json`` and ``best_config.yaml``. The confirmation
(``search.sweep.confirm``) is a second Tune experiment, ``<storage>/<name>/confirm/``. ``<storage>/<name>/driver.lock``
is the one-driver lock (:mod:`search.sweep.lock`).

The records a resume reads (``sweep.json``, ``tracking.json``, ``asha.json``, ``confirm_plan.json``) are written
atomically, the previous good copy kept as ``<file>.prev`` (:func:`save_record`); ``--resume`` checks them, and
Tune's experiment state, before anything runs (:func:`check_records`) and refuses a damaged sweep, saying what is
damaged and what is intact, rather than restarting it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from search.sweep.lock import SweepLockedError, acquire, release
from search.sweep.space import SearchSpace
from vad.atomic import atomic_write_json

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
RECORD_FILE = "sweep.json"


class SweepStateError(ValueError):
    """A sweep that may not start (name taken, another driver runs it) or cannot be resumed (nothing there, space
    changed, options differ, records damaged): printed as one ``error:`` line, exit status 2."""


RECORDS = ("sweep.json", "tracking.json", "asha.json", "confirm_plan.json")
"""The sweep's own records in ``<storage>/<name>/search/``, all written atomically; all but ``asha.json`` (rewritten
by the scheduler at every result) through :func:`save_record`, which keeps the previous copy."""
PREV = ".prev"


def save_record(path: Path, data: Any) -> None:
    """Write JSON record ``path`` atomically (temp + fsync + rename), first keeping the current copy as
    ``<path>.prev`` when it is intact. A failed write (``No space left on device (PATH)``) leaves both as they were."""
    if path.is_file():
        try:
            json.loads(path.read_text())
        except (OSError, ValueError):
            pass  # a damaged copy never replaces the previous good one
        else:
            prev = path.with_name(path.name + PREV)
            tmp = prev.with_name(f".{prev.name}.tmp")
            try:
                shutil.copyfile(path, tmp)
                os.replace(tmp, prev)
            except OSError as exc:
                tmp.unlink(missing_ok=True)
                raise OSError(exc.errno, f"{exc.strerror or exc} ({prev})") from exc
    atomic_write_json(path, data)


def record_problem(path: Path) -> str | None:
    """What is wrong with JSON record ``path`` (``None``: intact, or absent)."""
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        return f"{path.name} is damaged ({type(exc).__name__}: {str(exc)[:80]})"
    if not isinstance(data, dict):
        return f"{path.name} is damaged (not a JSON object)"
    return None


def check_records(paths: SweepPaths) -> None:
    """Refuse to resume a sweep whose records or Tune experiment state are damaged, naming what is damaged and
    what is intact (and the ``.prev`` copies there are); nothing is changed or deleted."""
    damaged, intact = [], []
    for name in RECORDS:
        path = paths.search_dir / name
        problem = record_problem(path)
        if problem:
            prev = path.with_name(path.name + PREV)
            good = prev.is_file() and record_problem(prev) is None
            damaged.append(problem + (f"; its previous copy {prev} is intact" if good else ""))
        elif path.exists():
            intact.append(f"search/{name}")
    for folder, label in ((paths.experiment_dir, ""), (paths.experiment_dir / "confirm", "confirm/")):
        states = sorted(folder.glob("experiment_state-*.json"))
        for state in states[-1:]:  # the newest snapshot is what Tune restores
            problem = record_problem(state)
            (damaged if problem else intact).append(f"Tune's {label}{problem or state.name}")
    if damaged:
        raise SweepStateError(f"sweep {paths.name!r} in {paths.experiment_dir} cannot be resumed: "
                              f"{'; '.join(damaged)}. Intact: {', '.join(intact) or 'nothing'}. Nothing was "
                              f"changed or deleted; restore the damaged file (e.g. from its .prev copy) and "
                              f"run --resume again")


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
    confirm_top: int | None = None
    confirm_seeds: int | None = None
    """The confirmation's settings (``--confirm-top``/``--confirm-seeds`` or the space's): a resumed sweep keeps
    them."""
    stage: str = "search"
    """``search`` (the Tuner's trials), ``confirm`` (the search is done; the seeds run) or ``done``."""
    num_samples: int | None = None
    """The number of trials (``--num-samples`` or the space's): a resumed sweep keeps it."""
    optuna_storage: str | None = None
    """``--optuna-storage`` (``None``: the SQLite file in the sweep folder)."""
    diagnostic: bool = False
    """``--diagnostic`` (a test-selected sweep)."""

    def save(self, folder: Path) -> None:
        save_record(folder / RECORD_FILE, asdict(self))  # a killed driver leaves the old record or the new

    @classmethod
    def load(cls, folder: Path) -> SweepRecord:
        data = json.loads((folder / RECORD_FILE).read_text())
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def conflicts(self, given: dict[str, Any]) -> None:
        """Refuse ``--resume`` options that differ from the recorded ones (``given``: ``{flag: value or None}``,
        ``None`` meaning "not given", which keeps the record's)."""
        recorded = {"--num-samples": self.num_samples, "--tracking-uri": self.tracking_uri,
                    "--optuna-storage": self.optuna_storage, "--diagnostic": self.diagnostic}
        for flag, value in given.items():
            kept = recorded[flag]
            if value is not None and kept is not None and value != kept:
                raise SweepStateError(f"{flag} cannot change on --resume: sweep {self.name!r} was started with "
                                      f"{flag} {kept}, this command gives {value} (drop the option, or start a "
                                      f"new sweep)")


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


def lock_sweep(paths: SweepPaths, *, wait: float = 0.0) -> Any:
    """This driver's exclusive lock of the sweep (:mod:`search.sweep.lock`), as a :class:`SweepStateError` naming the
    holder when another live driver runs it; a dead driver's lock is taken over (said on the console)."""
    try:
        lock = acquire(paths.experiment_dir, paths.name, wait=wait)
    except SweepLockedError as exc:
        raise SweepStateError(str(exc)) from None
    if lock.previous is not None:
        print(f"(sweep {paths.name}: the lock of its previous driver, {lock.previous.describe()}, was stale: "
              f"that driver is gone)", flush=True)
    return lock


def new_sweep(space: SearchSpace, storage: Path, name: str | None) -> SweepPaths:
    """Folders of a new sweep, created and locked by this driver; refused when ``<storage>/<name>`` exists already
    (naming its driver when one runs it)."""
    paths = SweepPaths(storage, check_name(name or default_name(space)))
    try:
        paths.storage.mkdir(parents=True, exist_ok=True)
        paths.experiment_dir.mkdir()
    except FileExistsError:
        try:
            release(acquire(paths.experiment_dir, paths.name, claim=False))
        except SweepLockedError as exc:
            raise SweepStateError(str(exc)) from None
        raise SweepStateError(f"sweep {paths.name!r} already exists in {storage}; continue it with --resume "
                              f"(--name {paths.name} --resume) or choose another --name") from None
    lock_sweep(paths, wait=2.0)  # a second driver may be probing the lock of the folder this one just made
    return paths


def check_owner(paths: SweepPaths) -> None:
    """Refuse to resume from a sweep folder not owned by this user, or writable by others: ``--resume`` unpickles
    Tune's state from there, and whoever can write it can run code in this driver (``--trust-storage`` allows)."""
    uid = os.getuid()
    for path in (paths.experiment_dir, *paths.experiment_dir.glob("*.pkl"), *paths.experiment_dir.glob("*.json")):
        info = path.stat()
        if info.st_uid != uid or info.st_mode & 0o002:
            why = "is owned by another user" if info.st_uid != uid else "is writable by other users"
            raise SweepStateError(f"--resume: {path} {why}; Tune would unpickle its state from there, which runs "
                                  f"code as you. Check the folder, then pass --trust-storage to resume anyway")


def resumed_sweep(space: SearchSpace, storage: Path, name: str | None, path: str | None, *,
                  trust_storage: bool = True) -> tuple[SweepPaths, SweepRecord]:
    """The sweep ``--resume [PATH]`` continues: ``PATH`` (an experiment folder), else ``--name`` in the storage,
    else the newest sweep of this space file there; locked by this driver, its records checked (and, unless
    ``trust_storage``, its owner). It must have been started from the same space file."""
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
    if paths.experiment_dir.is_dir():
        if not trust_storage:
            check_owner(paths)
        lock_sweep(paths)  # another live driver (maybe one that has not written its record yet) is named
    if not (record_folder / RECORD_FILE).exists():
        raise SweepStateError(f"nothing to resume: {paths.experiment_dir} holds no sweep started by search.run "
                              f"(pass the --storage the sweep used, or --resume <its folder>)")
    check_records(paths)
    record = SweepRecord.load(record_folder)
    if record.space_digest != space.digest:
        raise SweepStateError(f"sweep {paths.name!r} was started from {record.space_path} as it was then; "
                              f"{space.path} differs now (restore that file, or start a new sweep)")
    return paths, record


def _latest_of(space: SearchSpace, storage: Path) -> SweepPaths:
    candidates = []
    for record_file in storage.glob(f"*/search/{RECORD_FILE}"):
        try:
            record = json.loads(record_file.read_text())
        except (OSError, ValueError):
            continue
        if record.get("space_path") == str(space.path) and not record.get("smoke"):
            candidates.append((record.get("created", ""), record_file.parents[1].name))
    if not candidates:
        raise SweepStateError(f"no sweep of {space.path} in {storage} to resume; pass --name or --resume PATH")
    return SweepPaths(storage, max(candidates)[1])


def clean_temporary(folder: Path) -> None:
    """Remove the ``.checkpoint-*`` temporary folders a killed trial left in the experiment's trial folders."""
    for temporary in folder.glob("**/.checkpoint-*"):
        if temporary.is_dir():
            shutil.rmtree(temporary, ignore_errors=True)


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S")
