"""The statuses a run can have, and what each one means to the tools that act on it.

One type so that tina.train (which writes them), tina.status, tina.sweep rerun, tina.search,
the cost model and the reports (which act on them) cannot disagree about which runs are finished,
which are still on their way and which need a rerun. A `RunStatus` is a `str`: summary.json and
status rows hold the plain value, and `RunStatus("completed") == "completed"`.
"""

from __future__ import annotations

from enum import StrEnum


class RunStatus(StrEnum):
    # written into summary.json by the run itself
    RUNNING = "running"
    COMPLETED = "completed"
    STOPPED_EARLY = "stopped_early"  # stopped at its phase transition (train.early_stop): a result
    FAILED = "failed"
    INTERRUPTED = "interrupted"  # SIGINT/SIGTERM: scancel, the time limit, Ctrl-C
    PREEMPTED = "preempted"  # SIGUSR2: SLURM's warning before a requeue
    # derived by readers (tina.run_dir.run_state, tina.status) from files, the lock and SLURM
    DIED = "died"  # says running, but no process holds it
    NOT_STARTED = "not started"
    NO_SUMMARY = "no summary"
    UNREADABLE = "unreadable"  # a damaged summary.json: wants a person, not a rerun
    PENDING = "pending"  # queued in SLURM
    CANCELLED = "cancelled"  # cancelled in SLURM before it started

    @property
    def finished(self) -> bool:
        """Trained to the end it was asked for, or to its transition: a result, nothing to redo."""
        return self in (RunStatus.COMPLETED, RunStatus.STOPPED_EARLY)

    @property
    def alive(self) -> bool:
        """Still on its way (queued or holding the run's lock): leave it alone."""
        return self in (RunStatus.RUNNING, RunStatus.PENDING)

    @property
    def ended(self) -> bool:
        """The run's own last word: its process ended and will not go on by itself (a preempted
        run may be requeued by SLURM)."""
        return self.finished or self in (RunStatus.FAILED, RunStatus.INTERRUPTED)

    @property
    def needs_rerun(self) -> bool:
        """Neither finished nor on its way nor damaged. A preempted run that SLURM requeues is alive
        instead: tina.status.needs_rerun also asks SLURM."""
        return not (self.finished or self.alive or self is RunStatus.UNREADABLE)

    @property
    def trial_state(self) -> str:
        """What a search tells Optuna (a `optuna.trial.TrialState` name) about a trial whose run
        ended so: a finished run, early-stopped included, is COMPLETE with its objective."""
        return "COMPLETE" if self.finished else "RUNNING" if self.alive else "FAIL"


def status_of(value: str | None) -> RunStatus | None:
    """The RunStatus of a summary's or row's status text; None for no status or an unknown one."""
    try:
        return RunStatus(value) if value is not None else None
    except ValueError:
        return None
