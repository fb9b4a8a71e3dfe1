"""Collect tina runs into one table: one row per run, for reports and notebooks.

``collect(*paths)`` takes run directories and/or sweep directories (searched recursively for
what ``tina.run_dir.is_run`` calls a run; the search does not descend into a run) and returns a DataFrame with one row per run (built by ``analysis.row``); ``collect_curves``
returns the training curves in long form, ``collect_evals`` the evaluation results.

Only a path that does not exist or holds no run raises (FileNotFoundError / ValueError). Rows
come from the disk cache (``analysis.cache``) where the run's files are unchanged, else from a
process pool (fork; 1,000 runs x 1,000 steps in 11.7 s on 2 cores). Status and dollars are
computed here, never cached: status depends on whether a process still holds the run, dollars on
the prices.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import re
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd

from analysis import cache as row_cache
from analysis import cost, evals
from analysis.row import CONFIG_COLUMNS, METRICS, read_run
from tina import run_dir as rd
from tina.costmodel import load_prices
from tina.metrics import read_metrics
from tina.run_status import RunStatus

__all__ = ["collect", "collect_curves", "collect_evals", "find_runs", "override_columns",
           "METRICS", "CONFIG_COLUMNS"]


def _natural(p: Path):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(p))]


def find_runs(path: str | os.PathLike) -> list[Path]:
    """Run directories at or under ``path``, in natural order (``2_...`` before ``10_...``)."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such file or directory")
    if p.is_file():
        if p.name not in rd.RUN_FILES:
            raise ValueError(f"{p}: not a run or sweep directory (give a directory, or a run's "
                             f"{' / '.join(rd.RUN_FILES)})")
        p = p.parent
    runs = []
    for root, dirs, _ in os.walk(p):
        if rd.is_run(Path(root)):
            runs.append(Path(root))
            dirs[:] = []  # a run holds no runs; do not walk its checkpoints
        else:
            dirs[:] = [d for d in dirs if not d.startswith(".")]
    if not runs:
        raise ValueError(f"{p}: no runs found (a run directory holds {', '.join(rd.RUN_FILES)} "
                         f"or {rd.HYDRA}/)")
    return sorted(runs, key=_natural)


def _compute(runs: list[str], workers: int | None) -> list[dict]:
    if workers is None:
        workers = min(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                      else (os.cpu_count() or 1), 16)
    # a pool costs ~0.1 s to start; below a handful of runs serial is faster
    if workers <= 1 or len(runs) < 8 or "fork" not in mp.get_all_start_methods():
        return [read_run(r) for r in runs]
    # fork: workers inherit the imported modules (spawn would re-import pandas/ruptures each)
    with ProcessPoolExecutor(workers, mp_context=mp.get_context("fork")) as ex:
        return list(ex.map(read_run, runs, chunksize=max(1, len(runs) // (workers * 8))))


def _runs_of(paths) -> list[tuple[Path, Path]]:
    """[(run, root)] over all paths, deduplicated; root = the sweep a run was found under."""
    if not paths:
        raise ValueError("collect: give at least one run or sweep directory")
    seen, out = set(), []
    for p in paths:
        found = find_runs(p)
        root = Path(p) if Path(p).is_dir() else Path(p).parent
        if found == [root]:  # a run given directly: its sweep is its parent folder
            root = root.parent
        for r in found:
            key = r.resolve()
            if key not in seen:
                seen.add(key)
                out.append((r, root))
    return out


def _cost_columns(row: dict, status: str, prices, notes: list) -> dict:
    summ = dict(row.pop("_summary", None) or {})
    wall = summ.get("wall_seconds")
    st = row.pop("_step_time_sum", 0.0) or 0.0
    if status in (RunStatus.RUNNING, RunStatus.DIED, RunStatus.NO_SUMMARY) and st > (wall or 0):  # summary's wall is written at the end
        wall = st
    summ["wall_seconds"] = wall or 0.0
    out = {"wall_seconds": wall}
    if not summ.get("device"):  # no summary: the hardware, hence the cost, is unknown (not 0)
        return {**out, "gpu_type": None, "num_gpus": None, "gpu_hours": None, "usd": None}
    try:
        c = cost.run_cost(summ, prices)
        out.update(gpu_type=c["gpu_type"], num_gpus=c["num_gpus"], gpu_hours=c["gpu_hours"],
                   usd=c["usd"])
    except ValueError as e:
        notes.append(f"no cost: {e}")
        out.update(gpu_type=(summ.get("device") or {}).get("gpu_name"), gpu_hours=None, usd=None)
    return out


_LEAD = ["run", "name", "sweep", "status", "summary_status"]
_TAIL = ["steps", "max_steps", "stop_at_step", "logged_steps", "epochs"]
# column families after those, in this order (a stable layout reads faster than dict order)
_ORDER = [*METRICS, "transition_", "saved_steps", "best_checkpoint", "heldout_", "eval_", "eval/",
          "wall_seconds", "attempts", "gpu_", "num_gpus", "usd", "tokens", "flops", "num_params",
          "trainable_params", "error", "notes"]


def _column_rank(col: str):
    for i, prefix in enumerate(_ORDER):
        if col.startswith(prefix):
            return (i, col if prefix == "eval/" else "")
    return (len(_ORDER), "")


def collect(*paths, prices=None, workers: int | None = None, cache: bool = True) -> pd.DataFrame:
    """One row per run found under ``paths`` (module docstring: eval format, speed).

    Columns: run, name (relative to its sweep), sweep, status (tina.run_dir.run_state: completed,
    stopped_early, failed, interrupted, preempted, running, died, not started, no summary,
    unreadable; its reason goes to notes), summary_status (as summary.json says); the
    overrides (``df.attrs["overrides"]``, typed) and CONFIG_COLUMNS; steps, max_steps,
    stop_at_step, logged_steps, epochs; for reward, format, accuracy, length, kl, cut, no_signal,
    entropy: <m>_peak,
    <m>_peak_step, <m>_final (last logged value), length_min; transition_step,
    transition_format_step, transition_length_step, transition_reason, transition_confidence,
    acquisition_step, acquisition_confidence (tina.phase.detect), no_signal_streak,
    saved_steps, best_checkpoint (phase.best_checkpoint); heldout_{base,final}_{format,accuracy};
    eval_* and eval/<benchmark>; wall_seconds, attempts (processes that ran it: requeues, reruns),
    gpu_type, num_gpus, gpu_hours, usd, tokens, flops,
    flops_basis, num_params, trainable_params; error; notes (what was odd, "; "-joined).

    ``prices``: a {gpu_type: USD/GPU-hour} mapping or a YAML file like tina/prices.yaml.
    ``workers``: processes for the per-run work (None: CPUs up to 16; 1: serial). ``cache``: reuse
    rows of unchanged runs (``$TINA_ANALYSIS_CACHE``, else ~/.cache/tina/collect).
    The override columns are listed in ``df.attrs["overrides"]``.
    """
    if isinstance(prices, (str, os.PathLike)):
        prices = load_prices(prices)
    pairs = _runs_of(paths)
    fps = [row_cache.fingerprint(r) for r, _ in pairs]
    rows: list = [row_cache.get(r, fp) if cache else None for (r, _), (fp, _) in zip(pairs, fps)]
    todo = [i for i, row in enumerate(rows) if row is None]
    for i, row in zip(todo, _compute([str(pairs[i][0]) for i in todo], workers)):
        rows[i] = row
        if cache:
            row_cache.put(pairs[i][0], fps[i][0], row)

    out, override_keys = [], {}
    for (run, root), row in zip(pairs, rows):
        row = dict(row)
        notes = list(row.pop("notes", []) or [])
        ov = row.pop("_overrides", {}) or {}
        for k in ov:
            override_keys.setdefault(k, None)
        state = rd.run_state(run)  # derived once, for tina.status and reports alike; never cached
        status = state["status"]
        if state["reason"] and state["reason"] not in notes:
            notes.append(state["reason"])
        row.update(_cost_columns(row, status, prices, notes))
        for k, v in ov.items():  # the resolved config value wins where both exist
            if row.get(k) is None:
                row[k] = v
        row.update(run=str(run), sweep=str(root), status=status, notes="; ".join(notes) or None,
                   name=str(run.relative_to(root)) if run != root else run.name)
        out.append(row)
    df = pd.DataFrame(out)
    ov_cols = list(override_keys)
    first = _LEAD + ov_cols + [c for c in CONFIG_COLUMNS if c not in override_keys] + _TAIL
    rest = sorted((c for c in df.columns if c not in first), key=_column_rank)
    df = df.reindex(columns=first + rest)
    df.attrs["overrides"] = ov_cols
    return df


def override_columns(df: pd.DataFrame) -> list[str]:
    """The override columns of a ``collect`` frame (``df.attrs``, which some pandas ops drop)."""
    cols = df.attrs.get("overrides")
    if cols is not None:
        return [c for c in cols if c in df.columns]
    start, end = df.columns.get_loc("summary_status") + 1, df.columns.get_loc("steps")
    return [c for c in df.columns[start:end] if c not in CONFIG_COLUMNS]


def _run_dirs(args) -> list[Path]:
    if len(args) == 1 and isinstance(args[0], pd.DataFrame):
        return [Path(r) for r in args[0]["run"]]
    return [r for r, _ in _runs_of(args)]


def collect_curves(*paths, keys=None) -> pd.DataFrame:
    """Training curves in long form: columns run, step, metric, value.

    ``paths``: run/sweep directories, or one ``collect`` DataFrame (its runs are read). ``keys``:
    metrics.jsonl keys or short names of :data:`METRICS` (default: all of METRICS; ``"all"``:
    every numeric key). ``metric`` holds the short name where there is one, else the key.
    """
    names = {v: k for k, v in METRICS.items()}
    want = None if keys == "all" else [METRICS.get(k, k) for k in (keys or METRICS)]
    parts = []
    for run in _run_dirs(paths):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # collect() reports corrupt lines; plots need not
            df = read_metrics(run)
        cols = [c for c in (want or df.columns) if c in df.columns and c != "step"]
        if not len(df) or not cols:
            continue
        vals = df[cols].apply(pd.to_numeric, errors="coerce")
        long = vals.assign(step=df["step"]).melt(id_vars="step", var_name="metric",
                                                 value_name="value").dropna(subset=["value"])
        long["metric"] = long["metric"].map(lambda k: names.get(k, k))
        long.insert(0, "run", str(run))
        parts.append(long)
    if not parts:
        return pd.DataFrame({"run": [], "step": [], "metric": [], "value": []})
    return pd.concat(parts, ignore_index=True)


def collect_evals(*paths) -> pd.DataFrame:
    """Every evaluation result in long form: run, checkpoint, step, benchmark, pass@1, file, ...

    ``step`` is the checkpoint's step (0 for "base", the run's last step for "adapter")."""
    rows = []
    for run in _run_dirs(paths):
        try:
            final = rd.read_summary(run).get("steps")
        except ValueError:  # a corrupt summary: collect() notes it; here the adapter's step is unknown
            final = None
        rows += [{"run": str(run), **r} for r in evals.records(run, final)]
    cols = ["run", "checkpoint", "step", "benchmark", "pass@1", "file"]
    df = pd.DataFrame(rows)
    return df.reindex(columns=cols + [c for c in df.columns if c not in cols])
