"""Trainer callbacks: the metrics file, where to stop, and stopping cleanly on a signal.

They hook into HF Trainer's loop rather than wrapping it, so TRL's GRPOTrainer runs unchanged.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path

from transformers import TrainerCallback

from tina import run_dir as rd

# HF Trainer's last log of a run carries these run totals, not a step's metrics.
_RUN_TOTALS = ("train_runtime", "train_samples_per_second", "train_steps_per_second", "train_loss")


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


class StopAt(TrainerCallback):
    """Stop and checkpoint at `stop_step`, before the LR schedule's horizon, as the paper did by hand.

    Also stops with a checkpoint on SIGTERM (time limit, `scancel`) and SIGUSR2 (SLURM's warning
    before preemption or the time limit, which submitit turns into a requeue). The handler only
    sets a flag: the step in flight completes and is saved, and `chain()` then hands the signal
    to whoever held it before (submitit requeues the job there), so a resumed job redoes nothing.
    """

    def __init__(self, stop_step: float, signals: tuple[int, ...] = (signal.SIGTERM, signal.SIGUSR2)):
        self.stop_step = stop_step
        self.signalled: int | None = None
        self.previous: dict[int, object] = {}
        if threading.current_thread() is threading.main_thread():  # Python allows handlers only there
            for sig in signals:
                self.previous[sig] = signal.signal(sig, self._on_signal)

    def _on_signal(self, signum, frame):
        self.signalled = signum

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step >= self.stop_step or self.signalled is not None:
            control.should_training_stop = True
            control.should_save = True

    def chain(self) -> None:
        """After the checkpoint is written: pass the signal on, then end the process."""
        handler = self.previous.get(self.signalled)
        if callable(handler):
            handler(self.signalled, None)  # submitit: checkpoint the job, requeue it, exit
        raise SystemExit(128 + self.signalled)


class PhaseEarlyStop(TrainerCallback):
    """Stop `patience` steps after the format-reward / completion-length phase transition.

    The paper's best checkpoints sit at or just before that turning point, and training on past it
    only spends money. The detector (analysis.phase) reads the run's own metrics.jsonl, so what
    stops training is exactly what the report will show. It runs every `every` logged steps: a
    change-point fit costs milliseconds, but not nothing, at every step of a long run.
    """

    def __init__(self, run_dir: Path, patience: int, every: int = 10):
        self.run_dir, self.patience, self.every = run_dir, patience, every
        self.transition: int | None = None

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.global_step % self.every or not state.is_world_process_zero:
            return
        from analysis.phase import detect

        step = detect(self.run_dir / rd.METRICS)["step"]
        if step is not None and state.global_step >= step + self.patience:
            self.transition = step
            control.should_training_stop = True
            control.should_save = True
