"""A run's summary over its life (`Record`) and the process that owns the run (`writer`).

Split from tina/run_dir.py, which still names and reads every file: this module writes summary.json
only through run_dir's atomic writers, so whatever ends a run (return, exception, signal, full disk)
leaves a status that says what happened, and each process that ran the job is one attempt.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import subprocess
import time
import traceback
from contextlib import contextmanager
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator

from tina.errors import RunDirError
from tina.run_dir import (METRICS, PACKAGES, RESERVE, RESERVE_BYTES, SUMMARY, TIME_FORMAT, check_config, last_logged_step,
                          lock_of, read_summary, write_config, write_summary)
from tina.run_lock import RunLock, slurm_job
from tina.run_status import RunStatus

log = logging.getLogger("tina.run_dir")


def _now() -> str:
    return time.strftime(TIME_FORMAT)


def _epoch(stamp: Any) -> float | None:
    try:
        return datetime.strptime(stamp, TIME_FORMAT).timestamp()
    except (TypeError, ValueError):
        return None


class Record:
    """summary.json over a run's life; in a multi-process job only rank 0 writes.

    Used as `with Record(...) as rec:` around everything a run does: its start writes
    status=running with the host and pid (so a reader can tell a live run from a dead one); an
    exception leaves failed (with the error), an `Interrupted` leaves its own status and reason.

    Each process that runs the job is an attempt, listed in `attempts` (a requeued or preempted
    job has several): when it started and ended, how (the status it left; `died` if it ended
    without a word, judged by the next attempt; `requeued` if SLURM started the same job again
    after a signal), the checkpoint step it resumed from and its wall time. `wall_seconds` is the
    sum over attempts, so a run's cost counts the time lost to kills and requeues.
    """

    def __init__(self, run_dir: Path, enabled: bool = True, lock: RunLock | None = None):
        self.run_dir, self.enabled, self.lock = run_dir, enabled, lock
        self.previous = read_summary(run_dir)
        self.started = time.time()
        self.wall_before = float(self.previous.get("wall_seconds") or 0.0)
        old = self.previous.get("attempts")
        self.attempts = [a for a in old if isinstance(a, dict)] if isinstance(old, list) else []
        self.attempt: dict = {}

    def wall(self) -> float:
        return self.wall_before + time.time() - self.started

    def write(self, **fields: Any) -> dict:
        final = fields.get("status") not in (None, "running")
        if final and self.attempt.get("end") is None:
            self.attempt.update(ended=_now(), end=fields["status"], reason=fields.get("reason"), steps=fields.get("steps"),
                                wall_seconds=round(time.time() - self.started, 3))
            fields["attempts"] = self.attempts
        if not self.enabled or (self.lock is not None and self.lock.lost):
            return {**read_summary(self.run_dir), **fields}
        try:
            return write_summary(self.run_dir, **fields)
        except OSError as e:
            reserve = self.run_dir / RESERVE
            if not final or e.errno not in (errno.ENOSPC, errno.EDQUOT) or not reserve.exists():
                raise
            log.error("%s: %s: writing the run's end into the room kept for it", self.run_dir, e.strerror)
            reserve.unlink()
            return write_summary(self.run_dir, **fields)

    def _keep_room(self) -> None:
        """Take the room the final summary needs now, while there is some: on a full disk the run then
        still ends with its status and the error, not `running` with no reason."""
        try:
            with open(self.run_dir / RESERVE, "wb") as f:
                f.write(bytes(RESERVE_BYTES))
                f.flush()
                os.fsync(f.fileno())
        except OSError as e:
            (self.run_dir / RESERVE).unlink(missing_ok=True)
            raise RunDirError(f"train.output_dir: no room for the run's record in {self.run_dir} ({e.strerror})") from None

    def resumed_from(self, step: int | None) -> None:
        self.attempt["resumed_from"] = step
        self.write(attempts=self.attempts)

    def _close_previous(self) -> None:
        """Say how the last attempt ended, where it could not: killed without a word, or requeued."""
        last = self.attempts[-1] if self.attempts else None
        if last is None:
            return
        if last.get("end") is None:  # kill -9, a node failure, SLURM's SIGKILL: judged by its last write
            files = [self.run_dir / SUMMARY, self.run_dir / METRICS]
            ended = max((p.stat().st_mtime for p in files if p.exists()), default=self.started)
            wall = max(0.0, ended - (_epoch(last.get("started")) or ended))
            last.update(ended=time.strftime(TIME_FORMAT, time.localtime(ended)), end="died", steps=last_logged_step(self.run_dir),
                        reason="ended without a word (killed?); its end is its last write", wall_seconds=round(wall, 3))
            self.wall_before += wall
        elif last.get("end") == "interrupted" and last.get("slurm_job") and last["slurm_job"] == slurm_job():
            last["end"] = "requeued"  # `scontrol requeue` ends a job with SIGTERM, then starts it again

    def __enter__(self) -> "Record":
        extra = {"lock_takeover": self.lock.took_over} if self.lock and self.lock.took_over else {}
        if self.enabled:
            self._keep_room()
        self._close_previous()
        self.attempt = {"started": _now(), "host": socket.gethostname(), "pid": os.getpid(),
                        "slurm_job": slurm_job(), "resumed_from": None, "ended": None, "end": None}
        self.attempts.append(self.attempt)
        self.write(status=RunStatus.RUNNING, error=None, reason=None, traceback=None, host=socket.gethostname(),
                   pid=os.getpid(), wall_seconds=self.wall_before, steps=self.previous.get("steps", 0),
                   attempts=self.attempts, **extra)
        return self

    def __exit__(self, kind, exc, tb) -> bool:
        if exc is None:
            return False
        status, reason = getattr(exc, "status", None), getattr(exc, "reason", None)
        if isinstance(exc, KeyboardInterrupt):
            status, reason = RunStatus.INTERRUPTED, "KeyboardInterrupt (SIGINT: Ctrl-C or kill -INT)"
        if status is None:
            status, reason = RunStatus.FAILED, None
            log.error("run failed: %s: %s", type(exc).__name__, exc)
        self.write(status=status, reason=reason, wall_seconds=self.wall(),
                   error=None if reason else f"{type(exc).__name__}: {exc}",
                   traceback=None if reason else "".join(traceback.format_exception(kind, exc, tb)))
        return False


@contextmanager
def writer(run_dir: Path, config: dict, hydra_files: dict | None = None, main_process: bool = True,
           defaults: dict | None = None) -> Iterator[Record]:
    """Own `run_dir` for one training process: refuse another config or a live writer before
    touching a byte, then lock, write the config, and keep the summary true until the end."""
    check_config(run_dir, config, defaults)  # read only: a refused start changes nothing
    lock = lock_of(run_dir) if main_process else None
    if lock is not None:
        existed = run_dir.exists()
        run_dir.mkdir(parents=True, exist_ok=True)
        try:
            lock.acquire()
        except BaseException:
            if not existed:
                run_dir.rmdir()
            raise
    try:
        if main_process:
            check_config(run_dir, config, defaults)  # again, under the lock: the other writer may have just written it
            write_config(run_dir, config, hydra_files)
        with Record(run_dir, enabled=main_process, lock=lock) as record:
            yield record
    finally:
        if main_process:
            (run_dir / RESERVE).unlink(missing_ok=True)
        if lock is not None:
            lock.release()




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
        "hostname": socket.gethostname(),
        "slurm_job_id": os.environ.get("SLURM_ARRAY_JOB_ID") or os.environ.get("SLURM_JOB_ID"),
    }
