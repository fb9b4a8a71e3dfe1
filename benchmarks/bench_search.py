"""Idle share of SLURM slots: tina.search's asynchronous trials against batch-synchronous ones.

A batch-synchronous search (hydra-optuna-sweeper's way) starts its next `parallel` trials only when
the slowest trial of the batch has ended; pruned trials end early, so their slots sit idle. tina.search
starts a trial as soon as a slot frees. Both runs here use the same search space, seed, trial count,
slots and pruner on the local SLURM cluster (scripts/slurm-local.sh up), one after the other.

The cluster is shared, so a job may wait in the queue behind other users' jobs; that wait is not the
search's doing. So a slot counts as idle only while the search has no job in it, neither running nor
queued: idle share = (slot-seconds with no job of the search submitted) / (slots x (first submission
to last job end)), from sacct's Submit/Start/End of every job the search submitted. Both ways drain
alike at the end (the last trials run while nothing is left to start), so the share is also given up
to the last submission, where only the scheduling differs.

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
    """(submitted, ended) of every SLURM job the search's trials submitted."""
    ids = sorted({p.name.split("_")[0] for p in sweep.glob("trial_*/.submitit/*") if p.is_dir()})
    out = subprocess.run(["sacct", "-X", "-n", "-P", "-o", "JobID,Submit,End", "-j", ",".join(ids)],
                         capture_output=True, text=True, timeout=60).stdout
    spans = []
    for line in out.splitlines():
        _, submit, end = line.split("|")
        if submit[:1].isdigit() and end[:1].isdigit():
            spans.append((datetime.fromisoformat(submit), datetime.fromisoformat(end)))
    return spans


def idle_share(spans: list[tuple[datetime, datetime]], slots: int, until: datetime | None = None) -> float:
    """Share of slot-seconds, from the first submission to ``until`` (default: the last end), in which
    fewer than ``slots`` of the search's jobs were queued or running."""
    start, stop = min(s for s, _ in spans), until or max(e for _, e in spans)
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    idle, held, t = 0.0, 0, start
    for when, change in events:
        when = min(max(when, start), stop)
        idle += max(0, slots - held) * (when - t).total_seconds()
        held, t = held + change, when
    idle += max(0, slots - held) * (stop - t).total_seconds()
    return idle / (slots * (stop - start).total_seconds())


def measure(mode: str, trials: int, parallel: int, workdir: Path, run: bool = True) -> dict:
    sweep = workdir / mode
    cmd = [sys.executable, "-m", "tina.search", "lr_rank", "hydra/launcher=slurm_local", "--trials", str(trials),
           "--parallel", str(parallel), "--dir", str(sweep), *TINY] + (["--synchronous"] if mode == "batch" else [])
    started = time.time()
    if run:
        subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True)
    wall = time.time() - started
    spans = job_spans(sweep)
    makespan = (max(e for _, e in spans) - min(s for s, _ in spans)).total_seconds()
    study = optuna.load_study(study_name="tina", storage=JournalStorage(JournalFileBackend(str(sweep / "study.journal"))))
    states = [t.state.name for t in study.trials]
    return {"mode": mode, "jobs": len(spans), "pruned": states.count("PRUNED"), "complete": states.count("COMPLETE"),
            "makespan_s": makespan, "idle_share": idle_share(spans, parallel),
            "idle_until_last_start": idle_share(spans, parallel, until=max(s for s, _ in spans)), "driver_wall_s": wall}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=6)
    ap.add_argument("--parallel", type=int, default=2)
    ap.add_argument("--only-measure", action="store_true", help="measure the searches already in --keep")
    ap.add_argument("--keep", type=Path, help="leave the two searches here (default: a temporary folder)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = [measure(mode, args.trials, args.parallel, args.keep or Path(tmp), not args.only_measure)
                for mode in ("async", "batch")]
    print(f"{args.trials} trials, {args.parallel} slots, search space lr_rank, {' '.join(TINY)}")
    print(f"{'mode':6s} {'jobs':>4s} {'pruned':>6s} {'complete':>8s} {'makespan s':>10s} "
          f"{'idle share':>10s} {'until last submission':>21s} {'driver wall s':>13s}")
    for r in rows:
        print(f"{r['mode']:6s} {r['jobs']:>4d} {r['pruned']:>6d} {r['complete']:>8d} {r['makespan_s']:>10.0f} "
              f"{r['idle_share']:>10.1%} {r['idle_until_last_start']:>21.1%} {r['driver_wall_s']:>13.0f}")


if __name__ == "__main__":
    main()
