"""Evaluation results of a run, laid out for tables: read through tina's own reader
(``tina.evaluate.results.read_results``, the one place that knows the files' layout and keys), so
this module only checks values, fills in steps and summarises.

The row's ``eval_*`` columns follow the paper's practice: the checkpoint with the highest average
pass@1 among those evaluated on the most benchmarks (optimistic, as any choice made on the test
set is), with the last checkpoint's average beside it so the optimism can be seen.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path

import pandas as pd

from tina.evaluate.results import read_results

# record keys that become columns of their own (or are not scalars worth a column)
_KEYS = ("benchmark", "checkpoint", "step", "pass@1", "path")


def seed_std(record: dict) -> float | None:
    """Standard deviation over sampling seeds of the per-seed pass@1 (``runs`` is seed-major:
    ``n_samples`` single-sample scores per seed); None when there is one seed or the layout is
    not that."""
    runs, seeds, n = record.get("runs"), record.get("seeds"), record.get("n_samples")
    if not (isinstance(runs, list) and isinstance(seeds, list) and isinstance(n, int)) \
            or len(seeds) < 2 or n < 1 or len(runs) != len(seeds) * n:
        return None
    return statistics.stdev(statistics.fmean(runs[i * n:(i + 1) * n]) for i in range(len(seeds)))


def records(run: Path, final_step: int | None, notes: list[str] | None = None) -> list[dict]:
    """The run's results, one dict per (checkpoint, benchmark): checkpoint, step (the final
    adapter's is the run's last step), benchmark, pass@1, pass@1_seed_std, file, and the record's
    other scalar keys. A result whose pass@1 is not a fraction is skipped with a note."""
    out = []
    for r in read_results(run):
        file = str(Path(r["path"]).relative_to(run))
        p1 = r["pass@1"]
        if isinstance(p1, bool) or not isinstance(p1, (int, float)) or not 0 <= p1 <= 1:
            if notes is not None:
                notes.append(f"{file}: skipped, pass@1 {p1!r} is not a fraction in [0, 1]")
            continue
        step = r.get("step")
        if step is None and r.get("checkpoint") == "adapter":
            step = final_step
        extra = {k: v for k, v in r.items()
                 if k not in _KEYS and isinstance(v, (int, float, str, bool, type(None)))}
        out.append({"checkpoint": str(r.get("checkpoint")), "step": step, "benchmark": r["benchmark"],
                    "pass@1": float(p1), "pass@1_seed_std": seed_std(r), "file": file, **extra})
    return out


def _sortable(v):
    return math.inf if v is None or (isinstance(v, float) and math.isnan(v)) else v


def columns(recs: list[dict], best_ckpt: int | None) -> dict:
    """The row's eval columns: eval/<benchmark> and eval_avg (mean over benchmarks) at
    eval_checkpoint / eval_step, eval_n_benchmarks; eval_final_avg (the last checkpoint
    evaluated); eval_transition_avg (at the phase's best checkpoint, when evaluated);
    eval_base_avg (the model before training)."""
    if not recs:
        return {}
    df = pd.DataFrame(recs)
    by = df.groupby("checkpoint")
    avg, count, step = by["pass@1"].mean(), by["pass@1"].count(), by["step"].first()
    out = {}
    if "base" in avg.index:
        out["eval_base_avg"] = float(avg["base"])
    trained = [c for c in avg.index if c != "base"]
    if not trained:
        return out
    most = max(count[c] for c in trained)
    # best average among the checkpoints with the fullest benchmark set; ties -> earlier step
    best = min((c for c in trained if count[c] == most), key=lambda c: (-avg[c], _sortable(step[c])))
    out.update(eval_checkpoint=best, eval_step=None if _sortable(step[best]) == math.inf else int(step[best]),
               eval_avg=float(avg[best]), eval_n_benchmarks=int(count[best]))
    for _, r in df[df["checkpoint"] == best].iterrows():
        out[f"eval/{r['benchmark']}"] = float(r["pass@1"])
    last = max(trained, key=lambda c: math.inf if c == "adapter" else _sortable(step[c]))
    out["eval_final_avg"] = float(avg[last])
    if best_ckpt is not None and f"checkpoint-{best_ckpt}" in avg.index:
        out["eval_transition_avg"] = float(avg[f"checkpoint-{best_ckpt}"])
    return out
