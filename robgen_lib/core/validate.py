"""Value checks: each turns a user's value (often a string from papermill) into the type a
knob needs, or raises :class:`ConfigError` naming what was expected.

A check is ``check(name, value) -> value``; the factories below make them.
"""
from __future__ import annotations

import math
import os
from fractions import Fraction
from typing import Any, Callable, Iterable, Mapping

import numpy as np

from .errors import ConfigError

__all__ = ["as_float", "number", "budget", "integer", "choice", "list_of", "optional", "optional_path", "text",
           "boolean"]

Check = Callable[[str, Any], Any]


def as_float(name: str, value: Any) -> float:
    """A finite float from a number or a string such as ``"0.03"`` or ``"8/255"``."""
    if isinstance(value, bool):
        raise ConfigError(f"{name} must be a number, got {value!r}")
    if isinstance(value, str):
        try:
            value = float(Fraction(value.strip()))
        except (ValueError, ZeroDivisionError):
            raise ConfigError(f"{name} must be a number such as 0.03 or 8/255, got {value!r}") from None
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(out):
        raise ConfigError(f"{name} must be finite, got {value!r}")
    return out


def number(lo: float | None = None, hi: float | None = None, *, lo_open: bool = False, hint: str = "") -> Check:
    def check(name: str, value: Any) -> float:
        out = as_float(name, value)
        if lo is not None and (out < lo or (lo_open and out == lo)):
            rel = ">" if lo_open else ">="
            raise ConfigError(f"{name} must be {rel} {lo}, got {out}")
        if hi is not None and out > hi:
            raise ConfigError(f"{name} must be <= {hi}, got {out}{hint}")
        return out

    return check


def budget(*, lo_open: bool = False) -> Check:
    """An ℓ∞ budget or step: a number in [0, 1] pixel units (``8/255`` is welcome)."""
    return number(0.0, 1.0, lo_open=lo_open, hint=" (budgets are in [0,1] pixel units)")


def integer(lo: int | None = None, hi: int | None = None) -> Check:
    def check(name: str, value: Any) -> int:
        if isinstance(value, bool):
            raise ConfigError(f"{name} must be an integer, got {value!r}")
        if isinstance(value, str):
            try:
                value = int(value.strip())
            except ValueError:
                raise ConfigError(f"{name} must be an integer, got {value!r}") from None
        if isinstance(value, float):
            if not math.isfinite(value) or value != int(value):
                raise ConfigError(f"{name} must be an integer, got {value!r}")
            value = int(value)
        if not isinstance(value, (int, np.integer)):
            raise ConfigError(f"{name} must be an integer, got {value!r}")
        value = int(value)
        if lo is not None and value < lo:
            raise ConfigError(f"{name} must be >= {lo}, got {value}")
        if hi is not None and value > hi:
            raise ConfigError(f"{name} must be <= {hi}, got {value}")
        return value

    return check


def choice(*allowed: str) -> Check:
    def check(name: str, value: Any) -> str:
        if value not in allowed:
            raise ConfigError(f"unknown {name} {value!r}; allowed: {', '.join(map(repr, allowed))}")
        return value

    return check


def list_of(item: Check, *, min_len: int = 1) -> Check:
    """A tuple of ``item`` values from a list, a comma-separated string such as ``"0,5,10"``
    (brackets welcome) or a single number; an empty element (``"0,,4"``) is refused."""
    example = 'a list such as "0,5,10" or [0, 5, 10]'

    def check(name: str, value: Any) -> tuple:
        given = value
        if isinstance(value, str):
            inner = value.strip()
            if inner[:1] + inner[-1:] in ("[]", "()"):
                inner = inner[1:-1]
            value = [] if not inner.strip() else inner.split(",")
            empty = [i for i, v in enumerate(value) if not v.strip()]
            if empty:
                raise ConfigError(f"{name}={given!r} has an empty element ({name}[{empty[0]}]); give {example}, "
                                  f"one value between each pair of commas")
        elif isinstance(value, (int, float, np.number)) and not isinstance(value, bool):
            value = [value]      # papermill reads `-p grid 0.5` as a number: a list of one
        if isinstance(value, Mapping):
            raise ConfigError(f"{name} must be {example}, got a dict {given!r}")
        if isinstance(value, (set, frozenset)) or not isinstance(value, Iterable) or isinstance(value, bytes):
            raise ConfigError(f"{name} must be {example}, got {given!r}")
        out = tuple(item(f"{name}[{i}]", v) for i, v in enumerate(value))
        if len(out) < min_len:
            raise ConfigError(f"{name} needs at least {min_len} value(s), such as \"0,5,10\"; got {given!r}")
        return out

    return check


def optional(check: Check) -> Check:
    """``None`` (or an empty string) stays ``None``; anything else goes through ``check``."""
    def inner(name: str, value: Any):
        return None if value is None or value == "" else check(name, value)

    return inner


def optional_path(name: str, value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, (str, os.PathLike)):
        raise ConfigError(f"{name} must be a path, got {value!r}")
    return os.path.expanduser(str(value))


def text(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{name} must be a string, got {value!r}")
    return value


_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


def boolean(name: str, value: Any) -> bool:
    """True/False, or one of true/false, 1/0, yes/no, on/off (any case); anything else is refused."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE
    raise ConfigError(f"{name} must be true or false (also 1/0, yes/no), got {value!r}")
