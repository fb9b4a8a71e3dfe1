"""What several test modules share (test modules import from here, never from each other):

* ``TINY``, ``train`` and readers: the short real training run and its files;
* ``real_sweep``: the one real tiny sweep a test session trains and evaluates, for the reports;
* ``compose_cfg`` / ``options``: compose the training config as the CLI would;
* ``curve``: a synthetic training curve with a known phase transition (described in
  tests/test_phase.py's docstring, which measures the detector on them);
* ``make_run`` and friends: hand-written run directories in every state a run can be in;
* ``TINY_MODEL``, ``lora_run``, ``FIXTURES``: the embedded model, runs with real LoRA adapters of it,
  and the benchmark files, for the evaluation tests.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from tina.phase import FORMAT_KEY, LENGTH_KEY
from tina import run_dir as rd
from tina.run_lock import start_time
from tina.config import check_override_keys
from tina.embedded import TINY_DIR
from tina.status import sweep_status

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
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


# ----------------------------------------------------------------------------- config
def assert_rebuild_identical(out: Path, committed: Path, *args: str, timeout: float = 900) -> None:
    """`python -m tina.embedded.build --out OUT ARGS` makes exactly the committed files, byte for byte."""
    proc = subprocess.run([sys.executable, "-m", "tina.embedded.build", "--out", str(out), "--no-eval", *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    names = sorted(p.name for p in committed.iterdir())
    assert sorted(p.name for p in out.iterdir()) == names
    for name in names:
        assert (out / name).read_bytes() == (committed / name).read_bytes(), name


def fall_begins(steps: list[int], fmt: list[float], window: int = 11, drop: float = 0.1) -> dict | None:
    """Where the format reward's fall begins, by a rule that does not use tina.phase: the peak of its
    centred rolling mean (`window` steps); the first step after it from which the rolling mean stays
    more than `drop` below the peak for `window` steps; and, before that, the last step still within
    drop/3 of the peak (still on the plateau): the fall begins there. None when it never falls so."""
    r = pd.Series(fmt).rolling(window, center=True, min_periods=window // 2 + 1).mean().to_numpy()
    peak = int(np.argmax(r))
    low = r < r[peak] - drop
    for c in range(peak + 1, len(r) - window + 1):
        if low[c: c + window].all():
            begin = max(i for i in range(peak, c) if r[i] >= r[peak] - drop / 3)
            return {"peak_step": steps[peak], "peak": float(r[peak]), "crossed": steps[c], "step": steps[begin],
                    "bottom": float(r[c:].min())}
    return None


def rise_halfway(steps: list[int], fmt: list[float], fall: dict, window: int = 11) -> int:
    """Where the format reward's rise is halfway, by a rule that does not use tina.phase: the first
    step whose centred rolling mean (`window` steps) is halfway from the first 10 steps' mean to the
    peak that fall_begins found."""
    r = pd.Series(fmt).rolling(window, center=True, min_periods=window // 2 + 1).mean().to_numpy()
    half = (float(np.mean(fmt[:10])) + fall["peak"]) / 2
    return steps[int(np.argmax(r >= half))]


def compose_cfg(overrides: list[str]):
    check_override_keys(overrides)
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("train", overrides=overrides, return_hydra_config=False)


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


# ----------------------------------------------------------------------------- synthetic curves
def curve(seed: int, n: int = 850, frac: float = 0.5, noise: float = 1.0, offset: float = 0.0,
          kind: str = "transition"):
    """(metrics frame, true transition step or None). kind: transition | plateau | noise | limr."""
    r = np.random.default_rng(seed)
    t = np.arange(1, n + 1, dtype=float)
    T, Tl = frac * n, (frac + offset) * n
    f0, fmax = r.uniform(0.0, 0.2), r.uniform(0.8, 0.95)
    rise_c, rise_w = r.uniform(0.25, 0.6) * T, r.uniform(0.04, 0.1) * T
    f = f0 + (fmax - f0) / (1 + np.exp(-(t - rise_c) / rise_w))
    sf = 0.05 * noise
    L0 = r.uniform(600, 1000)
    Lmin = L0 * r.uniform(0.5, 0.7)
    sl = 0.05 * L0 * noise
    sfv = np.full(n, sf)
    if kind == "transition":
        drop = r.uniform(0.2, 0.4)
        f = np.where(t > T, f - drop * np.minimum((t - T) / (0.2 * n), 1.0), f)
        L = np.where(t <= Tl, L0 + (Lmin - L0) * (t / Tl) ** r.uniform(0.7, 1.5),
                     Lmin + (t - Tl) / n * r.uniform(0.6, 1.2) * L0)
        sfv = np.where(t > T, 1.5 * sf, sf)
    elif kind == "plateau":  # format rises and stays; length falls and stays
        L = Lmin + (L0 - Lmin) * np.exp(-t / (r.uniform(0.1, 0.3) * n))
    elif kind == "limr":  # format keeps rising slowly, length drifts down: no turn anywhere
        f = f0 + (fmax - f0) * t / n
        L = L0 - (L0 - Lmin) * t / n
    elif kind == "noise":
        f = np.full(n, r.uniform(0.2, 0.8))
        L = np.full(n, L0)
    else:
        raise ValueError(kind)
    f = np.clip(f + r.normal(0, 1, n) * sfv, 0, 1)
    L = L + r.normal(0, sl, n)
    truth = int(min(T, Tl)) if kind == "transition" else None
    df = pd.DataFrame({"step": t.astype(int), FORMAT_KEY: f, LENGTH_KEY: L,
                       "reward": f + r.normal(0, 0.1, n)})
    return df, truth


# ----------------------------------------------------------------------------- hand-written runs
def rows(n: int, start: int = 1) -> list[dict]:
    """n metrics.jsonl records whose every metric moves linearly with the step."""
    return [{"step": s, "loss": 0.0, "reward": 1.0 + s / 100, FORMAT_KEY: 0.5 + s / 100,
             "rewards/accuracy_reward/mean": s / 100, LENGTH_KEY: 30.0 - s / 10,
             "kl": s / 1000, "step_time": 2.0, "epoch": s / 250, "num_tokens": 1000.0 * s}
            for s in range(start, start + n)]


def make_run(d: Path, *, summary: dict | None = None, metrics: list[dict] | None = None,
             tail: str = "", overrides=("lora.rank=8", "optim.lr=1e-3"), config=True,
             checkpoints=()) -> Path:
    """A run directory as tina.train leaves it; ``tail`` is appended raw (a half-written line)."""
    (d / ".hydra").mkdir(parents=True, exist_ok=True)
    if overrides is not None:
        (d / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    if config:
        rank = dict(o.split("=") for o in overrides or ()).get("lora.rank", 8)
        (d / rd.CONFIG).write_text(
            f"model: {{name_or_path: /nonexistent/model}}\nlora: {{rank: {rank}}}\n"
            f"optim: {{lr: 0.001}}\nalgorithm: {{name: grpo, beta: 0.04}}\n"
            f"dataset: {{name: toy}}\ntrain: {{max_steps: 10}}\n")
    if summary is not None:
        (d / rd.SUMMARY).write_text(json.dumps(summary))
    if metrics is not None:
        (d / rd.METRICS).write_text("".join(json.dumps(r) + "\n" for r in metrics) + tail)
    for s in checkpoints:
        complete_checkpoint(d, s)
    return d


def complete_checkpoint(run: Path, step: int) -> None:
    """Make checkpoint-`step` count, as tina.run_dir judges a checkpoint: a trainer state, then the marker."""
    ckpt = rd.checkpoint_dir(run, step)
    ckpt.mkdir(parents=True, exist_ok=True)
    (ckpt / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    rd.mark_complete(ckpt)


def done(steps=10, **kw) -> dict:
    """summary.json of a completed 2x L40S run of one hour."""
    return {"status": "completed", "steps": steps, "max_steps": 10, "wall_seconds": 3600.0,
            "device": {"type": "cuda", "gpu_name": "NVIDIA L40S", "num_gpus": 2, "gpu_type": "L40S"},
            "num_params": 1000, "trainable_params": 10, "error": None,
            "heldout_base": {"format": 0.5, "accuracy": 0.25, "n": 8},
            "heldout_final": {"format": 0.75, "accuracy": 0.5, "n": 8}, **kw}


def write_eval(run: Path, checkpoint: str, benchmark: str, pass1: float, step=None, **extra) -> Path:
    """An evaluation result where tina.evaluate writes one (tina/evaluate/results.py)."""
    from tina.evaluate.results import result_path, write

    p = result_path(run, checkpoint, benchmark)
    write(p, {"benchmark": benchmark, "checkpoint": checkpoint, "step": step, "pass@1": pass1, **extra})
    return p


def transition_metrics(n: int = 300, seed: int = 1) -> list[dict]:
    """metrics.jsonl records of a run with a clear phase transition (at ~n/2)."""
    m, _ = curve(seed, n=n)
    return [{"step": int(s), FORMAT_KEY: float(f), LENGTH_KEY: float(L), "kl": 0.001 * s,
             "rewards/accuracy_reward/mean": 0.3, "epoch": s / n}
            for s, f, L in zip(m["step"], m[FORMAT_KEY], m[LENGTH_KEY])]


# ----------------------------------------------------------------------------- one real sweep
def run_cli(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    """``python -m ARGS`` from the repository root; asserts success, shows the output's tail."""
    proc = subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@functools.cache
def _real_sweep(base: Path) -> Path:
    sweep = base / "real_sweep"
    # a checkpoint every 3 steps (the later override wins): two to evaluate in a 6-step run, whose
    # 6 logged points are too few for the phase detector (the "no transition, and why" case)
    run_cli("tina.train", "-m", f"hydra.sweep.dir={sweep}", "train.max_steps=6", *TINY,
            "train.save_steps=3", "lora.rank=4,8")
    runs = sorted(p for p in sweep.iterdir() if (p / rd.SUMMARY).is_file())
    # the paper's checkpoint experiment: the first run evaluated at every checkpoint (~5 s each)
    # (quoted: Hydra's grammar reads the '=' and ',' of a sweep job's folder name otherwise)
    run_cli("tina.evaluate", f"run_dir='{runs[0]}'", "eval.checkpoints=all", "eval.limit=40",
            "eval.n_samples=2", "eval.seeds=[0,1]")
    return sweep


def real_sweep(tmp_path_factory) -> Path:
    """Two real LoRA-GRPO runs of the embedded tiny model (lora.rank=4,8; 6 steps, checkpoints at
    3 and 6), the first evaluated at every checkpoint. Trained once per test session, whichever
    module asks first (~1 min on 2 cores); treat it as read-only."""
    return _real_sweep(tmp_path_factory.getbasetemp())


def hand_written_sweep(sweep: Path) -> Path:
    """A LoRA-rank sweep of five runs, one per state: completed with a transition and checkpoints,
    completed (twice the cost), failed, not started (.hydra only) and running (a half-written line,
    its lock held by this live process)."""
    full = transition_metrics()
    make_run(sweep / "0_lora.rank=4", summary=done(steps=300), metrics=full,
             overrides=["lora.rank=4"], checkpoints=(100, 200, 300))
    make_run(sweep / "1_lora.rank=16", summary=done(steps=300, wall_seconds=7200.0), metrics=full,
             overrides=["lora.rank=16"])
    make_run(sweep / "2_lora.rank=8", summary=done(steps=3, status="failed", error="OSError: disk full"),
             metrics=rows(3), overrides=["lora.rank=8"])
    make_run(sweep / "3_lora.rank=32", overrides=["lora.rank=32"])  # not started
    running = make_run(sweep / "4_lora.rank=64", summary={"status": "running", "steps": 0}, metrics=rows(3),
                       tail='{"st', overrides=["lora.rank=64"])
    hold_lock(running)
    return sweep


def hold_lock(run: Path) -> None:
    """Make `run` look held by a live writer (this test process), as a running job's is."""
    (run / rd.LOCK).write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid(),
                                           "start_time": start_time(os.getpid())}))


# ----------------------------------------------------------------------------- provisioned tools
def provisioned(cmd: list[str], what: str, timeout: float = 1800) -> str:
    """Run an idempotent provisioning script (scripts/*.sh) and return the last line it prints (a path).
    When it fails the tests that need it skip, except under CI, where they must run: fail instead."""
    up = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    if up.returncode != 0:
        why = f"{what} unavailable: {' '.join(cmd[1:])} failed: {up.stderr.strip()[-2000:] or '?'}"
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the tests that need {what}: {why}")
        pytest.skip(why)
    return up.stdout.strip().splitlines()[-1]


# ----------------------------------------------------------------------------- evaluation
FIXTURES = Path(__file__).parent / "fixtures"
# The embedded tiny model; TINA_TINY_MODEL points elsewhere (a model being rebuilt, say).
TINY_MODEL = Path(os.environ.get("TINA_TINY_MODEL", TINY_DIR))
needs_tiny = pytest.mark.skipif(not (TINY_MODEL / "config.json").is_file(), reason=f"no tiny model at {TINY_MODEL}")


def lora_run(root: Path, steps=(2,), final_step: int | None = 3, lora: bool = True) -> Path:
    """A run directory with the weights evaluation reads: LoRA adapters of the embedded model, PEFT initialised
    non-zero (a different seed each, so every adapter is different weights) and saved."""
    run = root / "run"
    (run / rd.CHECKPOINTS).mkdir(parents=True)
    (run / rd.CONFIG).write_text(yaml.safe_dump({"model": {"name_or_path": str(TINY_MODEL), "chat_template": None}}))
    (run / rd.SUMMARY).write_text(json.dumps({"status": "completed", "steps": final_step}))
    dirs = [rd.checkpoint_dir(run, s) for s in steps] + ([run / rd.ADAPTER] if final_step else [])
    if lora:
        from peft import LoraConfig, get_peft_model
        from transformers import AutoModelForCausalLM

        for i, d in enumerate(dirs):
            import torch

            torch.manual_seed(i)
            base = AutoModelForCausalLM.from_pretrained(TINY_MODEL)
            cfg = LoraConfig(r=4, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
            get_peft_model(base, cfg).save_pretrained(d)
    else:  # selection only looks at the files
        for d in dirs:
            d.mkdir(parents=True)
            (d / "adapter_config.json").write_text("{}")
            (d / "adapter_model.safetensors").write_bytes(b"")
    for s in steps:
        complete_checkpoint(run, s)
    return run


# ----------------------------------------------------------------------------- the local SLURM cluster
WAIT_S = 400


def sh(*cmd: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


WAIT_S = 400

def sweep_cmd(sweep: Path, *overrides: str) -> list[str]:
    return [sys.executable, "-m", "tina.train", "-m", "hydra/launcher=slurm_local",
            f"hydra.sweep.dir={sweep}", *TINY, *overrides]


def run_sweep(sweep: Path, *overrides: str) -> subprocess.CompletedProcess:
    return subprocess.run(sweep_cmd(sweep, *overrides), capture_output=True, text=True, cwd=ROOT, timeout=WAIT_S)


def rows_now(sweep: Path) -> list[dict]:
    """The sweep's rows so far; none before its first job has started."""
    try:
        return sweep_status(sweep)
    except FileNotFoundError:
        return []


def wait_for(predicate, what: str, timeout: float = WAIT_S, proc: subprocess.Popen | None = None):
    deadline = time.time() + timeout
    while not predicate():
        if time.time() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}\n{sh('squeue').stdout}")
        time.sleep(0.2)
