"""``benchmarks/RESULTS.md``: each benchmark owns one ``## <name>`` section and rewrites only that one, so the
benchmarks (and their authors) can update the file independently; plus the machine description they share."""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import re
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from benchmarks.machine import describe_machine
from benchmarks.proc import gib, total_ram

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
TITLE = "# Benchmark results (issue #6)\n"


def software_versions(names: tuple[str, ...] = ("numpy", "ray", "optuna", "mlflow")) -> dict[str, str]:
    """Installed versions of the libraries a sweep runs on (``-`` when missing)."""
    out = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "-"
    return out


def machine_summary() -> str:
    """One line: CPU, cores, RAM, torch and the sweep libraries' versions."""
    info = describe_machine(torch.device("cpu"))
    parts = [f"{info['cpu']}", f"{info['cores']} cores", f"{gib(total_ram())} GiB RAM",
             f"python {info['python']}", f"torch {info['torch']}"]
    parts += [f"{name} {version}" for name, version in software_versions().items()]
    return ", ".join(parts)


def update_section(name: str, body: str, path: Path = RESULTS) -> Path:
    """Replace (or append) the ``## <name>`` section of ``path`` with ``body``; other sections stay as they are.

    Read-modify-rename under a lock file, so two benchmarks finishing together do not lose each other's section.
    """
    lock = Path(tempfile.gettempdir()) / "wsvad-benchmark-results.lock"
    with _locked(lock):
        text = path.read_text() if path.is_file() else TITLE
        section = f"## {name}\n\n{body.strip()}\n"
        pattern = re.compile(rf"^## {re.escape(name)}[ \t]*\n.*?(?=^## |\Z)", re.S | re.M)
        if pattern.search(text):
            text = pattern.sub(lambda _: section + "\n", text, count=1).rstrip() + "\n"
        else:
            text = text.rstrip() + "\n\n" + section
        from vad.atomic import atomic_write_text

        atomic_write_text(path, text)
    return path


@contextlib.contextmanager
def _locked(lock: Path):
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    with open(lock, "a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def stamp() -> str:
    """``YYYY-mm-dd`` of the run, for the section headers."""
    return time.strftime("%Y-%m-%d")


def publish(report: dict[str, Any], text: str, *, section: str, results_section: Callable[[dict], str],
            json_path: Path | None, results_path: str | None) -> None:
    """A benchmark's ending: print ``text`` (its tables), write ``report`` to ``json_path`` and, with
    ``results_path``, replace the ``## <section>`` of that RESULTS file with ``results_section(report)``."""
    print()
    print(text)
    if json_path:
        json_path.write_text(json.dumps(report, indent=2, default=str))
    if results_path:
        written = update_section(section, results_section(report), Path(results_path))
        print(f"\nwrote the {section} section of {written}")


def add_output_arguments(parser: Any, section: str) -> None:
    """A benchmark's ``--json`` (the measurements) and ``--results`` (its ``## <section>`` of RESULTS.md)."""
    parser.add_argument("--json", type=Path, default=None, help="also write the measurements as JSON")
    parser.add_argument("--results", nargs="?", const=str(RESULTS), default=None,
                        help=f"write the '## {section}' section of RESULTS.md")


def run_line(command: str, seconds: float | None = None, extra: str = "") -> str:
    """The first line of a RESULTS section: when, which command, on what machine (and how long it took)."""
    took = f" ({seconds:.0f} s{extra})" if seconds is not None else (f" ({extra.lstrip('; ')})" if extra else "")
    return f"Run {stamp()} with `{command}` on {machine_summary()}{took}."

