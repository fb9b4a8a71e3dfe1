"""Trainer settings that differ between runs of one sweep where the sweep says they should not.

A sweep says its runs differ only in its axes. tina turns each run's config into the GRPOConfig
fields it sets (``set_by_tina`` in RUN/trainer_config.json); TRL fills in the rest and may rewrite
what it was given. So a resolved field that differs between two runs is explained only when tina
set it in both and set it differently (the axes, through tina's config); anything else (a default
TRL moved between releases, a value it resolved from the machine) is flagged, so a TRL upgrade
cannot change a recipe silently. Runs whose own record changed on a resume are flagged too.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from analysis.document import Para, Table
from tina import run_dir as rd

__all__ = ["drift", "blocks"]

_MISSING = "(absent)"


def _text(value) -> str:
    return _MISSING if value is _MISSING else json.dumps(value, sort_keys=True)


def drift(runs) -> pd.DataFrame:
    """One row per unexplained field: field, and one column per run (its resolved value as JSON).

    Runs without a trainer_config.json (older tina, or not started) are left out; fewer than two
    records compare nothing."""
    records = {}
    for run in runs:
        try:
            record = rd.read_trainer_config(run)
        except rd.RunDirError:
            continue
        if record.get("resolved"):
            records[str(run)] = record
    fields = sorted({f for r in records.values() for f in r["resolved"]} | {"trl"})
    rows = []
    for field in fields if len(records) > 1 else []:
        if field == "trl":
            values = {run: r.get("trl", _MISSING) for run, r in records.items()}
            set_values = None
        else:
            values = {run: r["resolved"].get(field, _MISSING) for run, r in records.items()}
            set_values = {run: r.get("set_by_tina", {}).get(field, _MISSING) for run, r in records.items()}
        if len({_text(v) for v in values.values()}) < 2:
            continue
        if set_values is not None and _MISSING not in set_values.values():
            # explained when the value tina set decides the resolved one: no two runs given the same differ
            resolved_for = {}
            for run, given in set_values.items():
                resolved_for.setdefault(_text(given), set()).add(_text(values[run]))
            if all(len(v) == 1 for v in resolved_for.values()):
                continue
        rows.append({"field": field, **{run: _text(v) for run, v in values.items()}})
    return pd.DataFrame(rows, columns=["field", *records])


def blocks(runs, labels: dict[str, str]) -> list:
    """The report's lines for one sweep: nothing when its trainer configs agree outside its axes."""
    runs = [str(r) for r in runs]
    out = []
    d = drift(runs)
    if len(d):
        t = d.rename(columns={r: labels.get(r, Path(r).name) for r in d.columns if r != "field"})
        out += [Para(f"Warning: {len(d)} trainer setting(s) differ between runs of this sweep outside its axes "
                     "(tina set them alike or not at all, so a TRL release or the machine chose): "
                     + ", ".join(d["field"]) + ". Compare these runs with care."),
                Table(t, caption="Trainer settings that differ outside the sweep's axes (RUN/trainer_config.json)")]
    for run in runs:
        try:
            changed = rd.read_summary(run).get("trainer_config_changed")
        except rd.RunDirError:
            continue
        if changed:
            out.append(Para(f"Warning: run {labels.get(run, Path(run).name)} resumed under a trainer that resolved "
                            f"{', '.join(sorted(changed))} differently from its first start."))
    return out
