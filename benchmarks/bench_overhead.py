"""Wrapper overhead: `python -m tina.train` against the same job as a plain TRL script (plain_trl.py).

    python benchmarks/bench_overhead.py [--steps 40] [--reps 3] [--eval-arm] [--keep DIR]

Both run as subprocesses, interleaved A B / B A / A B ... so load drift on a shared machine hits
both alike; each figure is a median over repetitions and the result is a RATIO of medians.
  * end to end: wall time of the whole process (interpreter start to exit), and its CPU seconds
    (user+sys of the child; less sensitive to other jobs than wall time)
  * training loop: HF's train_runtime (tina: summary.json; plain: plain_summary.json), and the median
    of TRL's per-step `step_time` (robust to a burst of load from other jobs during a few steps)
tina runs with dataset.eval_size=0 so neither side evaluates; `--eval-arm` adds a third arm, tina
with its default held-out evaluation (200 problems before and after training), to show that cost.
It also checks both did the same work: the same number of tokens (same seed, same data).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_arm(arm: str, out: Path, steps: int) -> dict:
    if arm == "plain":
        cmd = [sys.executable, str(ROOT / "benchmarks" / "plain_trl.py"), str(out), "--steps", str(steps)]
    else:
        cmd = [sys.executable, "-m", "tina.train", f"train.max_steps={steps}", f"hydra.run.dir={out}"]
        if arm == "tina":
            cmd.append("dataset.eval_size=0")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cpu0, t0 = _cpu(), time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    wall, cpu = time.perf_counter() - t0, _cpu() - cpu0
    if proc.returncode != 0:
        sys.exit(f"{arm} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    if arm == "plain":
        s = json.loads((out / "plain_summary.json").read_text())
        tokens, steps = s["num_tokens"], s["step_times"]
    else:
        s = json.loads((out / "summary.json").read_text())
        rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        tokens, steps = rows[-1]["num_tokens"], [r["step_time"] for r in rows]
    return {"wall": wall, "cpu": cpu, "loop": s["train_runtime"], "step": statistics.median(steps),
            "tokens": tokens, "steps": s["steps"]}


def med(rows: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in rows)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--eval-arm", action="store_true", help="also time tina with its default held-out eval")
    p.add_argument("--keep", type=Path, help="keep the run directories here")
    args = p.parse_args(argv)

    tmp = args.keep or Path(tempfile.mkdtemp(prefix="bench_overhead_"))
    arms = ["tina", "plain"] + (["tina+eval"] if args.eval_arm else [])
    res: dict[str, list[dict]] = {a: [] for a in arms}
    print(f"bench_overhead: {args.steps} steps, {args.reps} reps, arms {arms}, nproc {os.cpu_count()}, "
          f"load {os.getloadavg()[0]:.1f}", flush=True)
    for i in range(args.reps):
        order = arms if i % 2 == 0 else arms[::-1]
        for arm in order:
            r = run_arm(arm, tmp / f"{arm}_{i}", args.steps)
            res[arm].append(r)
            print(f"  rep {i} {arm:9s} wall {r['wall']:6.1f} s  cpu {r['cpu']:6.1f} s  loop {r['loop']:6.1f} s  "
                  f"outside loop {r['wall'] - r['loop']:5.1f} s  median step {1000 * r['step']:4.0f} ms  tokens {r['tokens']:.0f}", flush=True)
    if not args.keep:
        shutil.rmtree(tmp, ignore_errors=True)

    same = {r["tokens"] for a in ("tina", "plain") for r in res[a]}
    t, b = res["tina"], res["plain"]
    out = {
        "steps": args.steps, "reps": args.reps,
        "same_work": len(same) == 1,
        "loop_ratio": med(t, "loop") / med(b, "loop"),
        "wall_ratio": med(t, "wall") / med(b, "wall"),
        "cpu_ratio": med(t, "cpu") / med(b, "cpu"),
        "step_ratio": med(t, "step") / med(b, "step"),
        "paired_loop_ratio": statistics.median(x["loop"] / y["loop"] for x, y in zip(t, b)),
        "median": {a: {k: med(rs, k) for k in ("wall", "cpu", "loop", "step")} for a, rs in res.items()},
    }
    m = out["median"]
    print(f"\nmedians over {args.reps} reps ({args.steps} steps; same tokens on both sides: {out['same_work']}):")
    for a in arms:
        print(f"  {a:9s} wall {m[a]['wall']:6.1f} s  cpu {m[a]['cpu']:6.1f} s  loop {m[a]['loop']:6.1f} s  "
              f"outside loop {m[a]['wall'] - m[a]['loop']:5.1f} s  median step {1000 * m[a]['step']:4.0f} ms")
    print(f"RATIO training loop (tina/plain)  {out['loop_ratio']:.3f}x   target <= 1.03x: "
          f"{'PASS' if out['loop_ratio'] <= 1.03 else 'MISS'}")
    print(f"  same, median of per-rep ratios {out['paired_loop_ratio']:.3f}x; median step_time (TRL's per-step "
          f"metric; median over reps of each run's median) {out['step_ratio']:.3f}x")
    print(f"RATIO end to end wall             {out['wall_ratio']:.3f}x   (+{m['tina']['wall'] - m['plain']['wall']:.1f} s)")
    print(f"RATIO end to end CPU seconds      {out['cpu_ratio']:.3f}x   (+{m['tina']['cpu'] - m['plain']['cpu']:.1f} s)")
    if args.eval_arm:
        e = m["tina+eval"]
        print(f"held-out eval (2 x 200 problems) adds {e['cpu'] - m['tina']['cpu']:+.1f} CPU-s, {e['wall'] - m['tina']['wall']:+.1f} s "
              f"wall (tina+eval / plain: {e['cpu'] / m['plain']['cpu']:.3f}x CPU, {e['wall'] / m['plain']['wall']:.3f}x wall)")
    return out


if __name__ == "__main__":
    main()
