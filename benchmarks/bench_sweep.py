"""Launch-and-collect overhead of a 5-job sweep: driver wall time against the jobs' own time.

    python benchmarks/bench_sweep.py [--steps 20] [--reps 1] [--no-basic] [--keep DIR]

Runs `python -m tina.train -m hydra/launcher=slurm_local lora.rank=4,8,16,32,64 train.max_steps=K
dataset.eval_size=0` on the local one-node SLURM (scripts/slurm-local.sh up first; it needs root)
and, unless --no-basic, the same sweep with Hydra's basic launcher (jobs one after another inside
the driver process), the two interleaved per repetition.

SLURM: the jobs run at once (array_parallelism 8 > 5), so the ideal driver wall is the longest job.
  overhead        = driver wall / max job wall    (job wall: sacct Elapsed, the whole job process;
                                                   and summary.json wall_seconds, train() only)
  not in any job  = share of the driver's wall not covered by the union of the jobs' sacct
                    [Start, End] (submission, queueing, start-up before the first job, result polling)
Basic launcher: jobs are sequential, so the ideal is the sum of the jobs' wall_seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RANKS = "4,8,16,32,64"


def _sweep(launcher: str, sweep_dir: Path, steps: int) -> float:
    cmd = [sys.executable, "-m", "tina.train", "-m", f"hydra/launcher={launcher}", f"lora.rank={RANKS}",
           f"train.max_steps={steps}", "dataset.eval_size=0", f"hydra.sweep.dir={sweep_dir}"]
    t0 = time.time()
    proc = subprocess.run(cmd, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"sweep ({launcher}) failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return t0


def _summaries(sweep_dir: Path) -> list[dict]:
    runs = sorted(p for p in sweep_dir.iterdir() if (p / "summary.json").is_file())
    out = [json.loads((p / "summary.json").read_text()) for p in runs]
    bad = [s.get("status") for s in out if s.get("status") != "completed"]
    if len(out) != 5 or bad:
        sys.exit(f"{sweep_dir}: expected 5 completed runs, got {len(out)} (not completed: {bad})")
    return out


def _sacct(sweep_dir: Path) -> list[tuple[float, float]]:
    """[(start, end)] epoch seconds of the sweep's array tasks, from SLURM accounting (1 s resolution)."""
    ids = sorted({p.name.split("_")[0] for p in (sweep_dir / ".submitit").iterdir() if p.is_dir()})
    for _ in range(20):  # slurmdbd may lag the controller by a moment
        text = subprocess.run(["sacct", "-X", "-n", "-P", "-o", "JobID,State,Start,End", "-j", ",".join(ids)],
                              capture_output=True, text=True, timeout=30).stdout
        rows = [line.split("|") for line in text.splitlines() if line]
        if len(rows) == 5 and all(r[1] == "COMPLETED" and r[3] not in ("Unknown", "") for r in rows):
            return [(datetime.fromisoformat(r[2]).timestamp(), datetime.fromisoformat(r[3]).timestamp()) for r in rows]
        time.sleep(1)
    sys.exit(f"sacct did not report 5 completed tasks for {ids}:\n{text}")


def _union(intervals: list[tuple[float, float]]) -> float:
    total, end = 0.0, float("-inf")
    for s, e in sorted(intervals):
        s = max(s, end)
        if e > s:
            total, end = total + e - s, e
    return total


def slurm_once(sweep_dir: Path, steps: int) -> dict:
    t0 = _sweep("slurm_local", sweep_dir, steps)
    wall = time.time() - t0
    jobs = _sacct(sweep_dir)
    walls = [s["wall_seconds"] for s in _summaries(sweep_dir)]
    elapsed = [e - s for s, e in jobs]
    return {
        "driver": wall, "max_sacct": max(elapsed), "max_summary": max(walls),
        "overhead_sacct": wall / max(elapsed), "overhead_summary": wall / max(walls),
        "not_in_jobs": 1 - _union([(max(s, t0), min(e, t0 + wall)) for s, e in jobs]) / wall,
        "first_start": min(s for s, _ in jobs) - t0, "after_last_end": t0 + wall - max(e for _, e in jobs),
    }


def basic_once(sweep_dir: Path, steps: int) -> dict:
    t0 = _sweep("basic", sweep_dir, steps)
    wall = time.time() - t0
    total = sum(s["wall_seconds"] for s in _summaries(sweep_dir))
    return {"driver": wall, "sum_jobs": total, "overhead": wall / total, "not_in_jobs": 1 - total / wall}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--reps", type=int, default=1)
    p.add_argument("--no-basic", action="store_true", help="skip the basic-launcher comparison")
    p.add_argument("--keep", type=Path, help="keep the sweep directories here")
    args = p.parse_args(argv)

    up = subprocess.run([str(ROOT / "scripts" / "slurm-local.sh"), "up"], capture_output=True, text=True)
    if up.returncode != 0:
        sys.exit(f"bench_sweep: the local SLURM cluster is not up (scripts/slurm-local.sh up):\n{up.stderr[-1500:]}")
    others = subprocess.run(["squeue", "-h"], capture_output=True, text=True).stdout.strip()
    print(f"bench_sweep: 5 jobs (lora.rank={RANKS}) x {args.steps} steps, {args.reps} rep(s), nproc {os.cpu_count()}, "
          f"load {os.getloadavg()[0]:.1f}; other SLURM jobs queued: {len(others.splitlines()) if others else 0}",
          flush=True)
    tmp = args.keep or Path(tempfile.mkdtemp(prefix="bench_sweep_"))
    slurm, basic = [], []
    for i in range(args.reps):
        order = ["slurm", "basic"] if i % 2 == 0 else ["basic", "slurm"]
        for kind in order:
            if kind == "basic" and args.no_basic:
                continue
            if kind == "slurm":
                r = slurm_once(tmp / f"slurm_{i}", args.steps)
                slurm.append(r)
                print(f"  rep {i} slurm_local: driver {r['driver']:6.1f} s, longest job {r['max_sacct']:5.0f} s "
                      f"(sacct) / {r['max_summary']:5.1f} s (summary) -> overhead {r['overhead_sacct']:.2f}x / "
                      f"{r['overhead_summary']:.2f}x; not in any job {100 * r['not_in_jobs']:.0f}% "
                      f"(first job start {r['first_start']:+.0f} s after launch, driver exit {r['after_last_end']:+.0f} s "
                      f"after the last job's sacct End; 1 s resolution)", flush=True)
            else:
                r = basic_once(tmp / f"basic_{i}", args.steps)
                basic.append(r)
                print(f"  rep {i} basic:       driver {r['driver']:6.1f} s, sum of jobs {r['sum_jobs']:6.1f} s "
                      f"(summary) -> overhead {r['overhead']:.2f}x; not in any job {100 * r['not_in_jobs']:.0f}%",
                      flush=True)
    if not args.keep:
        shutil.rmtree(tmp, ignore_errors=True)

    def med(rows, k):
        v = sorted(r[k] for r in rows)
        return v[len(v) // 2] if len(v) % 2 else (v[len(v) // 2 - 1] + v[len(v) // 2]) / 2

    out = {"steps": args.steps, "slurm": {k: med(slurm, k) for k in slurm[0]}}
    s = out["slurm"]
    print(f"\nRATIO slurm_local sweep: driver / longest job = {s['overhead_sacct']:.2f}x (sacct Elapsed), "
          f"{s['overhead_summary']:.2f}x (summary wall_seconds); {100 * s['not_in_jobs']:.0f}% of the driver's "
          f"wall outside every job")
    if basic:
        out["basic"] = b = {k: med(basic, k) for k in basic[0]}
        print(f"RATIO basic sweep: driver / sum of jobs = {b['overhead']:.2f}x; {100 * b['not_in_jobs']:.0f}% outside jobs; "
              f"driver wall slurm_local / basic = {s['driver'] / b['driver']:.2f}x")
    return out


if __name__ == "__main__":
    main()
