"""One run's row: everything about a run that its files alone decide (so it can be cached).

Every run gives a row whatever state it is in (truncated metrics line, failed, in progress, no
config): a sweep is judged by its failures too, so problems become notes, never exceptions.
Parsing and detection are other modules' job (``tina.metrics``, ``tina.phase``,
``analysis.evals``, ``analysis.cost``); this one calls them and lays out the results. A run of
1,000 logged steps costs ~23 ms of CPU: ~9 ms reading metrics.jsonl, ~10 ms phase detection.
"""

from __future__ import annotations

import math
import re
import warnings
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd

from analysis import cost, evals
from tina import phase
from tina import run_dir as rd
from tina.errors import RunDirError
from tina.metrics import read_metrics
from tina.run_status import RunStatus

# short name -> metrics.jsonl key (TRL's names; reward functions are rewards/<name>_reward/mean)
METRICS = {
    "reward": "reward",
    "format": phase.FORMAT_KEY,
    "accuracy": "rewards/accuracy_reward/mean",
    "length": phase.LENGTH_KEY,
    "kl": "kl",
    "cut": phase.CLIPPED_KEY,
    "no_signal": phase.ZERO_STD_KEY,
    "entropy": phase.ENTROPY_KEY,
}
STOPPED_LEARNING = 10  # logged steps in a row with no group's rewards spread: the run stopped learning
# Resolved config values every row carries: they identify an experiment even when the sweep
# varied a whole group (experiment=..., algorithm=...) rather than these keys themselves.
CONFIG_COLUMNS = ("dataset.name", "algorithm.name", "lora.rank", "optim.lr", "model.name_or_path")


def _read(run: Path, read, *args):
    """(data, note): tina.run_dir's reader's result, or None and why the file is unreadable."""
    try:
        return read(run, *args), None
    except RunDirError as e:
        return None, str(e).replace(f"{run}/", "")


def get(d, dotted: str):
    """``d["a"]["b"]`` for ``"a.b"``; None when absent or an unresolved ``${...}`` interpolation."""
    for k in dotted.split("."):
        if not isinstance(d, Mapping) or k not in d:
            return None
        d = d[k]
    if isinstance(d, str) and "${" in d:  # unresolved interpolation (.hydra/config.yaml)
        return None
    return d


def scalar(text: str):
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
        out[key] = scalar(val)
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


def read_run(run: str) -> dict:
    """The row of one run (a plain dict of JSON values, so it can be cached). Never raises."""
    try:
        return _read_run(Path(run))
    except Exception as e:  # noqa: BLE001 - a row with the reason beats a crashed report
        return {"run": run, "summary_status": None, "logged_steps": 0,
                "notes": [f"could not read run: {type(e).__name__}: {e}"], "_overrides": {},
                "_summary": {}}


def _read_config(run: Path, notes: list) -> Mapping:
    config, err = _read(run, rd.read_config)
    if config:
        return config
    # Hydra's composed (unresolved) config: better than nothing; ${...} values read as None
    config, _ = _read(run, rd.read_hydra, rd.HYDRA_CONFIG)
    config = config if isinstance(config, Mapping) else {}
    why = err or f"no {rd.CONFIG}"
    notes.append(why + (f"; values from {rd.HYDRA}/config.yaml" if config else ""))
    return config


def _read_run(run: Path) -> dict:
    notes: list[str] = []
    summary, err = _read(run, rd.read_summary)
    if err:
        notes.append(err)
    elif not (run / rd.SUMMARY).exists():
        notes.append(f"no {rd.SUMMARY}")
    summary = rd.checked_summary(summary if summary is not None else {}, notes)
    config = _read_config(run, notes)
    ov, err = _read(run, rd.read_hydra, rd.HYDRA_OVERRIDES)
    if err:
        notes.append(err)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        df = read_metrics(run)
    notes += [str(w.message).replace(str(run) + "/", "") for w in caught]

    row: dict = {"run": str(run), "summary_status": summary.get("status")}
    for key in CONFIG_COLUMNS:
        v = get(config, key)
        row[key] = scalar(v) if isinstance(v, str) else v  # YAML 1.1 reads 5e-07 as a string
    row["_overrides"] = _overrides(ov if isinstance(ov, list) else [])
    last = int(df["step"].iloc[-1]) if len(df) else None
    row.update(
        logged_steps=int(len(df)),
        steps=max(int(summary.get("steps") or 0), last or 0) if (summary or last) else None,
        max_steps=summary.get("max_steps", get(config, "train.max_steps")),
        stop_at_step=summary.get("stop_at_step", get(config, "train.stop_at_step")),
    )
    row.update(_metric_columns(df) if len(df) else {})
    if "epoch" in df.columns:  # TRL's fractional epoch: the paper reports checkpoints in % of one
        ep = pd.to_numeric(df["epoch"], errors="coerce").dropna()
        row["epochs"] = float(ep.iloc[-1]) if len(ep) else None

    tr = None
    if len(df):
        try:
            tr = phase.detect(df)
        except Exception as e:  # noqa: BLE001 - detection is advice; its failure is a note
            notes.append(f"phase detection failed: {type(e).__name__}: {e}")
    saved = rd.saved_steps(run) or [int(s) for s in summary.get("saved_steps") or []]
    step = tr["step"] if tr else None
    reason = tr["reason"] if tr else None
    unusable = [f"{role}: {ev['note']}" for role, ev in ((tr or {}).get("evidence") or {}).items()
                if isinstance(ev, dict) and not ev.get("available", True) and ev.get("note")]
    if step is None and unusable:  # say why a metric was unusable: too short a run, usually
        reason += f" ({'; '.join(unusable)})"
    streak = phase.no_signal_streak(df) if len(df) else None
    if streak and streak[1] >= STOPPED_LEARNING:
        notes.append(f"stopped learning: no group with a reward spread for {streak[1]} logged steps "
                     f"from step {streak[0]}")
    row.update(
        no_signal_streak=streak[1] if streak else None,
        acquisition_step=tr["acquisition_step"] if tr else None,
        acquisition_confidence=tr["acquisition_confidence"] if tr else None,
        transition_confidence=tr["confidence"] if tr else None,
        transition_step=step,
        transition_format_step=tr["format_step"] if tr else None,
        transition_length_step=tr["length_step"] if tr else None,
        transition_reason=reason,
        saved_steps=saved,
        best_checkpoint=phase.best_checkpoint(step, saved),
    )
    for when in ("base", "final"):
        for k, v in (summary.get(f"heldout_{when}") or {}).items():
            if k in ("format", "accuracy"):
                row[f"heldout_{when}_{k}"] = v
    tokens = cost.tokens_from_summary(summary) or cost.tokens_from_metrics(df)
    st = pd.to_numeric(df["step_time"], errors="coerce").sum() if "step_time" in df else 0.0
    flops, basis = cost.run_flops(
        get(config, "model.name_or_path") or summary.get("model"), summary, tokens,
        beta=float(get(config, "algorithm.beta") or 0.0),
        gradient_checkpointing=bool(get(config, "compute.gradient_checkpointing")),
        num_iterations=int(get(config, "algorithm.num_iterations") or 1))
    row.update(
        tokens=tokens, flops=flops, flops_basis=basis,
        num_params=summary.get("num_params"), trainable_params=summary.get("trainable_params"),
        wall_seconds=summary.get("wall_seconds"), _step_time_sum=float(st),
        attempts=len(summary["attempts"]) if isinstance(summary.get("attempts"), list) else None,
        _summary={k: summary.get(k) for k in ("device", "wall_seconds")},
    )
    error = summary.get("error")
    if not error and summary.get("status") in (None, RunStatus.FAILED) and not len(df):
        error = _error_from_log(run)
    row["error"] = error
    row.update(evals.columns(evals.records(run, row["steps"], notes), row["best_checkpoint"]))
    row["notes"] = notes
    return row
