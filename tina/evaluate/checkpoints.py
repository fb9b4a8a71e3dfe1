"""Which weights of a run to evaluate: every checkpoint, the last, or the phase-transition "best".

A target is the base model plus, except for "base", a LoRA adapter directory. The final adapter
(RUN/adapter) is the same weights as checkpoint-N when training stopped at a save step; it is then
not evaluated twice, so `all` and `last` name the same weights the same way.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional


from tina import run_dir as rd
from tina.errors import ConfigError
from tina.phase import best_checkpoint, detect

log = logging.getLogger("tina.evaluate")


@dataclass(frozen=True)
class Target:
    name: str  # checkpoint-N, adapter, base
    step: Optional[int]
    adapter: Optional[Path]  # None: the base model itself


def _has_adapter(d: Path) -> bool:
    return (d / "adapter_config.json").is_file() and any(d.glob("adapter_model.*"))


def run_config(run_dir: Path) -> dict:
    return rd.read_config(run_dir)


def adapters(run_dir: Path) -> list[Target]:
    """The intact saved checkpoints in step order (tina.run_dir judges them), then the final adapter
    if it is not one of them."""
    found = [Target(d.name, rd.checkpoint_step(d), d) for d in rd.checkpoints(run_dir) if _has_adapter(d)]
    final = rd.adapter_dir(run_dir)
    if _has_adapter(final):
        steps = rd.read_summary(run_dir).get("steps")
        if steps is None or steps not in {t.step for t in found}:
            found.append(Target(rd.ADAPTER, steps, final))
    return found


def select(run_dir: Path, mode: str, include_base: bool) -> tuple[list[Target], dict]:
    """The targets for `mode` (all|last|best) and how they were chosen (written into each result)."""
    candidates = adapters(run_dir)
    base = [Target("base", 0, None)] if include_base else []
    if not candidates:
        if base:
            return base, {"mode": mode, "reason": "no checkpoint or adapter: base only"}
        raise ConfigError(f"run_dir: {run_dir} has no checkpoints/checkpoint-N or adapter/ with LoRA weights")
    if mode == "all":
        return base + candidates, {"mode": "all"}
    last = candidates[-1]
    if mode == "last":
        return base + [last], {"mode": "last"}
    try:
        phase = detect(run_dir)
    except FileNotFoundError:
        phase = {"step": None, "reason": "no metrics.jsonl"}
    saved = [t.step for t in candidates if t.name.startswith(rd.CHECKPOINT_PREFIX)]
    step = best_checkpoint(phase["step"], saved)
    info = {"mode": "best", "phase_step": phase["step"], "reason": phase["reason"]}
    if step is None:
        why = ("no phase transition" if phase["step"] is None
               else f"no checkpoint saved at or before step {phase['step']}")
        log.warning("best checkpoint of %s: %s (%s); evaluating the last weights, %s, instead",
                    run_dir, why, phase["reason"], last.name)
        return base + [last], {**info, "fallback": f"{why}: evaluated the last weights"}
    chosen = next(t for t in candidates if t.step == step and t.name.startswith(rd.CHECKPOINT_PREFIX))
    log.info("best checkpoint of %s: %s (phase transition at step %s)", run_dir, chosen.name, phase["step"])
    return base + [chosen], info
