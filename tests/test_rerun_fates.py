"""`tina.sweep rerun` says what became of every job, and every command tina prints works as printed.

Real processes on the basic launcher (each job runs in the rerun's own process, so a job's summary
names the process that ran it): two reruns of one sweep at once, a sweep and a single run in
directories whose names Hydra's grammar and the shell would misread, and the printed commands
(end-of-sweep hints, tina.status's rerun line) parsed and run as a user would paste them.
"""

from __future__ import annotations

import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

from tests.helpers import ROOT, TINY, WAIT_S, metrics, summary, wait_for
from tina import run_dir as rd
from tina.overrides import override
from tina.status import sweep_status

# A directory name with what Hydra's grammar reads as syntax and the shell as words or quotes.
AWKWARD = "we,ird (x) [y] 'q' \"d\" =é$ -z"
FATE = re.compile(r"^job\s+(\d+)\s+(ran|already finished|refused|failed)\s*(.*)$")


def python(*args: str, timeout: float = WAIT_S) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=ROOT, timeout=timeout)


def run_printed(line: str, timeout: float = WAIT_S) -> subprocess.CompletedProcess:
    """Run a command line tina printed, as a shell would split it ('python' is this interpreter)."""
    argv = shlex.split(line)
    assert argv[0] == "python", line
    return python(*argv[1:], timeout=timeout)


def fates(stdout: str) -> dict[int, tuple[str, str]]:
    """{job: (fate, why)} from a rerun's report (the lines after 'rerun of SWEEP:')."""
    report = stdout.split("\nrerun of ", 1)[1].splitlines()[1:]
    return {int(m[1]): (m[2], m[3]) for m in map(FATE.match, report) if m}


def killed_sweep(sweep: Path, *overrides: str) -> None:
    """A sweep whose driver was killed as its first job began: every job left to rerun."""
    driver = subprocess.Popen([sys.executable, "-m", "tina.train", "-m", override("hydra.sweep.dir", str(sweep)),
                               *TINY, *overrides], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: (sweep / "multirun.yaml").is_file(), "the sweep to start")
    driver.kill()
    driver.wait()


def test_two_reruns_at_once_run_every_job_once_and_both_say_so(tmp_path):
    sweep = tmp_path / "sweep"
    killed_sweep(sweep, "train.max_steps=3", "lora.rank=4,8")
    cmd = [sys.executable, "-m", "tina.sweep", "rerun", str(sweep)]
    procs = [subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=2 * WAIT_S) for p in procs]
    reports = [fates(out) for out, _ in outs]
    for p, (out, err), report in zip(procs, outs, reports):
        assert report, out[-3000:] + err[-3000:]
        assert not any(f == "failed" for f, _ in report.values()), out[-3000:] + err[-3000:]
        # the exit status says whether everything it was asked to do it did
        assert p.returncode == (1 if any(f == "refused" for f, _ in report.values()) else 0), out[-2000:]
    runs = {r["num"]: r for r in sweep_status(sweep)}
    assert set(runs) == {0, 1}
    for num, row in runs.items():
        ran = [p for p, report in zip(procs, reports) if report.get(num, ("",))[0] == "ran"]
        assert len(ran) == 1, (num, reports)  # exactly once
        run = Path(row["run_dir"])
        assert row["status"] == "completed" and summary(run)["pid"] == ran[0].pid  # the one that says it ran
        assert [m["step"] for m in metrics(run)] == [1, 2, 3]
        for p, report in zip(procs, reports):
            if p is ran[0] or num not in report:
                continue  # the other listed it only if it was still to do when it looked
            fate, why = report[num]
            assert fate in ("refused", "already finished"), (num, report)
            if fate == "refused":  # and it names who held it: the other rerun
                assert f"in use by pid {ran[0].pid}" in why, why
    # nothing left: a third rerun has nothing to do
    again = python("-m", "tina.sweep", "rerun", str(sweep))
    assert again.returncode == 0 and "nothing to rerun" in again.stdout

    # a run's config that YAML may not load (a Python tag): that job is refused, in one line naming the file
    run = Path(runs[1]["run_dir"])
    (run / rd.CONFIG).write_text("lora: !!python/object/apply:os.system ['touch PWNED']\n")
    rd.write_summary(run, status="failed", error="X")
    tagged = python("-m", "tina.sweep", "rerun", str(sweep))
    assert tagged.returncode == 1 and "Traceback" not in tagged.stderr, tagged.stderr[-3000:]
    fate, why = fates(tagged.stdout)[1]
    assert fate == "refused" and f"{run / rd.CONFIG}: unreadable (ConstructorError" in why, why
    assert not (ROOT / "PWNED").exists() and not (run / "PWNED").exists()


def test_rerun_in_an_awkward_directory_and_every_printed_command_works(tmp_path):
    sweep = tmp_path / AWKWARD
    done = python("-m", "tina.train", "-m", override("hydra.sweep.dir", str(sweep)), *TINY, "train.max_steps=2",
                  "lora.rank=4,8")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    # the end-of-sweep hints, as printed
    hints = dict(re.findall(r"^(status|report):\s+(.+)$", done.stdout, re.M))
    assert set(hints) == {"status", "report"}, done.stdout[-2000:]
    status = run_printed(hints["status"])
    assert status.returncode == 0 and status.stdout.count("completed") == 2, status.stdout + status.stderr
    report = run_printed(hints["report"])
    assert report.returncode == 0 and (sweep / "report.md").is_file(), report.stderr[-3000:]

    # job 1 as if the driver had died before submitting it
    job1 = next(sweep.glob("1_*"))
    subprocess.run(["rm", "-r", str(job1)], check=True)
    status = python("-m", "tina.status", str(sweep))
    assert status.returncode == 1
    line = status.stdout.strip().splitlines()[-1]
    assert line.startswith("1 job(s) to rerun (jobs [1]): python -m tina.sweep rerun ")
    rerun = run_printed(line.split(": ", 1)[1])
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    assert fates(rerun.stdout) == {1: ("ran", "completed at step 2")}
    assert [r["status"] for r in sweep_status(sweep)] == ["completed", "completed"]
    assert next(sweep.glob("1_*")).name == job1.name
    assert python("-m", "tina.status", str(sweep)).returncode == 0


def test_single_run_status_suggests_a_command_that_resumes_it(tmp_path):
    run = tmp_path / AWKWARD / "run"
    proc = subprocess.Popen([sys.executable, "-m", "tina.train", override("hydra.run.dir", str(run)), *TINY,
                             "train.save_steps=2", "train.max_steps=8"],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: 2 in rd.saved_steps(run), "checkpoint-2")
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=WAIT_S)
    assert summary(run)["status"] == "interrupted"
    status = python("-m", "tina.status", str(run))
    assert status.returncode == 1
    line = status.stdout.strip().splitlines()[-1]
    assert line.startswith("to rerun it: python -m tina.train "), status.stdout
    resumed = run_printed(line.split(": ", 1)[1])
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert summary(run)["status"] == "completed" and "resuming from" in (run / rd.TRAIN_LOG).read_text()
    assert [m["step"] for m in metrics(run)] == list(range(1, 9))
    assert python("-m", "tina.status", str(run)).returncode == 0
