"""The default run visibly learns: the criteria the README states, on one full default run (~2 min)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def tenth_means(rows: list[dict], key: str) -> tuple[float, float]:
    n = max(1, len(rows) // 10)
    return (sum(r[key] for r in rows[:n]) / n, sum(r[key] for r in rows[-n:]) / n)


def test_default_run_learns(tmp_path):
    run = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "tina.train", f"hydra.run.dir={run}"],
                          capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 200

    _, format_last = tenth_means(rows, "rewards/format_reward/mean")
    reward_first, reward_last = tenth_means(rows, "reward")
    assert format_last >= 0.9
    assert reward_last - reward_first >= 0.4  # out of 3: format 1 + accuracy 2

    summary = json.loads((run / "summary.json").read_text())
    base, final = summary["heldout_base"], summary["heldout_final"]
    assert final["accuracy"] - base["accuracy"] >= 0.2, (base, final)
    assert final["format"] >= 0.9
