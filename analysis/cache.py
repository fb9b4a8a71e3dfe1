"""The on-disk cache of per-run rows: re-running a report while a sweep goes on recomputes only the
runs whose files changed (1,000 runs x 1,000 steps: 11.7 s to collect, 0.31 s from the cache, on
2 cores; benchmarks/bench_analysis.py).

A row is keyed by the run's resolved path, and valid while the size and mtime of every file it was
read from, and a hash of the analysis code that computed it, are unchanged. The cache lives in
``$TINA_ANALYSIS_CACHE``, else ``$XDG_CACHE_HOME/tina/collect`` (~/.cache/tina/collect). Writing is
best-effort: a read-only home means no cache, never a different result.
"""

from __future__ import annotations

import hashlib
import json
import os
from functools import lru_cache
from pathlib import Path

from analysis import cost, evals, row
from tina import metrics, phase
from tina import run_dir as rd
from tina.evaluate import results

# the modules whose code decides a row's content: a change to any of them invalidates every row
_SOURCES = (row, evals, cost, metrics, phase, results, rd)
# the run's files a row is read from; checkpoints/ by its mtime (a new checkpoint changes it)
_INPUTS = (rd.SUMMARY, rd.METRICS, rd.CONFIG, f"{rd.HYDRA}/overrides.yaml", f"{rd.HYDRA}/config.yaml",
           rd.CHECKPOINTS, rd.TRAIN_LOG)
_PROGRESS = (rd.SUMMARY, rd.METRICS)  # files whose mtime says when the run last made progress


@lru_cache(maxsize=1)
def _code_version() -> str:
    h = hashlib.sha1()
    for path in sorted({m.__file__ for m in _SOURCES}):
        h.update(Path(path).read_bytes())
    return h.hexdigest()[:16]


def _cache_dir() -> Path:
    env = os.environ.get("TINA_ANALYSIS_CACHE")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tina" / "collect"


def fingerprint(run: Path) -> tuple[list, float]:
    """(stat of every input file, time of the run's last progress). Absent files count too."""
    fp, last = [], 0.0
    for name in _INPUTS:
        try:
            s = os.stat(run / name)
        except OSError:
            fp.append([name, None])
            continue
        fp.append([name, s.st_size if name != rd.CHECKPOINTS else 0, s.st_mtime_ns])
        if name in _PROGRESS:
            last = max(last, s.st_mtime)
    for f in sorted(run.glob(f"{rd.EVAL}/*/*.json")):  # where tina.evaluate writes its results
        s = f.stat()
        fp.append([str(f.relative_to(run)), s.st_size, s.st_mtime_ns])
    return fp, last


def _file(run: Path) -> Path:
    return _cache_dir() / (hashlib.sha1(str(run.resolve()).encode()).hexdigest()[:24] + ".json")


def get(run: Path, fp: list) -> dict | None:
    """The cached row of ``run`` if it was computed from files with fingerprint ``fp``."""
    try:
        c = json.loads(_file(run).read_text())
    except (OSError, ValueError):
        return None
    if c.get("version") == _code_version() and c.get("fingerprint") == fp:
        return c["row"]
    return None


def put(run: Path, fp: list, row: dict) -> None:
    try:
        f = _file(run)
        f.parent.mkdir(parents=True, exist_ok=True)
        tmp = f.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"version": _code_version(), "fingerprint": fp, "row": row}))
        os.replace(tmp, f)
    except (OSError, TypeError, ValueError):
        pass  # a read-only home or an odd value: no cache, same result
