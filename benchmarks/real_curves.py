"""The phase detector on the public GRPO logs in ../shared/real_curves (data from elsewhere: read in
place, never copied into the project). One line per run: the format key used, the acquisition and
the destabilisation with their confidence.

    python benchmarks/real_curves.py [DIR] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tina.metrics import read_metrics
from tina.phase import detect

ROOT = Path(__file__).resolve().parents[1]
# ../shared beside the checkout (a worktree sits one level deeper)
DEFAULT = next((p for p in (ROOT.parent / "shared" / "real_curves", ROOT.parents[1] / "shared" / "real_curves")
                if p.is_dir()), ROOT.parent / "shared" / "real_curves")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dir", nargs="?", type=Path, default=DEFAULT)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    files = sorted(a.dir.glob("*.jsonl"))
    if not files:
        print(f"no *.jsonl in {a.dir}", file=sys.stderr)
        return 2
    out = []
    for f in files:
        df = read_metrics(f)
        r = detect(df)
        out.append({"run": f.stem, "steps": int(df["step"].max()), "format_key": r["evidence"]["format"]["key"],
                    "format_available": r["evidence"]["format"]["available"],
                    "acquisition_step": r["acquisition_step"], "acquisition_confidence": r["acquisition_confidence"],
                    "step": r["step"], "confidence": r["confidence"], "reason": r["reason"],
                    "acquisition_reason": r["acquisition_reason"]})
    if a.json:
        print(json.dumps(out, indent=1))
        return 0
    for i, o in enumerate(out):
        acq = f"{o['acquisition_step']} ({o['acquisition_confidence']})" if o["acquisition_step"] else "-"
        dst = f"{o['step']} ({o['confidence']})" if o["step"] else "-"
        key = o["format_key"] if o["format_available"] else "(no format key)"
        print(f"{i:2d} {o['run'][:58]:58s} {o['steps']:4d} {key[:36]:36s} acq {acq:14s} destab {dst}")
    print(f"{sum(o['acquisition_step'] is not None for o in out)} acquisitions, "
          f"{sum(o['step'] is not None for o in out)} destabilisations in {len(out)} runs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
