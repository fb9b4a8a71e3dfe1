"""The files a run leaves behind, so a run can be read, resumed or costed without its process.

Layout (README "Run directory"): config.yaml, metrics.jsonl, summary.json, checkpoints/, adapter/.
Writes are atomic (summary) or append-and-flush (metrics), so a killed job leaves readable files.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf

from tina.config import ConfigError

METRICS = "metrics.jsonl"
SUMMARY = "summary.json"
CONFIG = "config.yaml"
CHECKPOINTS = "checkpoints"
ADAPTER = "adapter"

# Keys that may change between a run and its resumption: where to stop, how to log.
RESUMABLE_CHANGES = ("train.stop_at_step", "train.early_stop", "train.early_stop_patience", "wandb", "eval")

PACKAGES = ("torch", "transformers", "trl", "peft", "accelerate", "datasets", "hydra-core", "math-verify")


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def check_or_write_config(run_dir: Path, cfg: DictConfig) -> None:
    """Write the resolved config; in a directory that already has one, refuse a different run.

    Resuming with another lr or rank would silently mix two experiments in one metrics file.
    """
    new = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    path = run_dir / CONFIG
    if path.exists():
        old = _flatten(yaml.safe_load(path.read_text()))
        changed = sorted(
            k for k, v in _flatten(new).items()
            if old.get(k) != v and not k.startswith(RESUMABLE_CHANGES)
        )
        if changed:
            raise ConfigError(
                f"train.output_dir: {run_dir} holds a run with another config (differs in {changed}); "
                f"only {list(RESUMABLE_CHANGES)} may change on resume. Choose a new train.output_dir."
            )
    run_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump(new, sort_keys=False))
    os.replace(tmp, path)


def last_checkpoint(run_dir: Path) -> Path | None:
    ckpts = [p for p in (run_dir / CHECKPOINTS).glob("checkpoint-*") if (p / "trainer_state.json").exists()]
    return max(ckpts, key=lambda p: int(p.name.split("-")[1]), default=None)


def saved_steps(run_dir: Path | str) -> list[int]:
    """Steps of RUN/checkpoints/checkpoint-N, sorted."""
    return sorted(int(p.name.split("-")[1]) for p in (Path(run_dir) / CHECKPOINTS).glob("checkpoint-*")
                  if p.name.split("-")[1].isdigit())


def truncate_metrics(run_dir: Path, after_step: int) -> None:
    """Drop logged steps past the checkpoint we resume from: they will be trained and logged again."""
    path = run_dir / METRICS
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line)["step"] <= after_step:
                kept.append(line)
        except (json.JSONDecodeError, KeyError, TypeError):
            pass  # a line cut short by a kill
    path.write_text("".join(f"{line}\n" for line in kept))


def last_logged_step(run_dir: Path) -> int:
    """The last step in metrics.jsonl (0 if none): a running job's progress, read from its tail."""
    path = run_dir / METRICS
    if not path.exists():
        return 0
    with open(path, "rb") as f:
        f.seek(max(0, path.stat().st_size - 8192))
        for line in reversed(f.read().decode(errors="replace").splitlines()):
            try:
                return int(json.loads(line)["step"])
            except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                continue  # a line cut short by a writer or a kill
    return 0


def append_metrics(run_dir: Path, record: dict) -> None:
    with open(run_dir / METRICS, "a") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()


def read_summary(run_dir: Path) -> dict:
    path = run_dir / SUMMARY
    return json.loads(path.read_text()) if path.exists() else {}


def write_summary(run_dir: Path, **fields: Any) -> dict:
    """Merge fields into summary.json atomically."""
    summary = {**read_summary(run_dir), **fields, "updated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    tmp = run_dir / (SUMMARY + ".tmp")
    tmp.write_text(json.dumps(summary, indent=2, default=str))
    os.replace(tmp, run_dir / SUMMARY)
    return summary


class Summary:
    """summary.json for one run; in a multi-process job only rank 0 writes."""

    def __init__(self, run_dir: Path, enabled: bool = True):
        self.run_dir, self.enabled = run_dir, enabled

    def write(self, **fields: Any) -> dict:
        return write_summary(self.run_dir, **fields) if self.enabled else {**read_summary(self.run_dir), **fields}


def environment() -> dict:
    """Versions, git SHA and device: what a reader needs to trust or cost a run."""
    import torch

    versions = {}
    for pkg in PACKAGES:
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
            cwd=Path(__file__).parent,
        ).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        sha = None
    cuda = torch.cuda.is_available()
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return {
        "versions": versions,
        "git_sha": sha,
        "device": {
            "type": "cuda" if cuda else "cpu",
            "gpu_name": torch.cuda.get_device_name(0) if cuda else None,
            "num_gpus": world if cuda else 0,
        },
        "world_size": world,
        "hostname": os.uname().nodename,
        "slurm_job_id": os.environ.get("SLURM_ARRAY_JOB_ID") or os.environ.get("SLURM_JOB_ID"),
    }
