"""Every study (study/NAME.yaml) at toy scale, end to end: `python benchmarks/studies.py [NAME ...]`.

Per study it runs the header's toy command (`python -m tina.train -m +study=NAME`, plus --extra
overrides that shorten it for a shared CPU), then prints the command, its wall time, the sentence its
report section ends with (analysis.studies, as `python -m analysis.report SWEEP` writes it) and the
paper-scale price of the header's paper command (`python -m tina.plan`, the paper's cost table).

  python benchmarks/studies.py                                  # all five, the toy commands as written
  python benchmarks/studies.py rank --extra train.max_steps=40  # shorter runs
  python benchmarks/studies.py --sweeps DIR                     # report sweeps already run under DIR/NAME
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from analysis import studies  # noqa: E402


def price(name: str) -> str:
    cmd = studies.commands(name)["price"]
    argv = shlex.split(cmd)[1:]  # python -m tina.plan ...
    env = {**os.environ, "TINA_LIGHTEVAL_PYTHON": os.environ.get("TINA_LIGHTEVAL_PYTHON", sys.executable)}
    proc = subprocess.run([sys.executable, *argv, "--json"], cwd=ROOT, capture_output=True, text=True, env=env)
    if proc.returncode:
        return f"not priced: {proc.stderr.strip()[-300:]}"
    p = json.loads(proc.stdout)
    return (f"{len(p['jobs'])} jobs, {p['total_gpu_hours']:.1f} GPU-hours, {p['total_usd']:.2f} USD "
            f"(train {p['train_usd']:.2f} + eval {p['eval_usd']:.2f})")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("names", nargs="*", default=list(studies.STUDIES))
    ap.add_argument("--extra", action="append", default=[], help="an override added to each toy command")
    ap.add_argument("--out", type=Path, default=ROOT / "multirun" / f"studies-{time.strftime('%Y%m%d-%H%M%S')}")
    ap.add_argument("--sweeps", type=Path, help="report sweeps already run under DIR/NAME; train nothing")
    a = ap.parse_args(argv)
    from analysis.runs import collect

    for name in a.names:
        toy = studies.commands(name)["toy"]
        sweep = (a.sweeps or a.out) / name
        cmd = [*shlex.split(toy)[1:], *a.extra, f"hydra.sweep.dir={sweep}"]
        wall = None
        if a.sweeps is None:
            started = time.time()
            proc = subprocess.run([sys.executable, *cmd], cwd=ROOT, capture_output=True, text=True)
            wall = time.time() - started
            if proc.returncode:
                print(f"== {name}: FAILED ({proc.returncode})\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
                continue
        found = studies.findings(collect(sweep, cache=False))
        line = studies.sentence(studies.STUDIES[name].claim, found[0][2]) if found else "(no study sweep found)"
        print(f"== {name}\ncommand: python {shlex.join(cmd)}\ntoy wall time: "
              + ("-" if wall is None else f"{wall:.0f} s") + f"\nsentence: {line}\npaper-scale price: {price(name)}",
              flush=True)
        if found and found[0][2].table is not None:
            print(found[0][2].table.to_string(index=False), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
