"""Trainer callbacks: the metrics file, checkpoint markers, where to stop, and a quiet console.

They hook into HF Trainer's loop rather than wrapping it, so TRL's GRPOTrainer runs unchanged.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from transformers import TrainerCallback

from tina import run_dir as rd
from tina.phase import CLIPPED_KEY, FORMAT_KEY, LENGTH_KEY, detect
from tina.run_lock import RunLock
from tina.signals import SignalGuard

log = logging.getLogger("tina.train")

# HF Trainer's last log of a run carries these run totals, not a step's metrics.
_RUN_TOTALS = ("train_runtime", "train_samples_per_second", "train_steps_per_second", "train_loss")
# What the console shows of a step (everything goes to metrics.jsonl): name -> TRL's key.
CONSOLE_KEYS = {"reward": ("reward", ".3f"), "format": (FORMAT_KEY, ".3f"), "length": (LENGTH_KEY, ".1f"),
                "cut": (CLIPPED_KEY, ".0%"), "s/step": ("step_time", ".2f")}
# Shown only when not zero: the share of completions cut at the length budget, which lose their
# closing tags and so the format reward (how a destabilisation looks from inside a run).
WHEN_NONZERO = {"cut"}


class MetricsFile(TrainerCallback):
    """Append each logging step to metrics.jsonl under TRL's own metric names."""

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        self.totals: dict = {}

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        if any(k in logs for k in _RUN_TOTALS):
            self.totals = {k: v for k, v in logs.items() if k in _RUN_TOTALS}
            return
        rd.append_metrics(self.run_dir, {"step": state.global_step, **logs})


class MarkComplete(TrainerCallback):
    """Mark each checkpoint complete once the trainer has written all of it (on_save comes last)."""

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            rd.mark_complete(rd.checkpoint_dir(Path(args.output_dir).parent, state.global_step))


class StopAt(TrainerCallback):
    """Stop and checkpoint at `stop_step`, before the LR schedule's horizon, as the paper did by hand;
    or after the step in flight when a signal came (SignalGuard) or the run's lock was lost."""

    def __init__(self, stop_step: float, guard: SignalGuard, lock: RunLock | None = None):
        self.stop_step, self.guard, self.lock = stop_step, guard, lock

    def on_step_end(self, args, state, control, **kwargs):
        if self.lock is not None and self.lock.lost:
            raise rd.RunDirError(f"train.output_dir: another process took over {self.lock.path}; stopped without saving")
        if state.global_step >= self.stop_step or self.guard.signalled is not None:
            control.should_training_stop = True
            control.should_save = True


class PhaseEarlyStop(TrainerCallback):
    """Stop `patience` steps after the format-reward / completion-length phase transition.

    The paper's best checkpoints sit at or just before that turning point, and training on past it
    only spends money. The detector (tina.phase) reads the run's own metrics.jsonl, so what
    stops training is exactly what the report will show. It runs every `every` logged steps: a
    change-point fit costs milliseconds, but not nothing, at every step of a long run.
    """

    def __init__(self, run_dir: Path, patience: int, every: int = 10):
        self.run_dir, self.patience, self.every = run_dir, patience, every
        self.transition: int | None = None

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.global_step % self.every or not state.is_world_process_zero:
            return
        step = detect(self.run_dir / rd.METRICS)["step"]
        if step is not None and state.global_step >= step + self.patience:
            self.transition = step
            control.should_training_stop = True
            control.should_save = True


class QuietProgress(TrainerCallback):
    """The few numbers that matter as one log line, instead of a printed dict per step: after the first
    step, about every 10% of the run, and at least once a minute (a GPU step can take a minute).

    The same lines on a terminal and piped (a SLURM log, `| tee`): HF's bar drew nothing on a
    terminal once library progress bars were off, and its carriage returns are noise in a log.
    """

    EVERY_S = 60.0

    @staticmethod
    def numbers(logs: dict) -> str:
        return "  ".join(f"{name} {logs[key]:{spec}}" for name, (key, spec) in CONSOLE_KEYS.items()
                         if isinstance(logs.get(key), (int, float)) and (logs[key] or name not in WHEN_NONZERO))

    def on_train_begin(self, args, state, control, **kwargs):
        self.start = self.last_line = time.time()
        self.first_step = state.global_step
        self.every = max(1, state.max_steps // 10)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs or any(k in logs for k in _RUN_TOTALS):
            return
        now, step = time.time(), state.global_step
        if (step == self.first_step + 1 or step % self.every == 0 or step == state.max_steps
                or now - self.last_line >= self.EVERY_S):
            self.last_line = now
            eta = (now - self.start) / max(step - self.first_step, 1) * (state.max_steps - step)
            log.info("step %d/%d  %s  eta %.0f s", step, state.max_steps, self.numbers(logs), eta)
