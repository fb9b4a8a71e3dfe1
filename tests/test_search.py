"""python -m tina.search on the real one-node SLURM cluster: asynchronous trials, pruning, a killed driver resumed."""

from __future__ import annotations

import os
from pathlib import Path
import signal
import subprocess
import sys

import optuna
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from tests.helpers import ROOT, wait_for
from analysis.report import build
from analysis.search_report import search_section
from tina import run_dir as rd
from tina.search import main as search_main
from tina.search import objective_of

TINY = ["train.max_steps=12", "train.save_steps=4", "dataset.eval_size=16"]
T = optuna.trial.TrialState


def study(sweep):
    return optuna.load_study(study_name="tina", storage=JournalStorage(JournalFileBackend(str(sweep / "study.journal"))))


def test_bad_search_input_is_refused_before_anything_runs(tmp_path, capsys):
    assert search_main(["nope", "--dir", str(tmp_path / "s")]) == 2
    assert "search space 'nope'" in capsys.readouterr().err
    assert search_main(["lr_rank", "optim.lr=interval(1e-4)", "--dir", str(tmp_path / "s")]) != 0
    assert search_main(["lr_rank", "lora.rnk=3", "--dir", str(tmp_path / "s")]) == 2
    assert "lora.rnk: unknown key" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


@pytest.mark.slurm
def test_six_trials_on_slurm_pruned_killed_and_resumed(cluster, tmp_path):
    sweep = tmp_path / "search"
    cmd = [sys.executable, "-m", "tina.search", "lr_rank", "hydra/launcher=slurm_local", "--trials", "6",
           "--parallel", "2", "--dir", str(sweep), *TINY]
    driver = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def trials():
        try:
            return study(sweep).trials
        except Exception:  # the journal is being created
            return []

    def mid_flight():
        ts = trials()
        return any(t.state.is_finished() for t in ts) and any(
            t.state == T.RUNNING and next(iter(sorted((sweep / f"trial_{t.number:03d}").glob("0_*"))), None)
            and rd.saved_steps(next(iter(sorted((sweep / f"trial_{t.number:03d}").glob("0_*"))))) for t in ts)

    wait_for(mid_flight, "a finished trial and a running one with a checkpoint", timeout=600)
    os.kill(driver.pid, signal.SIGKILL)  # the driver dies; its trials' SLURM jobs go on
    driver.wait()
    left_running = [t.number for t in trials() if t.state == T.RUNNING]
    assert left_running

    resumed = subprocess.run([sys.executable, "-m", "tina.search", "--resume", str(sweep)], cwd=ROOT,
                             capture_output=True, text=True, timeout=1200)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    ts = trials()
    assert len(ts) == 6 and {t.state for t in ts} <= {T.COMPLETE, T.PRUNED}, [(t.number, t.state) for t in ts]
    assert all(ts[n].state.is_finished() for n in left_running)
    pruned = [t for t in ts if t.state == T.PRUNED]
    assert pruned, "no trial was pruned"
    for t in ts:
        run = next((sweep / f"trial_{t.number:03d}").glob("0_*"))
        summary = rd.read_summary(run)
        if t.state == T.COMPLETE:
            assert summary["status"] == "completed" and summary["steps"] == 12
            assert t.value == objective_of(summary, "heldout_final.accuracy")
        else:  # stopped where the pruner said, after a checkpoint, not run to the end
            assert summary["status"] == "interrupted" and summary["steps"] < 12, summary["status"]
            assert t.user_attrs["pruned_at"] <= summary["steps"]
    assert "best: trial" in resumed.stdout

    section = search_section(sweep)
    assert list(section.trials.number) == list(range(6)) and section.objective == "heldout_final.accuracy"
    assert set(section.trials.loc[section.trials.state == "pruned", "number"]) == {t.number for t in pruned}
    assert section.trials.loc[section.trials.state == "pruned", "pruned_at"].notna().all()
    best = study(sweep).best_trial
    assert section.best["number"] == best.number and section.best["value"] == best.value
    assert section.trials.loc[section.trials.best, "number"].tolist() == [best.number]
    if len(section.importances):
        assert set(section.importances.param) == {"optim.lr", "lora.rank"}
        assert section.importances.importance.sum() == pytest.approx(1.0)
    assert section.png[:8] == b"\x89PNG\r\n\x1a\n"


def test_basic_launcher_search_in_process(tmp_path, capsys):
    """Two trials with Hydra's basic launcher (one at a time, in the trial's driver), no pruning."""
    sweep = tmp_path / "search"
    assert search_main(["lr_rank", "--trials", "2", "--parallel", "1", "--dir", str(sweep), "train.max_steps=3",
                        "train.save_steps=3", "dataset.eval_size=8", "lora.rank=choice(4)"]) == 0
    # While it runs it says what started and ended, the counts, and the best so far.
    lines = capsys.readouterr().out.splitlines()
    said = [line.split(" ", 1)[1] for line in lines if " trial " in line and "[" in line]
    assert [s.split(":")[0].split("  [")[0] for s in said] == ["trial 0 started", "trial 0 finished", "trial 1 started",
                                                                "trial 1 finished"], lines
    assert "lora.rank=4" in said[0] and "[1 started, 1 running, 0 finished, 0 pruned, 0 failed]" in said[0]
    assert "heldout_final.accuracy" in said[1] and "1 finished" in said[1] and "best so far: trial 0" in said[1]
    assert "[2 started, 0 running, 2 finished, 0 pruned, 0 failed; best so far: trial" in said[3]
    section = search_section(sweep)
    assert list(section.trials.state) == ["complete", "complete"]
    for _, row in section.trials.iterrows():
        summary = rd.read_summary(Path(row.run_dir))
        assert summary["steps"] == 3 and row.value == objective_of(summary, "heldout_final.accuracy")
    assert search_section(tmp_path) is None  # not a search
    # The report gains a search section: trials, best trial, the figure.
    out = build([sweep], out=tmp_path / "report")
    md = out["markdown"].read_text()
    assert f"## Search {sweep}: heldout_final.accuracy" in md and "Best: trial" in md and "search_" in md


@pytest.mark.parametrize("status, state", [("stopped_early", T.COMPLETE), ("completed", T.COMPLETE),
                                           ("failed", T.FAIL), ("interrupted", T.FAIL)])
def test_a_trial_is_told_what_its_run_ended_with(tmp_path, status, state):
    """A run stopped early at its transition is a result: the study gets its objective, not FAIL."""
    from tina.search import Search, Trial, load_space

    space, fixed = load_space("lr_rank", [])
    search = Search(tmp_path / "search", space, fixed)
    trial = search.study.ask(search.distributions)
    run = tmp_path / "search" / "trial_000" / "0_x"
    run.mkdir(parents=True)
    rd.write_summary(run, status=status, steps=7, heldout_final={"accuracy": 0.25})
    Trial(search, trial)._tell()
    told = study(tmp_path / "search").trials[0]
    assert told.state == state and told.value == (0.25 if state == T.COMPLETE else None)


def test_a_trial_pruned_during_its_last_step_keeps_its_objective(tmp_path):
    """The pruner's SIGTERM can land while the last step runs: the run still completes (tina.train
    defers it), and the study is told the run's objective, not PRUNED."""
    from tina.search import Search, Trial, load_space

    space, fixed = load_space("lr_rank", [])
    search = Search(tmp_path / "search", space, fixed)
    trial = search.study.ask(search.distributions)
    trial.set_user_attr("pruned_at", 8)
    run = tmp_path / "search" / "trial_000" / "0_x"
    run.mkdir(parents=True)
    rd.write_summary(run, status="completed", steps=8, heldout_final={"accuracy": 0.75})
    Trial(search, trial)._tell()
    told = study(tmp_path / "search").trials[0]
    assert told.state == T.COMPLETE and told.value == 0.75


def test_a_resumed_trial_is_the_same_trial(tmp_path):
    """--resume reopens a RUNNING trial by its number through Optuna's public storage API."""
    from tina.search import Search, load_space

    space, fixed = load_space("lr_rank", [])
    first = Search(tmp_path / "s", space, fixed)
    asked = first.study.ask(first.distributions)
    again = Search(tmp_path / "s", space, fixed)
    (running,) = again.study.get_trials(states=(T.RUNNING,))
    run = tmp_path / "s" / "trial_000" / "0_x"
    run.mkdir(parents=True)
    rd.write_summary(run, status="completed", steps=3, heldout_final={"accuracy": 0.5})
    again._resume(running)  # finished: told at once
    assert study(tmp_path / "s").trials[asked.number].state == T.COMPLETE
