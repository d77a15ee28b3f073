"""The one YAML loader: ``yaml.safe_load`` of a file, with errors that name the file, the line and what it is."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from vad.coerce import ConfigError


def load_yaml(path: str | Path, what: str, *, error: type[Exception] = ConfigError) -> Any:
    """The parsed content of ``path`` (``yaml.safe_load``; ``None`` for an empty file).

    ``what`` says what the file is (``config file``, ``space file``...). A missing or unreadable file and
    malformed YAML raise ``error`` (default :class:`~vad.coerce.ConfigError`) with one line naming the file, the
    line and column of the problem, and ``what``."""
    return read_yaml(path, what, error=error)[0]


def read_yaml(path: str | Path, what: str, *, error: type[Exception] = ConfigError) -> tuple[Any, str]:
    """:func:`load_yaml` that also returns the file's text (for callers that keep it)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error(f"{what} not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"{path}: cannot read the {what} ({exc})") from None
    try:
        return yaml.safe_load(text), text
    except yaml.YAMLError as exc:
        raise error(f"{path}: malformed YAML in the {what}{_where(exc)}") from None


def _where(exc: yaml.YAMLError) -> str:
    """``, line L, column C: problem`` from a PyYAML error (1-based), as far as it tells."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    if mark is None:
        return f": {problem}"
    return f", line {mark.line + 1}, column {mark.column + 1}: {problem}"
