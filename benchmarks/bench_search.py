"""Idle share of SLURM slots: tina.search's asynchronous trials against batch-synchronous ones.

A batch-synchronous search (hydra-optuna-sweeper's way) starts its next `parallel` trials only when
the slowest trial of the batch has ended; pruned trials end early, so their slots sit idle. tina.search
starts a trial as soon as a slot frees. Both runs here use the same search space, seed, trial count,
slots and pruner on the local SLURM cluster (scripts/slurm-local.sh up), one after the other.

Idle share = 1 - (sum of the trials' SLURM job run times) / (slots x (last job end - first job start)),
from sacct's Start/End of every job the search submitted. Both ways drain alike at the end (the last
trials run while nothing is left to start), so the share is also given up to the last job's start:
the time during which a trial was always waiting for a slot, where only the scheduling differs.

  python benchmarks/bench_search.py --trials 6 --parallel 2
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

ROOT = Path(__file__).resolve().parents[1]
TINY = ["train.max_steps=12", "train.save_steps=4", "dataset.eval_size=16"]


def job_spans(sweep: Path) -> list[tuple[datetime, datetime]]:
    ids = sorted({p.name.split("_")[0] for p in sweep.glob("trial_*/.submitit/*") if p.is_dir()})
    out = subprocess.run(["sacct", "-X", "-n", "-P", "-o", "JobID,Start,End", "-j", ",".join(ids)],
                         capture_output=True, text=True, timeout=60).stdout
    spans = []
    for line in out.splitlines():
        _, start, end = line.split("|")
        if start[:1].isdigit() and end[:1].isdigit():
            spans.append((datetime.fromisoformat(start), datetime.fromisoformat(end)))
    return spans


def measure(mode: str, trials: int, parallel: int, workdir: Path) -> dict:
    sweep = workdir / mode
    cmd = [sys.executable, "-m", "tina.search", "lr_rank", "hydra/launcher=slurm_local", "--trials", str(trials),
           "--parallel", str(parallel), "--dir", str(sweep), *TINY] + (["--synchronous"] if mode == "batch" else [])
    started = time.time()
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True)
    wall = time.time() - started
    spans = job_spans(sweep)
    first, last = min(s for s, _ in spans), max(e for _, e in spans)
    busy = sum((e - s).total_seconds() for s, e in spans)
    makespan = (last - first).total_seconds()
    last_start = max(s for s, _ in spans)
    busy_early = sum((min(e, last_start) - s).total_seconds() for s, e in spans if s < last_start)
    early = (last_start - first).total_seconds()
    study = optuna.load_study(study_name="tina", storage=JournalStorage(JournalFileBackend(str(sweep / "study.journal"))))
    states = [t.state.name for t in study.trials]
    return {"mode": mode, "jobs": len(spans), "pruned": states.count("PRUNED"), "complete": states.count("COMPLETE"),
            "makespan_s": makespan, "busy_s": busy, "idle_share": 1 - busy / (parallel * makespan),
            "idle_until_last_start": 1 - busy_early / (parallel * early) if early else 0.0, "driver_wall_s": wall}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=6)
    ap.add_argument("--parallel", type=int, default=2)
    ap.add_argument("--keep", type=Path, help="leave the two searches here (default: a temporary folder)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = [measure(mode, args.trials, args.parallel, args.keep or Path(tmp)) for mode in ("async", "batch")]
    print(f"{args.trials} trials, {args.parallel} slots, search space lr_rank, {' '.join(TINY)}")
    print(f"{'mode':6s} {'jobs':>4s} {'pruned':>6s} {'complete':>8s} {'makespan s':>10s} {'busy s':>7s} "
          f"{'idle share':>10s} {'idle until last start':>21s} {'driver wall s':>13s}")
    for r in rows:
        print(f"{r['mode']:6s} {r['jobs']:>4d} {r['pruned']:>6d} {r['complete']:>8d} {r['makespan_s']:>10.0f} "
              f"{r['busy_s']:>7.0f} {r['idle_share']:>10.1%} {r['idle_until_last_start']:>21.1%} {r['driver_wall_s']:>13.0f}")


if __name__ == "__main__":
    main()
