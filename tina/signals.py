"""Stopping on a signal without losing work or the truth about why.

SLURM sends SIGUSR2 before preemption or the time limit (submitit then requeues the job) and
SIGTERM on `scancel` or at the limit. During training the handler only sets a flag: the step in
flight completes, a checkpoint is saved, and `chain()` hands the signal to whoever held it before
(submitit). Outside the training loop (loading data or the model, before the first step) there is
nothing to finish, so the handler raises `Interrupted` at once; the run's record turns it into a
status with the reason.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Iterator

from tina.run_status import RunStatus

SIGNALS = (signal.SIGTERM, signal.SIGUSR2)


def status_for(signum: int) -> RunStatus:
    """USR2 is SLURM's warning before a requeue; anything else ends the run."""
    return RunStatus.PREEMPTED if signum == signal.SIGUSR2 else RunStatus.INTERRUPTED


class Interrupted(BaseException):
    """A signal ended the run; BaseException so that no `except Exception` swallows it."""

    def __init__(self, signum: int, where: str):
        self.signum = signum
        self.status = status_for(signum)
        self.reason = f"{signal.Signals(signum).name} {where}"
        super().__init__(self.reason)


class SignalGuard:
    """Installs the handlers (main thread only: Python allows handlers nowhere else)."""

    def __init__(self):
        self.signalled: int | None = None
        self.previous: dict[int, object] = {}
        self._deferring = False
        self.where = "before the first step"

    def __enter__(self) -> "SignalGuard":
        if threading.current_thread() is threading.main_thread():
            for sig in SIGNALS:
                self.previous[sig] = signal.signal(sig, self._on_signal)
        return self

    def __exit__(self, *exc) -> bool:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        return False

    def _on_signal(self, signum, frame):
        self.signalled = signum
        if not self._deferring:
            raise Interrupted(signum, self.where)

    @contextmanager
    def deferred(self) -> Iterator[None]:
        """Within: a signal is only recorded; the trainer's callback stops after the current step."""
        self._deferring = True
        try:
            yield
        finally:
            self._deferring = False

    def chain(self) -> None:
        """After the record is written: pass the signal on (submitit requeues there), then exit."""
        handler = self.previous.get(self.signalled)
        if callable(handler):
            handler(self.signalled, None)
        raise SystemExit(128 + self.signalled)
