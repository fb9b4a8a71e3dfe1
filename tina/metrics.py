"""The one place a run's ``metrics.jsonl`` is parsed.

``tina.train`` appends one JSON object per logging step (``{"step": int, <TRL keys>}``) and a run
that is still going may have a half-written last line. Everything in ``analysis`` reads metrics
through :func:`read_metrics` so that those edge cases are handled once:

* missing file -> empty frame (a run that has not logged yet is not an error here; callers that
  need the file to exist check for it themselves, as the CLIs do);
* blank lines are skipped;
* an undecodable line is skipped. The last line is expected to be truncated while a run writes, so
  that is silent; a corrupt line anywhere else raises a ``UserWarning`` naming the line;
* lines that are not objects or have no integer ``step`` are skipped;
* duplicate steps (a run resumed from a checkpoint logs the same steps again) are merged so that the
  LATER line wins key by key (``groupby("step").last()``): a re-logged step replaces the earlier
  one, and a trailing end-of-training line that shares the last step (``train_runtime`` ...) adds
  its keys without wiping that step's training metrics;
* keys written with spaces around their slashes (notebook exports) are TRL's keys (normalise_key);
* the result is sorted by ``step`` (int64) with a fresh index; other columns are as JSON gave them
  (numbers -> float/int, ``null`` -> NaN).
"""

from __future__ import annotations

import json
import math
import re
import warnings
from pathlib import Path

import pandas as pd

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


def _step_of(obj) -> int | None:
    step = obj.get("step")
    if isinstance(step, bool) or step is None:
        return None
    if isinstance(step, int):
        return step
    if isinstance(step, float) and math.isfinite(step) and step == int(step):
        return int(step)
    return None


def _parse(lines: list[tuple[int, str]], path: Path) -> list:
    """Decode the non-blank (line number, text) pairs: a corrupt line warns, except the last, which
    may be half-written while a run writes and is dropped silently.

    One ``json.loads`` of the lines joined as an array is ~2x faster than a call per line, which
    matters when a report reads a thousand runs; the per-line path runs only when that fails."""
    for n in (len(lines), len(lines) - 1):  # whole file, then all but a half-written last line
        try:
            return json.loads("[" + ",".join(ln for _, ln in lines[:n]) + "]")
        except json.JSONDecodeError:
            pass
    objs = []
    for k, (number, line) in enumerate(lines):
        try:
            objs.append(json.loads(line))
        except json.JSONDecodeError:
            if k != len(lines) - 1:
                warnings.warn(f"{path}:{number}: skipping corrupt metrics line", UserWarning,
                              stacklevel=3)
    return objs


def read_metrics(path: str | Path) -> pd.DataFrame:
    """Read a run's metrics.jsonl (or a run directory holding one) into a DataFrame sorted by step.

    Returns an empty frame with a ``step`` column when the file is missing or holds no usable line.
    """
    p = metrics_path(path)
    empty = pd.DataFrame({"step": pd.Series([], dtype="int64")})
    if not p.is_file():
        return empty
    text = p.read_text(encoding="utf-8", errors="replace")
    lines = [(i + 1, ln) for i, ln in enumerate(text.splitlines()) if ln.strip()]
    rows = []
    for obj in _parse(lines, p):
        step = _step_of(obj) if isinstance(obj, dict) else None
        if step is not None:
            if any(" " in k for k in obj):  # cheap test first: TRL's own keys have no spaces
                obj = {normalise_key(k): v for k, v in obj.items()}
            obj["step"] = step
            rows.append(obj)
    if not rows:
        return empty
    df = pd.DataFrame.from_records(rows)
    if not (df["step"].is_monotonic_increasing and df["step"].is_unique):
        # later lines win key by key (groupby().last() skips NaN: missing keys keep earlier values)
        df = df.groupby("step", sort=True).last().reset_index()
    df["step"] = df["step"].astype("int64")
    return df
