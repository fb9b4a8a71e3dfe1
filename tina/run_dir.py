"""The run directory: the one module that names, reads and writes a run's files.

A run directory is the record of an experiment, read long after its process is gone (by
`tina.status`, `tina.evaluate`, `analysis`), on a shared file system, by jobs that are killed,
requeued or started twice. So every rule that keeps the record true lives here, once:

- names: config.yaml, summary.json, metrics.jsonl, trainer_config.json, checkpoints/checkpoint-N,
  adapter/, eval/, .lock;
- small files are written atomically (temp file, fsync, rename): a kill leaves the old or the new;
- one writer at a time (`RunLock`): an O_EXCL lock file with the holder's host, pid, SLURM job and
  a heartbeat (its mtime), because flock does not reach across the nodes of a shared file system;
- a checkpoint counts once its marker, written last, lists its files at their sizes; a damaged
  last checkpoint is set aside (renamed, never deleted) and the run resumes from the one before;
- the summary's lifecycle (`Record`, `writer`) is tina/run_record.py's, written through this module;
- `run_state`: the one derivation of a run's state from its files, for status and reports.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
import uuid
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from tina.errors import RunDirError
from tina.run_lock import RunLock
from tina.safe_pickles import refused_pickle
from tina.run_status import RunStatus

log = logging.getLogger("tina.run_dir")

CONFIG = "config.yaml"
SUMMARY = "summary.json"
METRICS = "metrics.jsonl"
CHECKPOINTS = "checkpoints"
ADAPTER = "adapter"
EVAL = "eval"
HELDOUT = "heldout.json"  # per-problem held-out outcomes, before and after training (kept out of the summary: ~20 B a problem)
LOCK = ".lock"
HYDRA = ".hydra"  # Hydra's record of the job: these three files
HYDRA_CONFIG, HYDRA_YAML, HYDRA_OVERRIDES = "config.yaml", "hydra.yaml", "overrides.yaml"
TRAIN_LOG = "train.log"
# TRL's GRPOConfig as the trainer resolved it: what tina set and every default TRL filled in.
TRAINER_CONFIG = "trainer_config.json"
CHECKPOINT_PREFIX = "checkpoint-"
COMPLETE = "tina-complete.json"  # written last into a checkpoint: its files and their sizes
# Room kept for the final summary (a few KiB; a traceback more), freed when the disk is full.
RESERVE, RESERVE_BYTES = ".summary-reserve", 1 << 20
TIME_FORMAT = "%Y-%m-%dT%H:%M:%S%z"
SET_ASIDE = "set-aside"  # checkpoints/set-aside/: damaged checkpoints, kept for a post-mortem

# Keys that may change between a run and its resumption: where to stop, how to log, what to evaluate.
RESUMABLE_CHANGES = ("train.stop_at_step", "train.early_stop", "train.early_stop_patience", "wandb", "eval")
# Where the run lives is not part of the experiment: a run directory may be moved or copied.
NOT_COMPARED = ("train.output_dir",)


PACKAGES = ("torch", "transformers", "trl", "peft", "accelerate", "datasets", "hydra-core", "math-verify")


# --------------------------------------------------------------------------- small files

def atomic_write(path: Path, text: str) -> None:
    """Write `text` to `path` so that a kill at any moment leaves the old file or the new one."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    try:
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)  # the rename itself survives a crash of the node
        finally:
            os.close(fd)
    except OSError:
        pass  # some file systems refuse fsync on a directory


def read_json(path: Path) -> dict:
    """A JSON object file; {} if absent; RunDirError naming the file if it is damaged."""
    try:
        value = json.loads(Path(path).read_text())
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RunDirError(f"{path}: unreadable ({type(e).__name__}: {e})") from None
    if not isinstance(value, dict):
        raise RunDirError(f"{path}: expected a JSON object, got {type(value).__name__}")
    return value


def read_summary(run_dir: Path | str) -> dict:
    return read_json(Path(run_dir) / SUMMARY)


# summary.json's numbers and the fields of its objects that are numbers: what its readers add up and
# divide by (analysis rows, the cost model's evidence). Counts are as_step's; the rest finite, >= 0.
_SUMMARY_COUNTS = ("steps", "max_steps", "stop_at_step", "num_params", "trainable_params")
_SUMMARY_NUMBERS = ("wall_seconds",)
_SUMMARY_OBJECTS = {"device": ("num_gpus",), "tokens": ("prompt", "completion"),
                   "heldout_base": ("format", "accuracy", "n"), "heldout_final": ("format", "accuracy", "n")}


def _finite(value: Any) -> bool:
    """A finite number >= 0 (not a bool, a string, NaN or Infinity)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < math.inf


def checked_summary(summary: Any, notes: list[str]) -> dict:
    """summary.json's fields with its numbers checked, the one reading of them: a value that is no
    count, no finite number >= 0 or no object (Infinity, NaN, "1h", true, 2**70 steps) is left out,
    with a note in `notes`, so that it sinks no total and no estimate."""
    if not isinstance(summary, dict):
        notes.append(f"{SUMMARY} is a JSON {type(summary).__name__}, not an object: ignored")
        return {}
    out = dict(summary)
    kind = {k: "count" for k in _SUMMARY_COUNTS if out.get(k) is not None and as_step(out[k]) is None}
    kind |= {k: "finite number" for k in _SUMMARY_NUMBERS if out.get(k) is not None and not _finite(out[k])}
    for key, fields in _SUMMARY_OBJECTS.items():
        if out.get(key) is not None and not isinstance(out[key], dict):
            kind[key] = "object"
        elif out.get(key):
            wrong = [f for f in fields if out[key].get(f) is not None and not _finite(out[key][f])]
            notes += [f"{SUMMARY}: {key}.{f} = {out[key][f]!r:.40} is no finite number: ignored" for f in wrong]
            out[key] = {k: v for k, v in out[key].items() if k not in wrong}
    notes += [f"{SUMMARY}: {k} = {out[k]!r:.40} is no {what}: ignored" for k, what in kind.items()]
    return {k: v for k, v in out.items() if k not in kind}


def write_summary(run_dir: Path | str, **fields: Any) -> dict:
    """Merge fields into summary.json atomically."""
    run_dir = Path(run_dir)
    summary = {**read_summary(run_dir), **fields, "updated_at": time.strftime(TIME_FORMAT)}
    atomic_write(run_dir / SUMMARY, json.dumps(summary, indent=2, default=str))
    return summary


_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml: ~10x faster (reports read 1,000s)


def _read_yaml(path: Path) -> Any:
    """A YAML file's data; None if absent; RunDirError naming the file if it is damaged."""
    try:
        return yaml.load(path.read_text(encoding="utf-8"), Loader=_YAML_LOADER)
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise RunDirError(f"{path}: unreadable ({type(e).__name__}: {str(e).splitlines()[0]})") from None


def read_config(run_dir: Path | str) -> dict:
    """The run's resolved config as plain data ({} if it has none yet)."""
    value = _read_yaml(Path(run_dir) / CONFIG)
    return value if isinstance(value, dict) else {}


def read_overrides(run_dir: Path | str) -> list[str]:
    """The run's command-line overrides as Hydra recorded them (.hydra/overrides.yaml; [] if none)."""
    try:
        value = yaml.safe_load((Path(run_dir) / HYDRA / HYDRA_OVERRIDES).read_text())
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise RunDirError(f"{Path(run_dir) / HYDRA / HYDRA_OVERRIDES}: unreadable ({type(e).__name__})") from None
    return [str(o) for o in value] if isinstance(value, list) else []


def read_hydra(run_dir: Path | str, name: str) -> Any:
    """One of Hydra's records of the job (.hydra/HYDRA_CONFIG, HYDRA_OVERRIDES...); None if absent."""
    return _read_yaml(Path(run_dir) / HYDRA / name)


# Any of these makes a directory a run: a config, a summary, logged steps, or Hydra's record of a started job.
RUN_FILES = (CONFIG, SUMMARY, METRICS)


def is_run(path: Path | str) -> bool:
    """A tina run directory (RUN_FILES or .hydra/): what tina.status and analysis.collect both count."""
    return any((Path(path) / name).exists() for name in (*RUN_FILES, HYDRA))


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def check_config(run_dir: Path, config: dict, defaults: dict | None = None) -> None:
    """Refuse to train `config` in a directory that holds a run with another one (read only).

    Resuming with another lr or rank would silently mix two experiments in one metrics file. A key
    the recorded config lacks (added to tina since the run started) is unchanged when it holds its
    schema default (`defaults`, nested like the config): an upgrade must not strand a sweep's requeued jobs.
    """
    old = _flatten(read_config(run_dir))
    if not old:
        return
    defaults = _flatten(defaults) if defaults else {}

    def same(k: str, v: Any) -> bool:
        return old[k] == v if k in old else k in defaults and defaults[k] == v

    changed = sorted(k for k, v in _flatten(config).items()
                     if not same(k, v) and not k.startswith(RESUMABLE_CHANGES + NOT_COMPARED))
    if changed:
        raise RunDirError(
            f"train.output_dir: {run_dir} holds a run with another config (differs in {changed}); "
            f"only {list(RESUMABLE_CHANGES)} may change on resume. Choose a new train.output_dir."
        )


def write_config(run_dir: Path, config: dict, hydra_files: dict[str, Any] | None = None) -> None:
    """config.yaml, and Hydra's own record (.hydra/), written by us only once the start is accepted."""
    run_dir.mkdir(parents=True, exist_ok=True)
    for name, node in (hydra_files or {}).items():
        (run_dir / HYDRA).mkdir(exist_ok=True)
        atomic_write(run_dir / HYDRA / name, yaml.safe_dump(node, sort_keys=False))
    atomic_write(run_dir / CONFIG, yaml.safe_dump(config, sort_keys=False))


def _json_safe(value: Any) -> Any:
    """Plain JSON (no NaN or Infinity, which strict readers refuse); anything else as its str."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value if value is None or isinstance(value, (str, int, float, bool)) else str(value)


def write_trainer_config(run_dir: Path, set_by_tina: dict, resolved: dict) -> dict:
    """Record the trainer's resolved config, once: a resumed run keeps its first record, and this
    returns {field: [recorded, now]} for what changed since (a TRL upgraded between requeues)."""
    record = {"trl": metadata.version("trl"), "set_by_tina": _json_safe(set_by_tina), "resolved": _json_safe(resolved)}
    old = read_trainer_config(run_dir)
    if not old:
        atomic_write(Path(run_dir) / TRAINER_CONFIG, json.dumps(record, indent=1, sort_keys=True))
        return {}
    before, now = old.get("resolved", {}), record["resolved"]
    return {k: [before.get(k), now.get(k)] for k in sorted(set(before) | set(now)) if before.get(k) != now.get(k)}


def read_trainer_config(run_dir: Path | str) -> dict:
    """{"trl": version, "set_by_tina": {field: value}, "resolved": {field: value}}; {} for a run without one."""
    return read_json(Path(run_dir) / TRAINER_CONFIG)


def discard_new(run_dir: Path, before: set[Path]) -> None:
    """After a refused start: remove what this process added (Hydra's log, a half-made record),
    and the directory itself if it is then empty. What was there before stays, byte for byte."""
    import shutil

    if not run_dir.is_dir():
        return
    for path in set(run_dir.iterdir()) - before:
        shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink(missing_ok=True)
    if not before:
        try:
            run_dir.rmdir()
        except OSError:
            pass


def problem_id(text: str) -> str:
    """A problem's identity in every record (held-out, evaluation): the first 16 hex digits of the
    sha256 of the text it is asked with, so two runs' answers pair by problem, never by position."""
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()[:16]


def write_heldout(run_dir: Path | str, which: str, per_problem: dict) -> None:
    """Record one held-out scoring's per-problem outcomes ("base" or "final") in RUN/heldout.json."""
    path = Path(run_dir) / HELDOUT
    atomic_write(path, json.dumps({**read_json(path), which: per_problem}))


def read_heldout(run_dir: Path | str) -> dict:
    """{"base"|"final": {"problem_ids", "n_samples", "accuracy"}}; {} for runs recorded before it existed."""
    return read_json(Path(run_dir) / HELDOUT)


# --------------------------------------------------------------------------- metrics

def append_metrics(run_dir: Path, record: dict) -> None:
    with open(run_dir / METRICS, "a") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()


def _metric_lines(run_dir: Path) -> list[str]:
    try:
        return (run_dir / METRICS).read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return []


MAX_STEP = 2**63 - 1  # steps are int64 wherever they are stored (pandas, numpy, torch)


def as_step(value: Any) -> int | None:
    """`value` as a step or a count of steps (an integer in [0, MAX_STEP], also 6.0); None otherwise
    (a string, a bool, null, NaN, Infinity, a negative or 2**70): what every reader of a recorded step trusts."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
        return None
    return int(value) if 0 <= value <= MAX_STEP else None


def _step(line: str) -> int | None:
    try:
        obj = json.loads(line)
    except (json.JSONDecodeError, RecursionError):
        return None  # a line cut short by a kill
    return as_step(obj.get("step")) if isinstance(obj, dict) else None


def truncate_metrics(run_dir: Path, after_step: int) -> None:
    """Drop logged steps past the checkpoint we resume from: they will be trained and logged again."""
    if (run_dir / METRICS).exists():
        kept = [line for line in _metric_lines(run_dir) if (_step(line) or after_step + 1) <= after_step]
        atomic_write(run_dir / METRICS, "".join(f"{line}\n" for line in kept))


def last_logged_step(run_dir: Path | str) -> int:
    """The last step in metrics.jsonl (0 if none): a running job's progress, read from its tail."""
    path = Path(run_dir) / METRICS
    try:
        with open(path, "rb") as f:
            f.seek(max(0, path.stat().st_size - 8192))
            tail = f.read().decode(errors="replace").splitlines()
    except FileNotFoundError:
        return 0
    return max((s for s in map(_step, tail) if s is not None), default=0)  # out of order: the furthest


# --------------------------------------------------------------------------- checkpoints

def checkpoint_step(path: Path) -> int | None:
    name = Path(path).name
    suffix = name[len(CHECKPOINT_PREFIX):]
    return int(suffix) if name.startswith(CHECKPOINT_PREFIX) and suffix.isdigit() else None


def checkpoint_dir(run_dir: Path | str, step: int) -> Path:
    return Path(run_dir) / CHECKPOINTS / f"{CHECKPOINT_PREFIX}{step}"


def _checkpoint_dirs(run_dir: Path) -> list[Path]:
    found = [p for p in (Path(run_dir) / CHECKPOINTS).glob(f"{CHECKPOINT_PREFIX}*") if checkpoint_step(p) is not None]
    return sorted(found, key=checkpoint_step)


def mark_complete(ckpt: Path) -> None:
    """Record a fully written checkpoint: every file and its size (called after the trainer saved it)."""
    files = {str(p.relative_to(ckpt)): p.stat().st_size for p in sorted(ckpt.rglob("*")) if p.is_file() and p.name != COMPLETE}
    atomic_write(ckpt / COMPLETE, json.dumps({"files": files}, indent=1))


def damage(ckpt: Path) -> str | None:
    """Why a checkpoint cannot be trusted (naming the file), or None when it is intact."""
    marker = ckpt / COMPLETE
    try:
        files = read_json(marker).get("files")
    except RunDirError as e:
        return str(e)
    if not files:
        return f"{marker}: missing (the save did not finish)"
    for name, size in files.items():
        path = ckpt / name
        actual = path.stat().st_size if path.is_file() else None
        if actual != size:
            return f"{path}: {'missing' if actual is None else f'{actual} bytes'}, {size} when saved"
    try:
        read_json(ckpt / "trainer_state.json")  # HF Trainer's name; parsing it is cheap
    except RunDirError as e:
        return str(e)
    return None


def checkpoints(run_dir: Path | str) -> list[Path]:
    """The intact checkpoints, in step order."""
    return [p for p in _checkpoint_dirs(Path(run_dir)) if damage(p) is None]


def saved_steps(run_dir: Path | str) -> list[int]:
    """Steps of the intact checkpoints, sorted."""
    return [checkpoint_step(p) for p in checkpoints(run_dir)]


def resume_point(run_dir: Path) -> Path | None:
    """The newest intact checkpoint. Damaged ones after it are set aside (renamed into
    checkpoints/set-aside/, not deleted) with a warning naming the file, so the trainer never
    loads them and a person can still look at them."""
    for ckpt in reversed(_checkpoint_dirs(run_dir)):
        why = damage(ckpt) or refused_pickle(ckpt)  # the second reads every pickle: only when resuming
        if why is None:
            return ckpt
        aside = run_dir / CHECKPOINTS / SET_ASIDE / f"{ckpt.name}.{time.strftime('%Y%m%d-%H%M%S')}"
        aside.parent.mkdir(exist_ok=True)
        os.rename(ckpt, aside)
        log.warning("checkpoint %s is damaged (%s); set aside as %s", ckpt.name, why, aside)
    if (run_dir / CHECKPOINTS / SET_ASIDE).is_dir():
        log.warning("no intact checkpoint in %s: starting over from step 0", run_dir)
    return None


def adapter_dir(run_dir: Path | str) -> Path:
    return Path(run_dir) / ADAPTER


def lock_of(run_dir: Path | str) -> RunLock:
    return RunLock(Path(run_dir) / LOCK)


# --------------------------------------------------------------------------- reading a run's state

def run_state(run_dir: Path | str) -> dict:
    """What a run's files say about it, never raising: status, reason, steps, stop_step, error, attempts.

    status (a RunStatus): the summary's, or `died` (running, but its process is gone), `not started`
    (Hydra made the directory, nothing more), `no summary` (logged steps, no summary), `unreadable`
    (a damaged summary.json).
    """
    run_dir = Path(run_dir)
    steps = last_logged_step(run_dir)
    row = {"status": None, "reason": None, "steps": steps, "stop_step": None, "error": None, "attempts": None}
    try:
        summary = read_summary(run_dir)
    except RunDirError as e:
        return {**row, "status": RunStatus.UNREADABLE, "reason": str(e)}
    row.update(steps=max(as_step(summary.get("steps")) or 0, steps),
               stop_step=as_step(summary.get("stop_at_step")) or as_step(summary.get("max_steps")),
               error=summary.get("error"), reason=summary.get("reason"),
               attempts=len(summary["attempts"]) if isinstance(summary.get("attempts"), list) else None)
    status = summary.get("status")
    if status is None:
        status = RunStatus.NO_SUMMARY if steps else RunStatus.NOT_STARTED
        row["reason"] = f"logged {steps} steps but has no summary" if steps else "no summary, no logged step"
    elif status == RunStatus.RUNNING:
        lock = lock_of(run_dir)
        holder = lock.holder()
        if holder is None:
            status, row["reason"] = RunStatus.DIED, f"no process holds the run (pid {summary.get('pid')} on {summary.get('host')} ended without a word: killed?)"
        elif (why := lock.gone(holder)) is not None:
            status, row["reason"] = RunStatus.DIED, f"its holder is gone ({why})"
    row["status"] = status
    return row
