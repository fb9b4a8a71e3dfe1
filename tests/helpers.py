"""What several test modules share: the short real training run and readers of its files."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Small, fast, and still the real path: TRL's GRPOTrainer, PEFT LoRA, the tiny model, the toy data.
TINY = ["train.save_steps=4", "algorithm.max_completion_length=16"]


def train_cmd(run_dir: Path, *overrides: str) -> list[str]:
    return [sys.executable, "-m", "tina.train", f"hydra.run.dir={run_dir}", *TINY, *overrides]


def train(run_dir: Path, *overrides: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
    proc = subprocess.run(train_cmd(run_dir, *overrides), capture_output=True, text=True, cwd=ROOT, timeout=timeout)
    if check:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def tree_digest(root: Path) -> dict[str, str]:
    """Every file under root (and every directory), with a hash of its bytes: 'untouched' made checkable."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        out[rel] = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
    return out
