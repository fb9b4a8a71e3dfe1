"""Calibration of analysis.compare's verdicts on synthetic outcomes with a known truth, and its speed
on a 1,000-run sweep.

    python benchmarks/bench_compare.py [--reps 2000] [--runs 1000] [--keep DIR]

Truth (tests/synthetic_outcomes.py): problem difficulties p_i ~ U(0.15, 0.85), a fresh problem set
per comparison; per-problem accuracy Binomial(k, p)/k; the arm's p is p_i + delta; with seeds, each
run's p shifts by Normal(0, seed_sd). Printed: the false-verdict rate on identical arms, the power
at a true 4-point difference, the coverage of the 95% interval; then the wall and CPU time of
`python -m analysis.compare SWEEP --json` on a sweep written the way tina writes it (1,000 runs:
125 arms of lora.rank x optim.lr, 8 training seeds each, each run evaluated on math_500 (500
problems) and aime24 (30) with 4 samples).

MEASURED (2,000 comparisons each; 2 CPU cores shared with other jobs, load ~9.5):

    identical arms, 500 problems x 4 samples: false verdicts 0.045 (sd 0.005); interval covers 0: 0.955
    identical arms, 30 problems x 8 samples:  false verdicts 0.044 (sd 0.005); interval covers 0: 0.956
    true +4.0 pp, 500 x 4: power 0.781 (sd 0.009; normal theory 0.80); interval covers +4.0: 0.951
    true +4.0 pp, 500 x 4, seed SD 2 pp: 2 seeds per arm power 0.282, coverage 0.904;
                                         3 seeds 0.412, 0.926; 5 seeds 0.710, 0.944
    analysis.compare on 1,000 runs (125 arms x 8 seeds, math_500 + aime24 each; 72 comparisons):
                                         22.1 s wall, 7.6 CPU-s (most of it imports and reading 2,000 records)
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from analysis import verdicts as vd  # noqa: E402
from tests.synthetic_outcomes import ids, simulate, write_run  # noqa: E402


def rate(x) -> str:
    x = np.asarray(x, dtype=float)
    return f"{x.mean():.3f} (binomial sd {math.sqrt(x.mean() * (1 - x.mean()) / len(x)):.3f}, {len(x)} comparisons)"


def calibration(reps: int) -> None:
    rng = np.random.default_rng(0)
    for n, k in ((500, 4), (30, 8)):
        a, b = simulate(rng, reps, n, k)
        r = vd.paired([a], [b])
        print(f"identical arms, {n} problems x {k} samples: false verdicts {rate(r['p'] < vd.ALPHA)}; "
              f"95% interval covers 0: {rate((r['low'] <= 0) & (0 <= r['high']))}")
    a, b = simulate(rng, reps, 500, 4, delta=0.04)
    r = vd.paired([a], [b])
    print(f"true +4.0 pp, 500 problems x 4 samples: power (verdict better) {rate((r['p'] < vd.ALPHA) & (r['delta'] > 0))}; "
          f"95% interval covers +4.0: {rate((r['low'] <= 0.04) & (0.04 <= r['high']))}")
    for seeds in (2, 3, 5):
        a, b = simulate(rng, reps, 500, 4, seeds=seeds, delta=0.04, seed_sd=0.02)
        r = vd.paired([a], [b])
        print(f"true +4.0 pp, 500 x 4, {seeds} seeds per arm, seed SD 2 pp: power {rate((r['p'] < vd.ALPHA) & (r['delta'] > 0))}; "
              f"coverage {rate((r['low'] <= 0.04) & (0.04 <= r['high']))}")


def write_sweep(root: Path, runs: int) -> None:
    rng = np.random.default_rng(1)
    ranks, lrs, seeds = [4, 8, 16, 32, 64], [1e-6, 2e-6, 5e-6, 1e-5, 2e-5], 8
    arms = [(r, lr) for r in ranks for lr in lrs] * math.ceil(runs / (len(ranks) * len(lrs) * seeds))
    benches = {"math_500": (500, ids(500, "math")), "aime24": (30, ids(30, "aime"))}
    j = 0
    for rank, lr in arms:
        for s in range(seeds):
            if j == runs:
                return
            run = root / f"{j}_lora.rank-{rank}__optim.lr-{lr}__train.seed-{s}"
            for bench, (n, pid) in benches.items():
                values = rng.binomial(4, rng.uniform(0.15, 0.85, n)) / 4
                write_run(run, [f"lora.rank={rank}", f"optim.lr={lr}", f"train.seed={s}"], values, pid, benchmark=bench)
            j += 1


def timing(runs: int, keep: Path | None) -> None:
    root = keep or Path(tempfile.mkdtemp(prefix="bench_compare_"))
    sweep = root / "sweep"
    try:
        if not sweep.exists():
            started = time.time()
            write_sweep(sweep, runs)
            print(f"wrote {runs} runs in {time.time() - started:.1f} s: {sweep}")
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.time()
        out = subprocess.run([sys.executable, "-m", "analysis.compare", str(sweep), "--json"], capture_output=True,
                             text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
        wall = time.time() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if out.returncode:
            raise SystemExit(out.stderr)
        import json

        n = len(json.loads(out.stdout)["comparisons"])
        print(f"analysis.compare on {runs} runs ({n} comparisons): {wall:.1f} s wall, "
              f"{after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime:.1f} CPU-s "
              f"(load {os.getloadavg()[0]:.1f})")
    finally:
        if keep is None:
            shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=2000)
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--keep", type=Path)
    a = ap.parse_args()
    calibration(a.reps)
    timing(a.runs, a.keep)


if __name__ == "__main__":
    main()
