"""Collect tina runs into one table: one row per run, for reports and notebooks.

``collect(*paths)`` takes run directories and/or sweep directories (searched recursively: a run
is a directory holding ``summary.json``, ``metrics.jsonl`` or ``.hydra/``; the search does not
descend into a run) and returns a DataFrame with one row per run; ``collect_curves`` returns the
training curves in long form; ``collect_evals`` the evaluation results in long form.

Why it is built this way
------------------------
* Every run gives a row, whatever state it is in (truncated metrics line, failed, in progress,
  no config): a sweep is judged by its failures too. Problems go to the ``notes`` column; only a
  path that does not exist or holds no run at all raises (FileNotFoundError / ValueError).
* Parsing and phase detection are the other modules' job (``analysis.metrics.read_metrics``,
  ``analysis.phase.detect``/``best_checkpoint``/``saved_steps``, ``analysis.cost``); this module
  only calls them and lays the results out.
* Speed. A run of 1,000 logged steps costs ~23 ms of CPU: ~9 ms reading metrics.jsonl, ~10 ms
  phase detection (mostly ruptures' pure-Python Pelt), ~4 ms the rest; 1,000 such runs ~23
  CPU-seconds. Hence (1) the per-run work runs in a process pool (fork; ``workers``, default:
  usable CPUs, max 16), and (2) each run's row is cached on disk, keyed by the size and mtime of
  every file it was read from and a hash of the analysis code, so a second ``collect`` (the common
  case: re-running a report while a sweep goes on) recomputes only the runs that changed.
  Measured by ``benchmarks/bench_analysis.py`` (1,000 runs x 1,000 steps, 800 MB) on 2 CPU
  cores: first collect 11.7 s, cached collect 0.31 s.
* Status and dollars are NOT cached: status depends on the clock (``stale``), dollars on the
  price table in use.

Evaluation files (written by ``tina.evaluate``, see tina/evaluate/results.py; the format read here)
-------------------------------------------------------------------------------------------------
``RUN/eval/<checkpoint>/<benchmark>.json`` (also ``RUN/eval/*.json``; deeper files are ignored,
they are merged models' own configs). Each holds one JSON object, or a list of them::

    {"benchmark": "aime24", "checkpoint": "checkpoint-150", "step": 150, "pass@1": 0.4333, ...}

* ``benchmark`` (str, required): column ``eval/<benchmark>`` in the row. An object without it is
  not a result and is skipped silently.
* ``pass@1`` (number, required): a FRACTION in [0, 1]. A value in (1, 100] is read as a percent
  and divided by 100, with a note; anything else skips the entry with a note.
* ``checkpoint`` (optional): ``"checkpoint-N"`` or an int N, ``"adapter"`` (the run's final
  adapter; ``"final"``/``"last"`` mean the same) or ``"base"`` (the model before training).
  Without it: the folder under ``eval/``, or ``"adapter"`` for a file directly in ``eval/``.
* ``step`` (optional int): the training step of the weights; else N of checkpoint-N, 0 for base,
  the run's last step for the adapter.
* Other scalar keys (``pass@1_std``, ``n_problems``, ``backend``, ...) are kept by
  ``collect_evals``; lists and dicts are dropped.
A later file (natural path order) replaces an earlier one for the same (checkpoint, benchmark).
Row columns: ``eval/<benchmark>`` and ``eval_avg`` (mean over benchmarks) at ``eval_checkpoint``
(``eval_step``), the checkpoint with the highest average among those evaluated on the most
benchmarks (the paper's practice; optimistic, as any choice made on the test set);
``eval_final_avg`` (the last checkpoint evaluated), ``eval_transition_avg`` (at
``best_checkpoint``, when evaluated) and ``eval_base_avg`` (``"base"``).
"""

from __future__ import annotations

import hashlib
import json
import math
import multiprocessing as mp
import os
import re
import sys
import time
import types
import warnings
from concurrent.futures import ProcessPoolExecutor
from functools import lru_cache
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd
import yaml

from analysis import cost as _cost
from analysis import phase as _phase
from analysis.metrics import read_metrics

__all__ = ["collect", "collect_curves", "collect_evals", "find_runs", "override_columns",
           "METRICS", "CONFIG_COLUMNS"]

# short name -> metrics.jsonl key (TRL's names; reward functions are rewards/<name>_reward/mean)
METRICS = {
    "reward": "reward",
    "format": _phase.FORMAT_KEY,
    "accuracy": "rewards/accuracy_reward/mean",
    "length": _phase.LENGTH_KEY,
    "kl": "kl",
}
# Resolved config values every row carries: they identify an experiment even when the sweep
# varied a whole group (experiment=..., algorithm=...) rather than these keys themselves.
CONFIG_COLUMNS = ("dataset.name", "algorithm.name", "lora.rank", "optim.lr", "model.name_or_path")
MARKERS = ("summary.json", "metrics.jsonl")
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml: ~10x faster on config.yaml


# ----------------------------------------------------------------------------- finding runs
def _natural(p: Path):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(p))]


def find_runs(path: str | os.PathLike) -> list[Path]:
    """Run directories at or under ``path``, in natural order (``2_...`` before ``10_...``)."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such file or directory")
    if p.is_file():
        if p.name not in MARKERS:
            raise ValueError(f"{p}: not a run or sweep directory (give a directory, or a run's "
                             f"summary.json / metrics.jsonl)")
        p = p.parent
    runs = []
    for root, dirs, files in os.walk(p):
        if ".hydra" in dirs or any(m in files for m in MARKERS):
            runs.append(Path(root))
            dirs[:] = []  # a run holds no runs; do not walk its checkpoints
        else:
            dirs[:] = [d for d in dirs if not d.startswith(".")]
    if not runs:
        raise ValueError(f"{p}: no runs found (a run directory holds summary.json, metrics.jsonl "
                         f"or .hydra/)")
    return sorted(runs, key=_natural)


# ----------------------------------------------------------------------------- small readers
def _load_json(path: Path):
    """(object, error text); (None, None) when the file does not exist."""
    try:
        return json.loads(path.read_text(encoding="utf-8")), None
    except FileNotFoundError:
        return None, None
    except (OSError, ValueError) as e:
        return None, f"{type(e).__name__}: {e}"


def _load_yaml(path: Path):
    try:
        return yaml.load(path.read_text(encoding="utf-8"), Loader=_LOADER), None
    except FileNotFoundError:
        return None, None
    except (OSError, yaml.YAMLError) as e:
        return None, f"{type(e).__name__}: {str(e).splitlines()[0]}"


def _get(d, dotted: str):
    for k in dotted.split("."):
        if not isinstance(d, Mapping) or k not in d:
            return None
        d = d[k]
    if isinstance(d, str) and "${" in d:  # unresolved interpolation (.hydra/config.yaml)
        return None
    return d


def _scalar(text: str):
    """An override value as Hydra's grammar would type it: int, float, bool, null, else str."""
    t = text.strip()
    for conv in (int, float):
        try:
            v = conv(t)
            return v if not (isinstance(v, float) and not math.isfinite(v)) else t
        except ValueError:
            pass
    return {"true": True, "false": False, "null": None}.get(t.lower(), t.strip("'\""))


def _overrides(items) -> dict:
    out = {}
    for item in items or []:
        if not isinstance(item, str) or "=" not in item:
            continue
        key, _, val = item.partition("=")
        key = key.lstrip("+~")  # +key / ++key / ~key: the key is what matters for a table
        if key.startswith("hydra.") or key.startswith("hydra/") or key == "train.output_dir":
            continue
        out[key] = _scalar(val)
    return out


def _error_from_log(run: Path) -> str | None:
    """Last exception line of Hydra's job log (a run that died before writing summary.json)."""
    for log in sorted(run.glob("*.log")):
        try:
            tail = log.read_text(encoding="utf-8", errors="replace")[-20000:].splitlines()
        except OSError:
            continue
        hits = [ln.strip() for ln in tail if re.match(r"^\s*[\w.]+(Error|Exception)\b.*:", ln)]
        if hits:
            return hits[-1]
    return None


# ----------------------------------------------------------------------------- evaluation files
def _checkpoint(value, where: str) -> tuple[str, int | None]:
    """(label, step): ("checkpoint-N", N), ("adapter", None), ("base", 0) or (label, None)."""
    if value is None:
        value = where
    if isinstance(value, bool):
        value = str(value)
    if isinstance(value, (int, float)) and float(value).is_integer():
        return f"checkpoint-{int(value)}", int(value)
    s = str(value).strip()
    m = re.fullmatch(r"(?:checkpoint-)?(\d+)", s)
    if m:
        return f"checkpoint-{int(m.group(1))}", int(m.group(1))
    if s.lower() in ("adapter", "final", "last", ""):
        return "adapter", None
    if s.lower() == "base":
        return "base", 0
    return s, None


def _eval_files(run: Path) -> list[Path]:
    """eval/*.json and eval/*/*.json only: deeper lie merged models' own config JSONs."""
    root = run / "eval"
    if not root.is_dir():
        return []
    return sorted([*root.glob("*.json"), *root.glob("*/*.json")], key=_natural)


def _read_eval_files(run: Path, notes: list) -> list[dict]:
    recs: dict[tuple, dict] = {}
    for f in _eval_files(run):
        obj, err = _load_json(f)
        rel = f.relative_to(run / "eval")
        if err:
            notes.append(f"eval/{rel}: unreadable ({err})")
            continue
        where = rel.parts[0] if len(rel.parts) > 1 else "adapter"
        for o in obj if isinstance(obj, list) else [obj]:
            if not isinstance(o, dict) or "benchmark" not in o:
                continue  # not a result (some other tool's JSON)
            bench, p1 = o["benchmark"], o.get("pass@1")
            if not isinstance(bench, str) or isinstance(p1, bool) or not isinstance(p1, (int, float)) \
                    or not math.isfinite(p1) or not 0 <= p1 <= 100:
                notes.append(f"eval/{rel}: skipped a result without a benchmark name and a pass@1 "
                             f"in [0, 1]")
                continue
            if p1 > 1:
                notes.append(f"eval/{rel}: pass@1 {p1} read as a percent")
                p1 = p1 / 100
            label, step = _checkpoint(o.get("checkpoint"), where)
            if isinstance(o.get("step"), int) and not isinstance(o.get("step"), bool):
                step = o["step"]  # the writer knows the step of the weights it evaluated
            extra = {k: v for k, v in o.items() if k not in ("benchmark", "checkpoint", "pass@1", "step")
                     and isinstance(v, (int, float, str, bool, type(None)))}
            recs[(label, bench)] = {"checkpoint": label, "step": step, "benchmark": bench,
                                    "pass@1": float(p1), "file": f"eval/{rel}", **extra}
    return list(recs.values())


def _eval_columns(recs: list[dict], final_step, best_ckpt) -> dict:
    if not recs:
        return {}
    df = pd.DataFrame(recs)
    df["step"] = [final_step if c == "adapter" and s is None else s
                  for c, s in zip(df["checkpoint"], df["step"])]
    by = df.groupby("checkpoint")
    avg, count = by["pass@1"].mean(), by["pass@1"].count()
    step = by["step"].first()
    out = {}
    if "base" in avg.index:
        out["eval_base_avg"] = float(avg["base"])
    trained = [c for c in avg.index if c != "base"]
    if trained:
        most = max(count[c] for c in trained)
        # best average among the checkpoints with the fullest benchmark set; ties -> earlier step
        full = sorted((c for c in trained if count[c] == most),
                      key=lambda c: (-avg[c], _nan_last(step[c])))
        best = full[0]
        out.update(eval_checkpoint=best, eval_step=_int_or_none(step[best]),
                   eval_avg=float(avg[best]), eval_n_benchmarks=int(count[best]))
        for _, r in df[df["checkpoint"] == best].iterrows():
            out[f"eval/{r['benchmark']}"] = float(r["pass@1"])
        last = max(trained, key=lambda c: (_nan_last(step[c]) if c != "adapter" else math.inf))
        out["eval_final_avg"] = float(avg[last])
        if best_ckpt is not None and f"checkpoint-{best_ckpt}" in avg.index:
            out["eval_transition_avg"] = float(avg[f"checkpoint-{best_ckpt}"])
    return out


def _nan_last(v):
    return math.inf if v is None or (isinstance(v, float) and math.isnan(v)) else v


def _int_or_none(v):
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else int(v)


# ----------------------------------------------------------------------------- one run
def _metric_columns(df: pd.DataFrame) -> dict:
    out = {}
    steps = df["step"].to_numpy()
    for short, key in METRICS.items():
        if key not in df.columns:
            continue
        y = pd.to_numeric(df[key], errors="coerce").to_numpy(dtype=float)
        ok = np.isfinite(y)
        if not ok.any():
            continue
        yo, so = y[ok], steps[ok]
        i = int(np.argmax(yo))
        out[f"{short}_peak"], out[f"{short}_peak_step"] = float(yo[i]), int(so[i])
        out[f"{short}_final"] = float(yo[-1])
        if short == "length":
            out["length_min"] = float(yo.min())
    return out


@lru_cache(maxsize=64)
def _base_params(model: str | None) -> int | None:
    """Non-embedding parameters of the base model from its config.json (local dir or HF cache)."""
    if not model:
        return None
    cfg = Path(model) / "config.json"
    if not cfg.is_file():
        try:  # a hub id: the config may already be in the local HF cache (never downloads)
            from huggingface_hub import try_to_load_from_cache

            hit = try_to_load_from_cache(model, "config.json")
            cfg = Path(hit) if isinstance(hit, str) else None
        except Exception:  # noqa: BLE001 - no cache, odd id: FLOPs fall back to summary counts
            cfg = None
    if cfg is None or not cfg.is_file():
        return None
    try:
        return _cost.non_embedding_params(json.loads(cfg.read_text()))
    except Exception:  # noqa: BLE001 - an unexpected architecture: fall back
        return None


def _flops(config, summary, tokens) -> tuple[float | None, str | None]:
    """(FLOPs estimate, what N was taken from). N from the base model's config.json when it can
    be found (local path or HF cache), else the summary's parameter count minus LoRA (which
    includes the embeddings, so it overestimates; ``flops_basis`` says which)."""
    if not tokens:
        return None, None
    n, basis = _base_params(_get(config, "model.name_or_path") or summary.get("model")), "model config"
    lora = int(summary.get("trainable_params") or 0)
    if n is None:
        total = summary.get("num_params")
        if not total:
            return None, None
        n, basis = int(total) - lora, "summary num_params (incl. embeddings)"
    return _cost.flops(
        n, tokens, beta=float(_get(config, "algorithm.beta") or 0.0),
        gradient_checkpointing=bool(_get(config, "compute.gradient_checkpointing")),
        num_iterations=int(_get(config, "algorithm.num_iterations") or 1), lora_params=lora), basis


def _read_run(run: str) -> dict:
    """Everything about one run that depends only on its files (cached). Never raises."""
    try:
        return _read_run_unsafe(Path(run))
    except Exception as e:  # noqa: BLE001 - a row with the reason beats a crashed report
        return {"run": run, "summary_status": None, "logged_steps": 0,
                "notes": [f"could not read run: {type(e).__name__}: {e}"], "_overrides": {},
                "_summary": {}}


def _read_run_unsafe(run: Path) -> dict:
    notes: list[str] = []
    summary, err = _load_json(run / "summary.json")
    if err:
        notes.append(f"summary.json unreadable ({err})")
    if summary is None:
        summary = {}
        if not err:
            notes.append("no summary.json")
    config, err = _load_yaml(run / "config.yaml")
    if not isinstance(config, Mapping):
        # Hydra's composed (unresolved) config: better than nothing; ${...} values read as None
        config, _ = _load_yaml(run / ".hydra" / "config.yaml")
        config = config if isinstance(config, Mapping) else {}
        why = f"config.yaml unreadable ({err})" if err else "no config.yaml"
        notes.append(why + ("; values from .hydra/config.yaml" if config else ""))
    ov, err = _load_yaml(run / ".hydra" / "overrides.yaml")
    if err:
        notes.append(f".hydra/overrides.yaml unreadable ({err})")

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        df = read_metrics(run)
    notes += [str(w.message).replace(str(run) + "/", "") for w in caught]

    row: dict = {"run": str(run), "summary_status": summary.get("status")}
    for key in CONFIG_COLUMNS:
        v = _get(config, key)
        row[key] = _scalar(v) if isinstance(v, str) else v  # YAML 1.1 reads 5e-07 as a string
    row["_overrides"] = _overrides(ov if isinstance(ov, list) else [])
    last = int(df["step"].iloc[-1]) if len(df) else None
    row.update(
        logged_steps=int(len(df)),
        steps=max(int(summary.get("steps") or 0), last or 0) if (summary or last) else None,
        max_steps=summary.get("max_steps", _get(config, "train.max_steps")),
        stop_at_step=summary.get("stop_at_step", _get(config, "train.stop_at_step")),
    )
    row.update(_metric_columns(df) if len(df) else {})
    if "epoch" in df.columns:  # TRL's fractional epoch: the paper reports checkpoints in % of one
        ep = pd.to_numeric(df["epoch"], errors="coerce").dropna()
        row["epochs"] = float(ep.iloc[-1]) if len(ep) else None

    tr = None
    if len(df):
        try:
            tr = _phase.detect(df)
        except Exception as e:  # noqa: BLE001 - detection is advice; its failure is a note
            notes.append(f"phase detection failed: {type(e).__name__}: {e}")
    saved = _phase.saved_steps(run) or [int(s) for s in summary.get("saved_steps") or []]
    step = tr["step"] if tr else None
    row.update(
        transition_step=step,
        transition_format_step=tr["format_step"] if tr else None,
        transition_length_step=tr["length_step"] if tr else None,
        transition_reason=tr["reason"] if tr else None,
        saved_steps=saved,
        best_checkpoint=_phase.best_checkpoint(step, saved),
    )
    for when in ("base", "final"):
        for k, v in (summary.get(f"heldout_{when}") or {}).items():
            if k in ("format", "accuracy"):
                row[f"heldout_{when}_{k}"] = v
    tokens = _cost.tokens_from_summary(summary) or _cost.tokens_from_metrics(df)
    st = pd.to_numeric(df["step_time"], errors="coerce").sum() if "step_time" in df else 0.0
    flops, basis = _flops(config, summary, tokens)
    row.update(
        tokens=tokens, flops=flops, flops_basis=basis,
        num_params=summary.get("num_params"), trainable_params=summary.get("trainable_params"),
        wall_seconds=summary.get("wall_seconds"), _step_time_sum=float(st),
        _summary={k: summary.get(k) for k in ("device", "wall_seconds")},
    )
    error = summary.get("error")
    if not error and summary.get("status") in (None, "failed") and not len(df):
        error = _error_from_log(run)
    row["error"] = error
    row.update(_eval_columns(_read_eval_files(run, notes), row["steps"], row["best_checkpoint"]))
    row["notes"] = notes
    return row


# ----------------------------------------------------------------------------- cache
_SOURCES = ("collect.py", "phase.py", "metrics.py", "cost.py")


@lru_cache(maxsize=1)
def _code_version() -> str:
    h = hashlib.sha1()
    here = Path(__file__).resolve().parent
    for name in _SOURCES:
        h.update((here / name).read_bytes())
    return h.hexdigest()[:16]


def _cache_dir() -> Path:
    env = os.environ.get("TINA_ANALYSIS_CACHE")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tina" / "collect"


def _fingerprint(run: Path) -> tuple[list, float]:
    """(stat of every input file, time of the run's last write). Files that are absent count too."""
    fp, last = [], 0.0
    for name in ("summary.json", "metrics.jsonl", "config.yaml", ".hydra/overrides.yaml",
                 ".hydra/config.yaml", "checkpoints", "train.log"):
        try:
            s = os.stat(run / name)
        except OSError:
            fp.append([name, None])
            continue
        fp.append([name, s.st_size if name != "checkpoints" else 0, s.st_mtime_ns])
        if name in ("summary.json", "metrics.jsonl"):
            last = max(last, s.st_mtime)
    for f in _eval_files(run):
        s = f.stat()
        fp.append([str(f.relative_to(run)), s.st_size, s.st_mtime_ns])
    return fp, last


def _cache_file(run: Path) -> Path:
    return _cache_dir() / (hashlib.sha1(str(run.resolve()).encode()).hexdigest()[:24] + ".json")


def _cache_get(run: Path, fp: list):
    try:
        c = json.loads(_cache_file(run).read_text())
    except (OSError, ValueError):
        return None
    if c.get("version") == _code_version() and c.get("fingerprint") == fp:
        return c["row"]
    return None


def _cache_put(run: Path, fp: list, row: dict) -> None:
    try:
        f = _cache_file(run)
        f.parent.mkdir(parents=True, exist_ok=True)
        tmp = f.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"version": _code_version(), "fingerprint": fp, "row": row}))
        os.replace(tmp, f)
    except (OSError, TypeError, ValueError):
        pass  # a read-only home or an odd value: no cache, same result


def _compute(runs: list[str], workers: int | None) -> list[dict]:
    if workers is None:
        workers = min(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                      else (os.cpu_count() or 1), 16)
    # a pool costs ~0.1 s to start; below a handful of runs serial is faster
    if workers <= 1 or len(runs) < 8 or "fork" not in mp.get_all_start_methods():
        return [_read_run(r) for r in runs]
    # fork: workers inherit the imported modules (spawn would re-import pandas/ruptures each)
    with ProcessPoolExecutor(workers, mp_context=mp.get_context("fork")) as ex:
        return list(ex.map(_read_run, runs, chunksize=max(1, len(runs) // (workers * 8))))


# ----------------------------------------------------------------------------- public API
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


def _status(row: dict, last_write: float, now: float, stale_after: float | None) -> str:
    s = row.get("summary_status")
    if s == "failed":
        return "failed"
    if not row.get("logged_steps"):
        return "failed" if row.get("error") else "empty"
    if s in (None, "running"):
        if stale_after is not None and last_write and now - last_write > stale_after:
            return "stale"
        return "running"
    return str(s)


def _cost_columns(row: dict, status: str, prices, notes: list) -> dict:
    summ = dict(row.pop("_summary", None) or {})
    wall = summ.get("wall_seconds")
    st = row.pop("_step_time_sum", 0.0) or 0.0
    if status in ("running", "stale") and st > (wall or 0):  # summary's wall is written at the end
        wall = st
    summ["wall_seconds"] = wall or 0.0
    out = {"wall_seconds": wall}
    if not summ.get("device"):  # no summary: the hardware, hence the cost, is unknown (not 0)
        return {**out, "gpu_type": None, "num_gpus": None, "gpu_hours": None, "usd": None}
    try:
        c = _cost.run_cost(summ, prices)
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
          "wall_seconds", "gpu_", "num_gpus", "usd", "tokens", "flops", "num_params",
          "trainable_params", "error", "notes"]


def _column_rank(col: str):
    for i, prefix in enumerate(_ORDER):
        if col.startswith(prefix):
            return (i, col if prefix == "eval/" else "")
    return (len(_ORDER), "")


def collect(*paths, prices=None, workers: int | None = None, cache: bool = True,
            stale_after: float | None = 3600.0) -> pd.DataFrame:
    """One row per run found under ``paths`` (module docstring: eval format, speed).

    Columns: run, name (relative to its sweep), sweep, status (completed / failed / running /
    stale / preempted / stopped_early / empty), summary_status (as summary.json says); the
    overrides (``df.attrs["overrides"]``, typed) and CONFIG_COLUMNS; steps, max_steps,
    stop_at_step, logged_steps, epochs; for reward, format, accuracy, length, kl: <m>_peak,
    <m>_peak_step, <m>_final (last logged value), length_min; transition_step,
    transition_format_step, transition_length_step, transition_reason (analysis.phase.detect),
    saved_steps, best_checkpoint (phase.best_checkpoint); heldout_{base,final}_{format,accuracy};
    eval_* and eval/<benchmark>; wall_seconds, gpu_type, num_gpus, gpu_hours, usd, tokens, flops,
    flops_basis, num_params, trainable_params; error; notes (what was odd, "; "-joined).

    ``prices``: a {gpu_type: USD/GPU-hour} mapping or a YAML file like tina/prices.yaml.
    ``workers``: processes for the per-run work (None: CPUs up to 16; 1: serial). ``cache``: reuse
    rows of unchanged runs (``$TINA_ANALYSIS_CACHE``, else ~/.cache/tina/collect).
    ``stale_after``: a "running" run whose files have not changed for this many seconds is
    "stale" (None: never). The override columns are listed in ``df.attrs["overrides"]``.
    """
    if isinstance(prices, (str, os.PathLike)):
        prices = _cost.load_prices(prices)
    pairs = _runs_of(paths)
    fps = [_fingerprint(r) for r, _ in pairs]
    rows: list = [_cache_get(r, fp) if cache else None for (r, _), (fp, _) in zip(pairs, fps)]
    todo = [i for i, row in enumerate(rows) if row is None]
    for i, row in zip(todo, _compute([str(pairs[i][0]) for i in todo], workers)):
        rows[i] = row
        if cache:
            _cache_put(pairs[i][0], fps[i][0], row)

    now, out, override_keys = time.time(), [], {}
    for (run, root), (_, last_write), row in zip(pairs, fps, rows):
        row = dict(row)
        notes = list(row.pop("notes", []) or [])
        ov = row.pop("_overrides", {}) or {}
        for k in ov:
            override_keys.setdefault(k, None)
        status = _status(row, last_write, now, stale_after)
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
        summary, _ = _load_json(run / "summary.json")
        final = (summary or {}).get("steps")
        for r in _read_eval_files(run, []):
            if r["checkpoint"] == "adapter" and r["step"] is None:
                r["step"] = final
            rows.append({"run": str(run), **r})
    cols = ["run", "checkpoint", "step", "benchmark", "pass@1", "file"]
    df = pd.DataFrame(rows)
    return df.reindex(columns=cols + [c for c in df.columns if c not in cols])


class _CallableModule(types.ModuleType):
    """``analysis.collect(...)`` calls :func:`collect`: the package exports the function under this
    module's own name, and once the module is imported the name means the module."""

    def __call__(self, *paths, **kw):
        return collect(*paths, **kw)


sys.modules[__name__].__class__ = _CallableModule
