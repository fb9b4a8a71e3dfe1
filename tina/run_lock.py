"""One writer per run directory, across processes and the nodes of a shared file system.

Why not flock: it does not reach across NFS clients everywhere, and a lock must also say who holds
it, so that a refused user knows whom to ask and a dead holder can be told from a live one.

The lock is a file created with O_CREAT|O_EXCL, holding its holder's record. Taking over a dead
holder's lock is three steps, each built on an operation that is atomic on a local disk and on
NFSv3 and later (exclusive create and rename are single server-side operations there):

1. claim: create `.lock.takeover-<K>` with O_EXCL, where K names the dead holder's record (a hash of
   its bytes). Of all the processes that judged that holder dead, exactly one creates the claim;
   the others find it, see its creator alive, and wait to read the new holder.
2. re-check that the lock still holds the record K was taken from: a process that read the old
   holder late, after another process had already taken over, stops here.
3. rename a fully written file of our own over the lock: the lock never goes missing or half written.

The claim and the re-check go together: claims are removed only after the lock has changed, so a
claim made after the removal fails the re-check. A claim whose creator died mid-takeover is judged
like a lock (same host: its pid; other hosts: its age) and is itself taken over by a claim whose
name adds a hash of it. On NFS the re-check relies on close-to-open consistency (the default;
`nocto` mounts break it): opening the lock fetches its current attributes and data from the server.
"""

from __future__ import annotations

import hashlib
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
# How long acquire() waits for another process's takeover to finish before giving up.
CONTENDED_S = 30


def _raw(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def _parse(raw: bytes) -> dict:
    try:
        value = json.loads(raw)
    except ValueError:
        return {}  # being written, or damaged: judged by its age alone
    return value if isinstance(value, dict) else {}


def _read(path: Path) -> dict | None:
    try:
        raw = _raw(path)
    except OSError:
        return {}
    return None if raw is None else _parse(raw)


def _key(raw: bytes) -> str:
    return hashlib.sha1(raw).hexdigest()[:12]


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
    """One writer per run directory, across processes and nodes (the module docstring says how).

    A holder counts as gone when: it is this SLURM job (a requeue takes over its own lock), or it
    ran on this host and its pid is gone (or reused), or its heartbeat (the file's mtime, refreshed
    every HEARTBEAT_S) is older than STALE_AFTER_S.
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

    def gone(self, h: dict, path: Path | None = None) -> str | None:
        """Why the holder `h` of the lock (or of the claim at `path`) is gone, or None if it may be alive."""
        try:
            age = time.time() - (path or self.path).stat().st_mtime
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
        if h.get("slurm_job") and h["slurm_job"] == self.me["slurm_job"] and h.get("token") != self.me["token"]:
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

    def _create(self, path: Path) -> bool:
        """Create `path` holding our record, unless it exists (O_EXCL: atomic on local disks and NFSv3+)."""
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as f:
            json.dump(self.me, f)
            f.flush()
            os.fsync(f.fileno())
        return True

    def acquire(self) -> None:
        deadline = time.time() + CONTENDED_S
        while time.time() < deadline:
            if self._create(self.path):
                break
            raw = _raw(self.path)
            if raw is None:
                continue  # released meanwhile
            h = _parse(raw)
            why = self.requeued(h) or self.gone(h)
            if why is None:
                raise self.busy(h)
            if self._take_over(raw):
                self.took_over = f"took over the lock of {self.describe(h)}: {why}"
                log.warning("%s: %s", self.path.parent, self.took_over)
                break
            time.sleep(0.01)  # another process is taking it over: read the holder it leaves
        else:
            raise RunDirError(f"train.output_dir: could not take {self.path} (contended); try again")
        self._thread = threading.Thread(target=self._heartbeat, name="tina-lock-heartbeat", daemon=True)
        self._thread.start()

    def _take_over(self, raw: bytes) -> bool:
        """Replace the lock, whose bytes were `raw` (a gone holder's), by ours: True if we did.

        Claim that holder (or, past a claimer that died, that claimer) with O_EXCL, re-check the
        lock, rename our record over it. False: another process claimed it first, or it did already.
        """
        claim = self.path.with_name(f"{self.path.name}.takeover-{_key(raw)}")
        while not self._create(claim):
            claimed = _raw(claim)
            if claimed is None:
                continue  # its creator is done with it: claim it ourselves (the re-check will judge)
            if self.gone(_parse(claimed), claim) is None:
                return False  # a live process is taking over: it will leave its record in the lock
            claim = claim.with_name(f"{claim.name}-{_key(claimed)}")  # its creator died mid-takeover
            if len(claim.name) > 240:
                raise RunDirError(f"train.output_dir: too many takeovers of {self.path} died midway; remove "
                                  f"{self.path.name}.takeover-* there once no job writes to it")
        mine = self.path.with_name(f".{self.path.name}.{self.me['token']}.tmp")
        won = False
        try:
            if _raw(self.path) == raw:
                self._create(mine)
                os.rename(mine, self.path)
                won = True
        finally:
            mine.unlink(missing_ok=True)
            # The lock no longer holds what any claim names: a late claimer fails its re-check.
            for stale in ([claim] if not won else self.path.parent.glob(f"{self.path.name}.takeover-*")):
                stale.unlink(missing_ok=True)
        return won

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
