"""The run directory stays true under kills, double starts, damaged checkpoints and refusals.

Real training processes on the tiny model, real signals, real files: each test damages or races a
run the way a shared cluster does, then checks what the record says.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.helpers import ROOT, done, make_run, metrics, summary, train, train_cmd, tree_digest
from tina import run_dir as rd
from tina.errors import RunDirError
from tina.run_lock import STALE_AFTER_S, start_time

pytestmark = pytest.mark.slow


def _wait_for(predicate, timeout: float = 300, what: str = "condition") -> None:
    end = time.time() + timeout
    while time.time() < end:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _steps(run: Path) -> list[int]:
    return [m["step"] for m in metrics(run)]


@pytest.fixture(scope="module")
def stopped_run(tmp_path_factory) -> Path:
    """A run stopped at step 8 of a 12-step schedule, checkpoints at 4 and 8: resumable."""
    run = tmp_path_factory.mktemp("base") / "run"
    train(run, "train.max_steps=12", "train.stop_at_step=8")
    assert summary(run)["status"] == "completed" and rd.saved_steps(run) == [4, 8]
    return run


def _copy(run: Path, dest: Path) -> Path:
    shutil.copytree(run, dest)
    return dest


# --------------------------------------------------------------------------- one writer

def test_a_second_writer_is_refused_naming_the_holder(tmp_path):
    run = tmp_path / "run"
    first = subprocess.Popen(train_cmd(run, "train.max_steps=12"), cwd=ROOT, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        _wait_for(lambda: (run / rd.LOCK).exists(), what="the first writer's lock")
        second = train(run, "train.max_steps=12", check=False, timeout=120)
        assert second.returncode != 0
        line = second.stderr.strip().splitlines()[-1]
        assert f"pid {first.pid} on {socket.gethostname()}" in line and "in use" in line
        assert first.wait(timeout=600) == 0
    finally:
        first.kill()
    assert _steps(run) == list(range(1, 13)), "every step logged once, by one writer"
    assert summary(run)["status"] == "completed" and not (run / rd.LOCK).exists()


def test_a_stale_lock_from_another_host_is_taken_over_and_a_live_one_refused(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    lock = run / rd.LOCK
    lock.write_text(json.dumps({"host": "node-that-died", "pid": 4242, "since": "yesterday"}))
    os.utime(lock, (time.time() - STALE_AFTER_S - 60,) * 2)
    train(run, "train.max_steps=2")
    assert "no heartbeat" in summary(run)["lock_takeover"] and "node-that-died" in summary(run)["lock_takeover"]

    lock.write_text(json.dumps({"host": "node-alive", "pid": 4242, "since": "now"}))  # fresh heartbeat
    with pytest.raises(RunDirError, match="in use by pid 4242 on node-alive"):
        rd.lock_of(run).acquire()


def test_a_dead_local_holder_and_a_requeued_slurm_job_take_the_lock(tmp_path, monkeypatch):
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (tmp_path / rd.LOCK).write_text(json.dumps({"host": socket.gethostname(), "pid": int(done.stdout), "start_time": "1"}))
    lock = rd.lock_of(tmp_path)
    lock.acquire()
    assert "is gone" in lock.took_over and lock.owned()
    lock.release()
    assert not (tmp_path / rd.LOCK).exists()

    # A requeued job: same SLURM job, new process (the old one is being killed), maybe another node.
    monkeypatch.setenv("SLURM_JOB_ID", "777")
    (tmp_path / rd.LOCK).write_text(json.dumps({"host": "other-node", "pid": 1, "slurm_job": "777"}))
    lock = rd.lock_of(tmp_path)
    lock.acquire()
    assert "this SLURM job" in lock.took_over
    lock.release()


# --------------------------------------------------------------------------- refused means untouched

def test_a_refused_rerun_leaves_every_byte_as_it_was(stopped_run, tmp_path):
    run = _copy(stopped_run, tmp_path / "run")
    before = tree_digest(run)
    other = train(run, "train.max_steps=12", "algorithm.beta=0.1", check=False)
    assert other.returncode != 0 and "algorithm.beta" in other.stderr.strip().splitlines()[-1]
    bad = train(run, "train.max_steps=12", "lora.rank=-1", check=False)
    assert bad.returncode != 0 and "lora.rank" in bad.stderr
    (run / rd.LOCK).write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid(),
                                           "start_time": start_time(os.getpid())}))
    held = tree_digest(run)
    locked = train(run, "train.max_steps=12", "train.stop_at_step=12", check=False)
    assert locked.returncode != 0 and f"pid {os.getpid()}" in locked.stderr
    assert tree_digest(run) == held
    (run / rd.LOCK).unlink()
    assert tree_digest(run) == before
    for out in (other, bad, locked):
        assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) <= 2


def test_a_refused_new_run_leaves_no_directory(tmp_path):
    for args in (["lora.rank=0"], ["+foo=1"], ["dataset=nope"], ["lora.rnk=3"]):
        proc = subprocess.run([sys.executable, "-m", "tina.train", *args], cwd=tmp_path, capture_output=True,
                              text=True, timeout=120)
        assert proc.returncode != 0 and proc.stderr.startswith("tina: ")
    assert list(tmp_path.iterdir()) == [], "no outputs/ left behind"


# --------------------------------------------------------------------------- checkpoints

DAMAGE = {
    "adapter": lambda c: _truncate(c / "adapter_model.safetensors"),
    "optimizer": lambda c: _truncate(c / "optimizer.pt"),
    "trainer_state": lambda c: (c / "trainer_state.json").write_text(""),
    "unfinished save": lambda c: (c / rd.COMPLETE).unlink(),
    "refused pickle": lambda c: _unsafe_pickle(c / "rng_state.pth"),
}


def _unsafe_pickle(path: Path) -> None:
    """A pickle torch's safe loading refuses (it names a class outside the allowlist), in a checkpoint
    whose marker agrees with it: damage that file sizes cannot show."""
    import pathlib

    import torch

    torch.save({"python": pathlib.PurePosixPath("not/allowed")}, path)
    rd.mark_complete(path.parent)


def _truncate(path: Path) -> None:
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size // 2)


@pytest.mark.parametrize("kind", list(DAMAGE))
def test_a_damaged_last_checkpoint_is_set_aside_and_the_run_resumes_from_the_one_before(kind, stopped_run, tmp_path):
    run = _copy(stopped_run, tmp_path / "run")
    DAMAGE[kind](rd.checkpoint_dir(run, 8))
    proc = train(run, "train.max_steps=12", "train.stop_at_step=12")
    assert "checkpoint-8 is damaged" in proc.stdout + proc.stderr
    aside = list((run / rd.CHECKPOINTS / rd.SET_ASIDE).iterdir())
    assert [p.name.split(".")[0] for p in aside] == ["checkpoint-8"], "set aside, not deleted"
    assert _steps(run) == list(range(1, 13))
    assert summary(run)["status"] == "completed" and summary(run)["steps"] == 12
    assert rd.saved_steps(run) == [4, 8, 12]


def test_with_no_intact_checkpoint_the_run_starts_over_and_says_so(stopped_run, tmp_path):
    run = _copy(stopped_run, tmp_path / "run")
    for step in (4, 8):
        DAMAGE["adapter"](rd.checkpoint_dir(run, step))
    rd.write_summary(run, status="interrupted")  # so that the rerun trains rather than finds it finished
    proc = train(run, "train.max_steps=12", "train.stop_at_step=4")
    assert "starting over from step 0" in proc.stdout + proc.stderr
    assert _steps(run) == [1, 2, 3, 4] and summary(run)["steps"] == 4


def test_killed_after_the_last_checkpoint_before_the_summary_records_completed_without_training(stopped_run, tmp_path):
    run = _copy(stopped_run, tmp_path / "run")
    rd.write_summary(run, status="running", steps=7)  # what a kill -9 between checkpoint-8 and the summary leaves
    shutil.rmtree(run / rd.ADAPTER)
    logged = _steps(run)
    train(run, "train.max_steps=12", "train.stop_at_step=8")
    assert summary(run)["status"] == "completed" and summary(run)["steps"] == 8
    assert _steps(run) == logged == list(range(1, 9)), "not one step past the stop"
    assert (run / rd.ADAPTER / "adapter_model.safetensors").exists()


# --------------------------------------------------------------------------- signals and kills

def test_sigterm_before_the_first_step_is_recorded_as_interrupted(tmp_path):
    run = tmp_path / "run"
    proc = subprocess.Popen(train_cmd(run, "train.max_steps=4"), cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    _wait_for(lambda: (run / rd.SUMMARY).exists() and summary(run).get("status") == "running", what="running")
    assert not (run / rd.METRICS).exists()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) != 0
    s = summary(run)
    assert s["status"] == "interrupted" and s["reason"] == "SIGTERM before the first step"
    assert rd.run_state(run)["status"] == "interrupted"
    assert not (run / rd.LOCK).exists()


def test_sigterm_during_the_last_step_leaves_a_completed_run(tmp_path):
    """SIGTERM sent the moment step 7 of 8 is logged, so while step 8 (and its checkpoint) runs."""
    run = tmp_path / "run"
    proc = subprocess.Popen(train_cmd(run, "train.max_steps=8", "algorithm.max_completion_length=48"), cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    end = time.time() + 300
    while rd.last_logged_step(run) < 7 and proc.poll() is None and time.time() < end:
        time.sleep(0.01)
    assert proc.poll() is None and rd.last_logged_step(run) == 7, "not inside the last step"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    assert "SIGTERM arrived during the last step (8)" in (run / rd.TRAIN_LOG).read_text()
    s = summary(run)
    assert s["status"] == "completed" and s["steps"] == 8 and s["reason"] is None, s
    assert s["heldout_final"]["n"] > 0 and (run / rd.ADAPTER / "adapter_model.safetensors").exists()
    assert _steps(run) == list(range(1, 9)) and rd.saved_steps(run) == [4, 8]
    status = subprocess.run([sys.executable, "-m", "tina.status", str(run)], capture_output=True, text=True,
                            cwd=ROOT, timeout=60)
    assert status.returncode == 0 and "rerun" not in status.stdout, status.stdout


def test_kill_9_at_random_moments_then_resume_logs_every_step_once_and_matches_an_uninterrupted_run(tmp_path):
    """save_steps=1 puts a checkpoint save in almost every moment, so some kills land inside one.
    A hard crash (no handler runs) costs nothing: the resumed run trains the adapter and logs the
    rewards an uninterrupted run does."""
    run = tmp_path / "run"
    rng = random.Random(int(os.environ.get("TINA_KILL_SEED", "0")))
    args = ("train.max_steps=10", "train.save_steps=1")
    killed = 0
    for _ in range(2):
        proc = subprocess.Popen(train_cmd(run, *args), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        start = rd.last_logged_step(run)
        _wait_for(lambda: rd.last_logged_step(run) > start or proc.poll() is not None, what="a new step")
        time.sleep(rng.uniform(0, 1.5))
        proc.kill()
        proc.wait()
        state = rd.run_state(run)
        if state["status"] == "completed":
            break
        assert state["status"] == "died", state
        killed += 1
    train(run, *args)
    assert _steps(run) == list(range(1, 11))
    assert summary(run)["status"] == "completed" and rd.saved_steps(run) == list(range(1, 11))
    attempts = summary(run)["attempts"]  # each kill is an attempt that died, its time counted
    ends = [a["end"] for a in attempts]
    assert ends[:killed] == ["died"] * killed and set(ends[killed:]) == {"completed"}, attempts
    assert all(a["wall_seconds"] > 0 for a in attempts)
    assert summary(run)["wall_seconds"] == pytest.approx(sum(a["wall_seconds"] for a in attempts), abs=0.01)

    straight = tmp_path / "straight"
    train(straight, *args)
    a, b = (load_file(r / "adapter" / "adapter_model.safetensors") for r in (straight, run))
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-5, msg=key)
    for x, y in zip(metrics(straight), metrics(run), strict=True):
        assert x["reward"] == pytest.approx(y["reward"], abs=1e-6), x["step"]


@pytest.fixture
def small_fs(tmp_path):
    """A 16 MiB tmpfs of our own, so that filling it up harms nothing else (needs root)."""
    fs = tmp_path / "fs"
    fs.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(fs)],
                                           capture_output=True).returncode != 0:
        pytest.skip("mounting a small tmpfs needs root")
    yield fs
    subprocess.run(["umount", "-l", str(fs)], capture_output=True)


def _fill(fs: Path) -> None:
    """Leave not one byte free (smaller and smaller writes, down to one byte)."""
    with open(fs / "filler", "wb", buffering=0) as f:
        for size in (1 << 16, 1 << 12, 1 << 8, 1):
            try:
                while f.write(bytes(size)):
                    pass
            except OSError:
                pass
    assert os.statvfs(fs).f_bavail == 0


def test_a_full_disk_ends_the_run_failed_with_the_reason_not_running(small_fs):
    run = small_fs / "run"
    proc = subprocess.Popen(train_cmd(run, "train.max_steps=12"), cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    _wait_for(lambda: rd.last_logged_step(run) >= 2 or proc.poll() is not None, what="step 2")
    _fill(small_fs)  # the next checkpoint (step 4) or metrics line finds no room
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode != 0
    s = summary(run)
    assert s["status"] == "failed" and "No space left on device" in s["error"], s
    assert s["attempts"][-1]["end"] == "failed"
    assert "No space left on device" in out and "room kept for it" in out
    assert rd.run_state(run)["status"] == "failed" and not (run / rd.LOCK).exists()


# --------------------------------------------------------------------------- reading damaged runs

def test_status_gives_every_damaged_run_a_row(stopped_run, tmp_path):
    sweep = tmp_path / "sweep"
    _copy(stopped_run, sweep / "0_good")
    (_copy(stopped_run, sweep / "1_bad_summary") / rd.SUMMARY).write_text("{not json")
    (sweep / "2_hydra_only" / rd.HYDRA).mkdir(parents=True)
    no_summary = _copy(stopped_run, sweep / "3_no_summary")
    (no_summary / rd.SUMMARY).unlink()
    dead = _copy(stopped_run, sweep / "4_dead")
    rd.write_summary(dead, status="running", pid=999999, host=socket.gethostname())
    proc = subprocess.run([sys.executable, "-m", "tina.status", str(sweep), "--json"], capture_output=True,
                          text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    rows = {Path(r["run_dir"]).name: r for r in json.loads(proc.stdout)}
    assert rows["0_good"]["status"] == "completed"
    assert rows["1_bad_summary"]["status"] == "unreadable" and rd.SUMMARY in rows["1_bad_summary"]["reason"]
    assert rows["2_hydra_only"]["status"] == "not started"
    assert rows["3_no_summary"]["status"] == "no summary" and rows["3_no_summary"]["steps"] == 8
    assert rows["4_dead"]["status"] == "died"
    single = subprocess.run([sys.executable, "-m", "tina.status", str(sweep / "0_good")], capture_output=True,
                            text=True, cwd=ROOT, timeout=60)
    assert single.returncode == 0 and "completed" in single.stdout and str(sweep / "0_good") in single.stdout


def test_status_and_report_count_a_runs_attempts(tmp_path):
    from tests.helpers import done, make_run, rows

    sweep = tmp_path / "sweep"
    attempts = [{"end": "requeued", "resumed_from": None, "wall_seconds": 1000.0},
                {"end": "preempted", "resumed_from": 4, "wall_seconds": 1600.0},
                {"end": "completed", "resumed_from": 8, "wall_seconds": 1000.0}]
    make_run(sweep / "0_lora.rank=4", summary=done(attempts=attempts), metrics=rows(10), overrides=["lora.rank=4"])
    make_run(sweep / "1_lora.rank=8", summary=done(attempts=attempts[2:]), metrics=rows(10), overrides=["lora.rank=8"])
    status = subprocess.run([sys.executable, "-m", "tina.status", str(sweep)], capture_output=True, text=True,
                            cwd=ROOT, timeout=60)
    lines = {line.split()[-1].rsplit("/", 1)[1]: line for line in status.stdout.splitlines() if "completed" in line}
    assert "10/10 (3 attempts)" in lines["0_lora.rank=4"] and "attempts" not in lines["1_lora.rank=8"], status.stdout
    subprocess.run([sys.executable, "-m", "analysis.report", str(sweep)], check=True, capture_output=True,
                   cwd=ROOT, timeout=300, env={**os.environ, "TINA_ANALYSIS_CACHE": str(tmp_path / "cache")})
    lines = (sweep / "report.md").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| run |") and "| attempts |" in line)
    col = lines[start].split("|").index(" attempts ")
    cells = {}
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells[line.split("|")[1].strip()] = line.split("|")[col].strip()
    assert cells == {"#0": "3", "#1": "—"}, lines


def _status(where: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tina.status", str(where)], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)


def test_status_reads_a_folder_of_runs_a_search_and_lists_jobs_never_submitted(tmp_path):
    """Every directory tina writes has a table: outputs/DATE (single runs named by time), a search
    (trial_NNN/ sweeps), and a sweep whose driver died before submitting all its jobs, whose missing
    jobs are rows of the table, not only a count in its footer."""
    day = tmp_path / "outputs" / "2026-12-01"
    for name in ("10-00-00", "11-30-00"):
        make_run(day / name, summary=done())
    search = tmp_path / "search"
    make_run(search / "trial_000" / "0_lora.rank-4", summary=done())
    make_run(search / "trial_001" / "0_lora.rank-8", summary=done(steps=3, status="failed", error="OSError: disk full"))
    sweep = tmp_path / "sweep"
    make_run(sweep / "0_lora.rank-4", summary=done(), overrides=["lora.rank=4"])
    (sweep / "multirun.yaml").write_text("hydra:\n  overrides:\n    hydra: []\n    task: ['lora.rank=4,8']\n")

    out = _status(day)
    assert out.returncode == 0, out.stderr
    assert [line.split()[0] for line in out.stdout.splitlines()] == ["completed"] * 2
    assert str(day / "10-00-00") in out.stdout and str(day / "11-30-00") in out.stdout
    out = _status(search)
    assert out.returncode == 1 and [line.split()[0] for line in out.stdout.splitlines()] == ["completed", "failed"]
    assert "disk full" in out.stdout and "tina.sweep rerun" not in out.stdout  # a search resumes with tina.search
    out = _status(sweep)
    lines = out.stdout.strip().splitlines()
    assert lines[0].startswith("completed") and lines[1].startswith("not started") and "job 1 (no directory)" in lines[1]
    assert lines[-1] == f"1 job(s) to rerun (jobs [1]): python -m tina.sweep rerun {sweep}"
    assert _status(tmp_path / "outputs").returncode == 2  # a folder of folders of runs: not a run's record


def test_every_entry_point_names_itself_in_its_usage():
    """`usage: python -m tina.status`, not `usage: status.py`: the line a user copies."""
    import ast

    for path in [*ROOT.glob("tina/**/*.py"), *ROOT.glob("analysis/**/*.py")]:
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "ArgumentParser":
                prog = next((k.value for k in node.keywords if k.arg == "prog"), None)
                assert isinstance(prog, ast.Constant) and prog.value == f"python -m {module}", module
