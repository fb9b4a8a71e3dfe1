"""The one place a run's ``metrics.jsonl`` is parsed.

``tina.train`` appends one JSON object per logging step (``{"step": int, <TRL keys>}``) and a run
that is still going may have a half-written last line. Everything in ``analysis`` reads metrics
through :func:`read_metrics` so that those edge cases are handled once:

* missing file -> empty frame (a run that has not logged yet is not an error here; callers that
  need the file to exist check for it themselves, as the CLIs do);
* blank lines are skipped;
* an undecodable line is skipped. The last line is expected to be truncated while a run writes, so
  that is silent; a corrupt line anywhere else raises a ``UserWarning`` naming the line;
* lines that are not objects or have no valid ``step`` (an integer in [0, 2**63-1]) are skipped,
  with a note;
* a value that is no finite number (Infinity, NaN, a string, a list, 10**400) becomes NaN, with a
  note naming the column and step: one bad number never sinks a reader of the whole sweep;
* duplicate steps (a run resumed from a checkpoint logs the same steps again) are merged so that the
  LATER line wins key by key (``groupby("step").last()``): a re-logged step replaces the earlier
  one, and a trailing end-of-training line that shares the last step (``train_runtime`` ...) adds
  its keys without wiping that step's training metrics; re-logged values and steps out of order
  get a note;
* keys written with spaces around their slashes (notebook exports) are TRL's keys (normalise_key);
* the result is sorted by ``step`` (int64) with a fresh index; other columns are as JSON gave them
  (numbers -> float/int, ``null`` -> NaN). Notes: warned, and in ``df.attrs["notes"]``.
"""

from __future__ import annotations

import json
import math
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from tina import run_dir as rd
from tina.run_dir import METRICS

__all__ = ["read_metrics", "metrics_path", "normalise_key"]

_SLASH = re.compile(r"\s*/\s*")


def normalise_key(key: str) -> str:
    """Notebook exports write TRL's keys with spaces around the slashes
    (``rewards / format_reward / mean``): the same key as ``rewards/format_reward/mean``."""
    return _SLASH.sub("/", key.strip()) if "/" in key else key.strip()


def metrics_path(path: str | Path) -> Path:
    """``path`` itself, or ``path/metrics.jsonl`` when ``path`` is a run directory."""
    p = Path(path)
    return p / METRICS if p.is_dir() else p


def _loads(text: str, constants: list[str]):
    """json.loads, counting the non-standard constants Python's json reads (NaN, Infinity, -Infinity)."""
    return json.loads(text, parse_constant=lambda c: constants.append(c) or float(c.replace("inity", "")))


def _parse(lines: list[tuple[int, str]], path: Path, constants: list[str], notes: list[str]) -> list[tuple[int, object]]:
    """Decode the non-blank (line number, text) pairs into (line number, value): a corrupt line
    is noted, except the last, which may be half-written while a run writes and is dropped silently.

    One ``json.loads`` of the lines joined as an array is ~2x faster than a call per line, which
    matters when a report reads a thousand runs; the per-line path runs only when that fails."""
    for n in (len(lines), len(lines) - 1):  # whole file, then all but a half-written last line
        try:
            found: list[str] = []
            values = _loads("[" + ",".join(ln for _, ln in lines[:n]) + "]", found)
        except (json.JSONDecodeError, RecursionError):
            continue
        if len(values) == n:  # one value a line (a line "1, 2" would shift the numbering)
            constants += found
            return [(number, v) for (number, _), v in zip(lines, values)]
    out = []
    for k, (number, line) in enumerate(lines):
        try:
            out.append((number, _loads(line, constants)))
        except (json.JSONDecodeError, RecursionError):
            if k != len(lines) - 1:
                notes.append(f"{path}:{number}: skipping corrupt metrics line")
    return out


def _number(v) -> float:
    """A metric value as a float: NaN for null; None for what is no number (a string, a list, a
    bool, Infinity, an integer beyond float's range)."""
    if v is None:
        return math.nan
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    try:
        f = float(v)
    except OverflowError:
        return None
    return f if math.isfinite(f) else None


def _clean(df: pd.DataFrame, path: Path) -> list[str]:
    """Make every metric column numbers or NaN; one note per column that had other values."""
    notes = []
    for col in df.columns.drop("step"):
        column = df[col]
        if column.dtype.kind in "iuf" and (column.dtype.kind != "f" or np.isfinite(column.fillna(0)).all()):
            continue
        values = [_number(v) for v in column.tolist()]
        bad = [i for i, v in enumerate(values) if v is None]
        if bad:
            steps = df["step"].iloc[bad].tolist()
            notes.append(f"{path}: {col}: {len(bad)} value(s) not a finite number, dropped "
                         f"(step {steps[0]}: {str(column.iloc[bad[0]])[:40]!s}"
                         f"{f'; steps {steps[:5]}' if len(bad) > 1 else ''})")
        df[col] = pd.Series([math.nan if v is None else v for v in values], index=df.index, dtype="float64")
    return notes


def read_metrics(path: str | Path) -> pd.DataFrame:
    """Read a run's metrics.jsonl (or a run directory holding one) into a DataFrame sorted by step.

    Returns an empty frame with a ``step`` column when the file is missing or holds no usable line.
    What was dropped or repaired (lines that are no record, steps no step can be, values no finite
    number, steps logged twice or out of order) is warned (UserWarning, naming the file) and listed
    in ``df.attrs["notes"]``: one bad number is a note on its run, never an exception.
    """
    p = metrics_path(path)
    empty = pd.DataFrame({"step": pd.Series([], dtype="int64")})
    empty.attrs["notes"] = []
    if not p.is_file():
        return empty
    text = p.read_text(encoding="utf-8", errors="replace")
    lines = [(i + 1, ln) for i, ln in enumerate(text.splitlines()) if ln.strip()]
    rows, notes, skipped, constants = [], [], [], []
    parsed = _parse(lines, p, constants, notes)
    if "NaN" in constants:  # Infinity is noted by the column it is in (below)
        notes.append(f"{p}: {constants.count('NaN')} NaN value(s), read as missing")
    for number, obj in parsed:
        step = rd.as_step(obj.get("step")) if isinstance(obj, dict) else None
        if step is None:
            skipped.append(f"{number} ({'step ' + repr(obj.get('step'))[:30] if isinstance(obj, dict) else type(obj).__name__})")
            continue
        if any(" " in k for k in obj):  # cheap test first: TRL's own keys have no spaces
            obj = {normalise_key(k): v for k, v in obj.items()}
        rows.append({**obj, "step": step})
    if skipped:
        notes.append(f"{p}: {len(skipped)} line(s) with no valid step (an integer from 0 to 2**63-1) "
                     f"skipped: line {', '.join(skipped[:3])}{' ...' if len(skipped) > 3 else ''}")
    df = pd.DataFrame.from_records(rows) if rows else empty.copy()
    if rows:
        notes += _clean(df, p)
        order = df["step"].to_numpy()
        if (np.diff(order) < 0).any():
            notes.append(f"{p}: steps out of order in the file; sorted by step")
        if not df["step"].is_unique:
            twice = df[df["step"].duplicated(keep=False)]
            counts = twice.drop(columns=[c for c in ("epoch",) if c in twice]).groupby("step").count()
            if (counts > 1).any().any():  # not the end-of-training line, which adds its own keys to the last step
                notes.append(f"{p}: steps logged more than once ({sorted(set(twice['step']))[:5]}); the later line kept")
            # later lines win key by key (groupby().last() skips NaN: missing keys keep earlier values)
            df = df.groupby("step", sort=True).last().reset_index()
        elif (np.diff(order) < 0).any():
            df = df.sort_values("step", kind="stable").reset_index(drop=True)
        df["step"] = df["step"].astype("int64")
    for n in notes:
        warnings.warn(n, UserWarning, stacklevel=2)
    df.attrs["notes"] = notes
    return df
