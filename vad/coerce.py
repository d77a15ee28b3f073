"""Checking and converting plain YAML values against Python type hints, with errors that name the key."""

from __future__ import annotations

import collections.abc
import types
import typing
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
    return {k: coerce(v, accepted[k][0], f"{section}.{k}") for k, v in values.items()}
