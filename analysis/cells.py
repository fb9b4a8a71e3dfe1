"""How a value reads in a report's table cell: one rule for every table, so a number looks the
same in the run table, the paper comparison and the checkpoint experiment."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

DASH = "—"  # a value that does not exist (not evaluated, not logged), never 0


def isnan(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA


def num(v, digits: int = 3) -> str:
    if isnan(v):
        return DASH
    if isinstance(v, (bool, np.bool_)):
        return str(v)
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        v = float(v)
        if v == int(v) and abs(v) < 1e6:
            return str(int(v))
        if abs(v) >= 1e5:
            return f"{v:.2e}"
        if abs(v) < 1e-3:
            return f"{v:.3g}"
        return f"{v:.{digits}g}"
    return str(v)


def pct(v) -> str:
    """A fraction in [0, 1] as a percent with one decimal (the paper's tables' unit)."""
    return DASH if isnan(v) else f"{100 * float(v):.1f}"


def duration(s) -> str:
    if isnan(s):
        return DASH
    s = float(s)
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.1f} min" if s < 7200 else f"{s / 3600:.1f} h"


def sort_key(v):
    """Numbers in order, then text, then missing values."""
    if isnan(v):
        return (2, 0, "")
    if isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool):
        return (0, float(v), "")
    return (1, 0, str(v))


def clip(text, n: int) -> str:
    text = "" if isnan(text) else str(text)
    return text if len(text) <= n else text[: n - 1] + "…"
