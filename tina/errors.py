"""Errors a user can act on, and the range check every numeric config key goes through.

The bottom layer: it imports nothing of tina's, so every module may raise these without a cycle.
A ConfigError's message names the key (or file and line) and what is allowed; the CLIs print it
as one line with no traceback, because the fix is in the command, not in the code.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any


class ConfigError(ValueError):
    """A config value that cannot run; the message names the key and what is allowed."""


class DataError(ConfigError):
    """A data file that cannot be trained on; the message names the file, line or row, and field."""


class RunDirError(ConfigError):
    """A run directory that may not be written now (another writer, another config)."""


def require(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"{key}: {message}")


@dataclass(frozen=True)
class Range:
    """Allowed values of a numeric key: lo/hi (None: unbounded), each inclusive unless *_open."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    integer: bool = False

    def __str__(self) -> str:
        lo = "-inf" if self.lo is None else f"{self.lo:g}"
        hi = "inf" if self.hi is None else f"{self.hi:g}"
        kind = "an integer" if self.integer else "a number"
        return f"{kind} in {'(' if self.lo_open or self.lo is None else '['}{lo}, {hi}{')' if self.hi_open or self.hi is None else ']'}"

    def check(self, key: str, value: Any) -> None:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if ok and self.integer:
            ok = float(value).is_integer()
        if ok and self.lo is not None:
            ok = value > self.lo if self.lo_open else value >= self.lo
        if ok and self.hi is not None:
            ok = value < self.hi if self.hi_open else value <= self.hi
        require(ok, key, f"must be {self}, got {value!r}")


# Shorthands for the common bounds.
POSITIVE = Range(0, lo_open=True)
NON_NEGATIVE = Range(0)
POSITIVE_INT = Range(1, integer=True)
NON_NEGATIVE_INT = Range(0, integer=True)
FRACTION = Range(0, 1)  # [0, 1]


def bounds_of(cls: type) -> dict[str, Range]:
    """A schema dataclass's ranges: `BOUNDS` on the class, one per numeric field."""
    return getattr(cls, "BOUNDS", {})


def check_bounds(obj: Any, prefix: str = "") -> None:
    """Check every numeric field of a schema dataclass (recursively) against its Range.

    Optional fields may be None (None has its own meaning, documented at the field); the
    schema-walk test proves that every numeric field of every schema class has a bound.
    """
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            check_bounds(value, key + ".")
        elif f.name in bounds_of(type(obj)) and value is not None:
            for item in value if isinstance(value, (list, tuple)) else [value]:  # a list: each element
                bounds_of(type(obj))[f.name].check(key, item)
