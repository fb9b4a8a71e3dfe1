"""The README's table of the default run, measured again: `python benchmarks/readme_figures.py`.

Trains `python -m tina.train train.seed=S` for each seed (default 42 43 44) one after another, each
in a fresh run directory under --out, and prints the README's table from the runs' own files, with
the date, machine and versions it was measured on, so anyone can check the README's figures and
replace them with their own. `--runs DIR ...` prints the table of runs already trained.

The figures are the ones tests/test_learning.py holds every default run to: the format reward over
the last 10% of steps, the total reward's mean over the first and last 10% of steps, and the
held-out format and accuracy before and after training (summary.json).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FORMAT, REWARD = "rewards/format_reward/mean", "reward"


def tenth_means(rows: list[dict], key: str) -> tuple[float, float]:
    n = max(1, len(rows) // 10)
    return sum(r[key] for r in rows[:n]) / n, sum(r[key] for r in rows[-n:]) / n


def row(run: Path) -> str:
    summary = json.loads((run / "summary.json").read_text())
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    _, fmt = tenth_means(rows, FORMAT)
    r0, r1 = tenth_means(rows, REWARD)
    base, final = summary["heldout_base"], summary["heldout_final"]
    return (f"| {_seed(run)} | {fmt:.3f} | {r0:.2f} -> {r1:.2f} | {base['format']:.3f} -> {final['format']:.3f} | "
            f"{base['accuracy']:.3f} -> {final['accuracy']:.3f} | {summary['wall_seconds']:.0f} s |")


def _seed(run: Path) -> str:
    import yaml

    return str(yaml.safe_load((run / "config.yaml").read_text())["train"]["seed"])


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else platform.processor()
    import torch
    import transformers
    import trl

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"{cpu}, {os.cpu_count()} CPUs, load average {load:.1f} at the end; python {platform.python_version()}, "
            f"torch {torch.__version__}, transformers {transformers.__version__}, trl {trl.__version__}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    ap.add_argument("--out", type=Path, default=Path("outputs") / f"readme-figures-{time.strftime('%Y-%m-%d-%H-%M-%S')}")
    ap.add_argument("--runs", type=Path, nargs="+", help="print the table of these runs; train nothing")
    args = ap.parse_args(argv)
    runs = args.runs or []
    for seed in [] if args.runs else args.seeds:
        run = args.out / f"seed-{seed}"
        proc = subprocess.run([sys.executable, "-m", "tina.train", f"train.seed={seed}", f"hydra.run.dir={run}"],
                              cwd=ROOT, capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"seed {seed} failed ({run}):\n{proc.stderr[-2000:]}", file=sys.stderr)
            return 1
        runs.append(run)
        print(f"seed {seed}: {run}", file=sys.stderr, flush=True)
    print(f"Measured {time.strftime('%Y-%m-%d')} on {machine()}:\n")
    print("| seed | format reward, last 10% of steps | total reward, first -> last 10% | held-out format "
          "| held-out accuracy | wall |")
    print("|---|---|---|---|---|---|")
    for run in runs:
        print(row(run))
    return 0


if __name__ == "__main__":
    sys.exit(main())
