"""One module per third-party library whose private internals the sweep machinery uses.

Ray Tune and Optuna do not expose everything a resumable, duplicate-free sweep needs (ASHA's rung history, the
Optuna trial behind a Tune trial id, the order of Optuna's grid). Every use of a private attribute of their classes
lives in :mod:`search.adapters.tune` or :mod:`search.adapters.optuna` as a small named function, and each adapter's
``check()`` builds real instances of the installed version and verifies that every internal it relies on is still
there (``tests/test_adapters.py`` runs them), so an upgrade that removes one fails with the library's version and
the missing attribute instead of deep inside a sweep. ``pyproject.toml`` bounds both libraries below their next
major version.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["AdapterError", "require"]


class AdapterError(RuntimeError):
    """An internal an adapter relies on is missing (or changed shape) in the installed version of its library."""


_STEP = re.compile(r"\.?([A-Za-z_]\w*)|\[(\d+)\]")


def require(library: str, version: str, adapter: str, obj: Any, path: str, kind: type | tuple[type, ...]) -> Any:
    """``obj`` followed along ``path`` (attribute names and ``[i]`` indices, e.g. ``_brackets[0]._rungs``); an
    :class:`AdapterError` naming the library, its version, the class and the attribute when a step is missing or the
    value is not a ``kind``."""
    value, walked = obj, type(obj).__name__
    for match in _STEP.finditer(path):
        name, index = match.groups()
        step = f".{name}" if name is not None else f"[{index}]"
        try:
            value = getattr(value, name) if name is not None else value[int(index)]
        except (AttributeError, IndexError, KeyError, TypeError):
            raise AdapterError(f"{library} {version}: {walked}{step} is missing ({adapter} relies on it); install a "
                               f"version the adapter supports (see pyproject.toml) or update the adapter") from None
        walked += step
    if not isinstance(value, kind):
        expected = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise AdapterError(f"{library} {version}: {walked} is a {type(value).__name__}, not a {expected} ({adapter} "
                           f"relies on it); install a version the adapter supports or update the adapter")
    return value
