"""One writer per run directory, across processes and the nodes of a shared file system.

Why not flock: it does not reach across NFS clients everywhere, and a lock must also say who holds
it, so that a refused user knows whom to ask and a dead holder can be told from a live one.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from pathlib import Path

from tina.errors import RunDirError

log = logging.getLogger("tina.run_dir")

# A lock's holder refreshes its mtime this often; past STALE_AFTER_S without it, a holder on
# another host (whose pid cannot be checked) counts as dead. 10 heartbeats of slack ride out a
# slow shared file system; a crashed job's directory is free again after 5 minutes.
HEARTBEAT_S = 30
STALE_AFTER_S = 300


def _read(path: Path) -> dict | None:
    try:
        value = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}  # being written, or damaged: judged by its age alone
    return value if isinstance(value, dict) else {}


def slurm_job() -> str | None:
    """This job's identity across requeues: the array task, or the job id."""
    if os.environ.get("SLURM_ARRAY_JOB_ID"):
        return f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ.get('SLURM_ARRAY_TASK_ID', '')}"
    return os.environ.get("SLURM_JOB_ID")


def start_time(pid: int) -> str | None:
    """The process's start time (field 22 of /proc/PID/stat): a reused pid has another."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


class RunLock:
    """One writer per run directory, across processes and nodes.

    Taken with O_CREAT|O_EXCL (atomic on local and NFSv3+ file systems); the holder's record says
    who to ask. A holder counts as gone when: it is this SLURM job (a requeue takes over its own
    lock), or it ran on this host and its pid is gone (or reused), or its heartbeat (the file's
    mtime, refreshed every HEARTBEAT_S) is older than STALE_AFTER_S. Takeover renames the stale
    lock aside first, so of two processes racing to take it over, exactly one wins.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self.me = {"host": socket.gethostname(), "pid": os.getpid(), "start_time": start_time(os.getpid()),
                   "slurm_job": slurm_job(), "token": uuid.uuid4().hex,
                   "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        self.lost = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.took_over: str | None = None

    def holder(self) -> dict | None:
        return _read(self.path)

    def gone(self, h: dict) -> str | None:
        """Why holder `h` no longer holds the run, or None if it may be alive."""
        try:
            age = time.time() - self.path.stat().st_mtime
        except FileNotFoundError:
            return "released"
        if h.get("host") == self.me["host"] and isinstance(h.get("pid"), int):
            if start_time(h["pid"]) is None or start_time(h["pid"]) != h.get("start_time"):
                return f"its process {h['pid']} on this host is gone"
            return None
        if age > STALE_AFTER_S:
            return f"no heartbeat for {age:.0f} s (limit {STALE_AFTER_S} s)"
        return None

    def requeued(self, h: dict) -> str | None:
        """A requeued SLURM job takes over its own lock: its old process is being killed, maybe on another node."""
        if h.get("slurm_job") and h["slurm_job"] == self.me["slurm_job"]:
            return f"it is this SLURM job ({h['slurm_job']}) before a requeue"
        return None

    def describe(self, h: dict) -> str:
        job = f", SLURM job {h['slurm_job']}" if h.get("slurm_job") else ""
        return f"pid {h.get('pid', '?')} on {h.get('host', '?')}{job}, since {h.get('since', '?')}"

    def busy(self, h: dict) -> RunDirError:
        return RunDirError(
            f"train.output_dir: {self.path.parent} is in use by {self.describe(h)}. Wait for it to finish, "
            f"or stop it; a dead holder's lock is taken over (same host: at once, other hosts: after "
            f"{STALE_AFTER_S} s without a heartbeat)."
        )

    def check_free(self) -> None:
        """Raise (touching nothing) if a live process holds the run."""
        h = self.holder()
        if h is not None and self.gone(h) is None:
            raise self.busy(h)

    def acquire(self) -> None:
        for _ in range(5):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                h = self.holder()
                if h is None:
                    continue  # released meanwhile
                why = self.requeued(h) or self.gone(h)
                if why is None:
                    raise self.busy(h)
                try:
                    os.rename(self.path, self.path.with_name(f"{self.path.name}.stale-{uuid.uuid4().hex[:8]}"))
                except FileNotFoundError:
                    continue  # another process took it over first: try again, against its lock
                self.took_over = f"took over the lock of {self.describe(h)}: {why}"
                log.warning("%s: %s", self.path.parent, self.took_over)
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(self.me, f)
                f.flush()
                os.fsync(f.fileno())
            for stale in self.path.parent.glob(f"{self.path.name}.stale-*"):
                stale.unlink(missing_ok=True)
            self._thread = threading.Thread(target=self._heartbeat, name="tina-lock-heartbeat", daemon=True)
            self._thread.start()
            return
        raise RunDirError(f"train.output_dir: could not take {self.path} (contended); try again")

    def _heartbeat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            if self.owned():
                os.utime(self.path)
            else:
                self.lost = True
                log.error("%s: the lock was taken over by %s", self.path.parent, self.describe(self.holder() or {}))
                return

    def owned(self) -> bool:
        return (self.holder() or {}).get("token") == self.me["token"]

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self.owned():
            self.path.unlink(missing_ok=True)
