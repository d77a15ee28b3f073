"""Checking and converting plain YAML values against Python type hints, with errors that name the key."""

from __future__ import annotations

import collections.abc
import math
import types
import typing
from dataclasses import dataclass
from typing import Any, Literal


class ConfigError(ValueError):
    """An invalid configuration value or key; the message names the key (and the file when known)."""


def coerce(value: Any, hint: Any, key: str) -> Any:
    """Return ``value`` converted to ``hint`` (int -> float, list -> tuple) or raise :class:`ConfigError`.

    Supported hints: bool, int, float, str, ``X | None``, ``tuple[X, ...]``, ``tuple[X, Y]``, ``Literal[...]``,
    ``dict``/``Any``.
    """
    origin = typing.get_origin(hint)
    if hint is Any or hint is dict or origin is dict:
        return value
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None:
            if type(None) in options:
                return None
            raise ConfigError(f"{key}: must not be null")
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return coerce(value, option, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{key}: {value!r} fits none of {hint}")
    if origin is Literal:
        allowed = typing.get_args(hint)
        if value not in allowed:
            raise ConfigError(f"{key}: {value!r} is not one of {', '.join(map(repr, allowed))}")
        return value
    if origin in (collections.abc.Sequence, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {type(value).__name__} {value!r}")
        (item,) = typing.get_args(hint) or (Any,)
        return tuple(coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value))
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {type(value).__name__} {value!r}")
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
        if len(args) != len(value):
            raise ConfigError(f"{key}: expected {len(args)} values, got {len(value)}")
        return tuple(coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{key}: expected an integer, got {type(value).__name__} {value!r}")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML reads 1e-3 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{key}: expected a number, got {type(value).__name__} {value!r}")
    if hint is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{key}: expected a string, got {type(value).__name__} {value!r}")
    raise ConfigError(f"{key}: unsupported type {hint!r}")


def signature_hints(fn: Any) -> dict[str, tuple[Any, Any]]:
    """``{name: (type hint, default)}`` of the keyword arguments of ``fn`` (a class: its ``__init__``)."""
    import inspect

    target = fn.__init__ if isinstance(fn, type) else fn
    hints = typing.get_type_hints(target)
    out = {}
    for name, param in inspect.signature(target).parameters.items():
        if name == "self" or param.kind not in (param.KEYWORD_ONLY, param.POSITIONAL_OR_KEYWORD):
            continue
        out[name] = (hints.get(name, Any), param.default)
    return out


def coerce_kwargs(values: dict[str, Any], fn: Any, section: str) -> dict[str, Any]:
    """Check ``values`` against the keyword arguments of ``fn``: unknown keys and wrong types name the key."""
    accepted = signature_hints(fn)
    unknown = sorted(set(values) - set(accepted))
    if unknown:
        raise ConfigError(
            f"unknown key(s) {', '.join(f'{section}.{k}' for k in unknown)}; "
            f"accepted: {', '.join(sorted(accepted))}"
        )
    out = {k: coerce(v, accepted[k][0], f"{section}.{k}") for k, v in values.items()}
    check_limits(out, fn, section)
    return out


@dataclass(frozen=True)
class Limit:
    """The allowed values of one constructor argument (of each item, for a sequence argument).

    ``low``/``high``: bounds (``None``: unbounded), excluded when ``low_open``/``high_open``; numbers must be
    finite. ``choices``: the allowed values instead of a range. ``min_items``: the least length of a sequence.
    ``None`` values (the argument's "derive it" default) are always allowed.
    """

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple[Any, ...] = ()
    min_items: int = 0

    def problem(self, value: Any) -> str | None:
        """Why ``value`` is outside the limit (a phrase), or ``None`` when it is allowed."""
        if value is None:
            return None
        if isinstance(value, (list, tuple)):
            if len(value) < self.min_items:
                return f"needs at least {self.min_items} item(s), got {list(value)!r}"
            for i, item in enumerate(value):
                if (why := self.problem(item)) is not None:
                    return f"item {i} of {list(value)!r}: {why}"
            return None
        if self.choices:
            return None if value in self.choices else f"must be {self.describe()}, got {value!r}"
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None  # the type check already ran; limits are about numbers and choices
        if not math.isfinite(value):
            return f"must be a finite number {self.describe()}, got {value!r}"
        if not self._inside(value):
            return f"must be {self.describe()}, got {value!r}"
        return None

    def _inside(self, value: float) -> bool:
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            return False
        return not (self.high is not None and (value > self.high or (self.high_open and value == self.high)))

    def describe(self) -> str:
        """``"in [0, 1)"``, ``">= 1"``, ``"> 0"``, ``"finite"``, ``"one of 'a', 'b'"``."""
        if self.choices:
            return f"one of {', '.join(map(repr, self.choices))}"
        if self.low is not None and self.high is not None:
            return f"in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"
        if self.low is not None:
            return f"{'>' if self.low_open else '>='} {self.low:g}"
        if self.high is not None:
            return f"{'<' if self.high_open else '<='} {self.high:g}"
        return "finite"


PROBABILITY = Limit(0.0, 1.0, high_open=True)
"""A dropout probability: ``[0, 1)`` (1 would drop everything)."""
POSITIVE_INT = Limit(1)
"""A width, count, k or kernel size: ``>= 1``."""
POSITIVE = Limit(0.0, low_open=True)
"""A margin or scale that must be above zero."""
NON_NEGATIVE = Limit(0.0)
"""A loss weight or ratio: ``>= 0`` and finite."""


def limits_of(cls: Any) -> dict[str, Limit]:
    """The ``ARG_LIMITS`` a model or loss class declares (``{}`` when it declares none)."""
    return dict(getattr(cls, "ARG_LIMITS", {}) or {})


def check_limits(values: dict[str, Any], cls: Any, section: str) -> None:
    """Raise :class:`ConfigError` naming ``section.key`` for the first value outside ``cls.ARG_LIMITS``, then for
    a relation between arguments that ``cls.check_arguments(all_values) -> (key, why) | None`` refuses (the
    defaults filled in for the arguments ``values`` leaves out)."""
    name = getattr(cls, "__name__", cls)
    for key, limit in limits_of(cls).items():
        if key in values and (why := limit.problem(values[key])) is not None:
            raise ConfigError(f"{section}.{key}: {why} (the limit {name} declares)")
    relation = getattr(cls, "check_arguments", None)
    if relation is not None:
        import inspect

        full = {k: d for k, (_, d) in signature_hints(cls).items() if d is not inspect.Parameter.empty}
        full.update(values)
        if (problem := relation(full)) is not None:
            key, why = problem
            raise ConfigError(f"{section}.{key}: {why} (a relation {name} declares)")
