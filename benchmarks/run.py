"""Run every benchmark and print its figures: `python benchmarks/run.py [--quick] [--only NAME ...]`.

    overhead   bench_overhead.py   tina.train vs a plain TRL script (training-loop and end-to-end ratios)
    sweep      bench_sweep.py      5-job sweep on the local SLURM (and the basic launcher): driver vs jobs
    newcomer   bench_newcomer.sh   clone -> venv -> README install -> tina.train -> analysis.report
    analysis   bench_analysis.py   analysis.collect / analysis.report on a synthetic 1,000-run sweep
    gpu        bench_gpu.py        1.5B Open-RS2 GRPO step (skips without CUDA; --dry-run shape check always)

--quick: fewer steps and runs (minutes, not tens of minutes); overhead keeps 3 interleaved repetitions (5 in full).
Each benchmark runs as its own process, one after another (they would distort each other's timings);
a failing one is reported and the rest still run. Exit status 1 if any failed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PY = sys.executable


def commands(quick: bool) -> dict[str, list[list[str]]]:
    return {
        "overhead": [[PY, str(HERE / "bench_overhead.py"), "--steps", "20" if quick else "40", "--reps", "3" if quick else "5"]
                     + ([] if quick else ["--eval-arm"])],
        "sweep": [[PY, str(HERE / "bench_sweep.py"), "--steps", "5" if quick else "20"]],
        "newcomer": [["bash", str(HERE / "bench_newcomer.sh")] + (["--", "train.max_steps=20"] if quick else [])],
        "analysis": [[PY, str(HERE / "bench_analysis.py")] + (["--runs", "100", "--steps", "300"] if quick else [])],
        "gpu": [[PY, str(HERE / "bench_gpu.py"), "--dry-run"], [PY, str(HERE / "bench_gpu.py")]],
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--only", nargs="+", choices=list(commands(False)), help="run only these")
    args = p.parse_args()
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(HERE.parent)}
    print(f"benchmarks/run.py{' --quick' if args.quick else ''}: {time.strftime('%Y-%m-%d %H:%M %Z')}, "
          f"nproc {os.cpu_count()}, load {' '.join(f'{x:.1f}' for x in os.getloadavg())}", flush=True)
    failed = []
    for name, cmds in commands(args.quick).items():
        if args.only and name not in args.only:
            continue
        for cmd in cmds:
            print(f"\n=== {name}: {' '.join(Path(c).name if c.startswith('/') else c for c in cmd)}", flush=True)
            t0 = time.time()
            rc = subprocess.call(cmd, cwd=HERE.parent, env=env)
            print(f"=== {name}: exit {rc} after {time.time() - t0:.0f} s", flush=True)
            if rc:
                failed.append(name)
    print(f"\nbenchmarks: {'all ran' if not failed else 'FAILED: ' + ', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
