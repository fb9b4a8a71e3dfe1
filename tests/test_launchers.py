"""Every job of a sweep is checked before any starts, with every launcher; documented commands pass.

Real CLI runs (subprocesses), a real SLURM cluster for slurm_local; nothing is mocked.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT
from tests.helpers import TINY as _TINY

TINY = [*_TINY, "train.max_steps=2"]


def tina_train(cwd: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tina.train", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


SUBMITIT_TASKS = "hydra.launcher.tasks_per_node"  # one array, one request: 1 and 2 tasks cannot share it


@pytest.mark.parametrize("launcher", ["tina_basic", "local", "slurm_local"])
@pytest.mark.parametrize("sweep_arg, key", [
    ("lora.rank=4,0", "lora.rank"),
    ("lora.rank=4,abc", "lora.rank"),
    ("compute.num_processes=1,2", {"tina_basic": "compute.num_processes", "local": SUBMITIT_TASKS,
                                   "slurm_local": SUBMITIT_TASKS}),
])
def test_a_bad_second_job_refuses_the_sweep_before_any_job_starts(launcher, sweep_arg, key, request, tmp_path):
    if launcher == "slurm_local":
        request.getfixturevalue("cluster")
    key = key[launcher] if isinstance(key, dict) else key
    sweep = tmp_path / "sweep"
    proc = tina_train(tmp_path, "-m", f"hydra/launcher={launcher}", f"hydra.sweep.dir={sweep}", *TINY, sweep_arg)
    assert proc.returncode != 0
    (line,) = proc.stderr.strip().splitlines()  # one line, no traceback
    job, reason = line.split("): ", 1)
    assert job.startswith("tina: job #1 (") and key in reason.split(":")[0], line
    assert not sweep.exists() and list(tmp_path.iterdir()) == [], "no run started, no directory made"


def test_a_bad_value_with_the_default_launcher_names_the_job_and_trains_nothing(tmp_path):
    """The issue's command: rank 4 used to train before rank 0 was rejected."""
    proc = tina_train(tmp_path, "-m", "lora.rank=4,0", "train.max_steps=2")
    assert proc.returncode != 0 and proc.stdout == ""
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("tina: job #1 (lora.rank=0 train.max_steps=2): lora.rank: ") and "got 0" in line
    assert list(tmp_path.iterdir()) == []  # no multirun/DATE/TIME


def test_tasks_per_node_set_against_num_processes_is_refused_naming_both_keys(tmp_path):
    proc = tina_train(tmp_path, "-m", "hydra/launcher=slurm", "experiment=tina_open_rs2",
                      "hydra.launcher.tasks_per_node=1", f"hydra.sweep.dir={tmp_path}/sweep")
    assert proc.returncode != 0
    (line,) = proc.stderr.strip().splitlines()
    assert "hydra.launcher.tasks_per_node=1 but compute.num_processes=2" in line
    assert list(tmp_path.iterdir()) == []


def test_local_launcher_starts_one_process_per_rank_the_config_asks_for(tmp_path):
    """hydra/launcher=local: compute.num_processes=2 -> submitit starts 2 tasks, made 2 gloo ranks."""
    from tina import run_dir as rd
    from tina.status import sweep_status

    sweep = tmp_path / "sweep"
    proc = tina_train(tmp_path, "-m", "hydra/launcher=local", f"hydra.sweep.dir={sweep}", *TINY,
                      "compute.num_processes=2", "lora.rank=4")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (row,) = sweep_status(sweep)
    summary = rd.read_summary(Path(row["run_dir"]))
    assert summary["status"] == "completed" and summary["steps"] == 2 and summary["world_size"] == 2


# --------------------------------------------------------------------------- documented commands
def documented_commands() -> list[tuple[str, str]]:
    """(where, arguments) of every `python -m tina.train ...` in the comments of conf/ and sweeps/."""
    found = []
    for path in sorted([*ROOT.glob("conf/**/*.yaml"), *ROOT.glob("sweeps/*.yaml")]):
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if not line.lstrip().startswith("#"):
                continue
            for m in re.finditer(r"python -m tina\.train\b([^#(]*)", line):
                args = m.group(1).strip()
                if "--" not in args:  # --cfg, --help: no run
                    found.append((f"{path.relative_to(ROOT)}:{n}", args))
    return found


COMMANDS = documented_commands()
UNIQUE = {args: [w for w, a in COMMANDS if a == args] for _, args in COMMANDS}  # each command checked once


def test_every_experiment_documents_a_run_and_a_slurm_command():
    experiments = {p.stem for p in ROOT.glob("conf/experiment/*.yaml")}
    for kind, flag in (("Run:", ""), ("SLURM:", "-m ")):
        documented = {re.search(r"experiment=(\S+)", args).group(1) for where, args in COMMANDS
                      if where.startswith("conf/experiment/") and args.startswith(flag)}
        assert documented == experiments, kind


@pytest.mark.filterwarnings("ignore:'tina.train' found in sys.modules")  # runpy, as python -m does it
@pytest.mark.parametrize("args", UNIQUE, ids=[wheres[0] for wheres in UNIQUE.values()])
def test_documented_command_passes_every_check_before_submitting(args, tmp_path, capsys):
    """The command as printed, as a dry run: every job composed, validated and checked by its launcher
    (for a single run, the basic launcher's: the processes it needs), nothing launched."""
    import runpy

    from hydra.core.global_hydra import GlobalHydra

    argv = args.split()
    if "-m" not in argv:
        argv.insert(0, "-m")  # a single run is a one-job sweep with the basic launcher: the same checks
    argv += [f"hydra.sweep.dir={tmp_path}/sweep", "hydra.sweeper.dry_run=true"]
    GlobalHydra.instance().clear()
    saved, sys.argv = sys.argv, ["tina.train", *argv]
    try:
        runpy.run_module("tina.train", run_name="__main__", alter_sys=True)  # as `python -m tina.train`
    except SystemExit as e:
        pytest.fail(f"{', '.join(UNIQUE[args])}: python -m tina.train {args}\n{e.code}")
    finally:
        sys.argv = saved
        GlobalHydra.instance().clear()
    assert "pass every check" in capsys.readouterr().out
    assert not (tmp_path / "sweep").exists()


COUNT_DRIVER = """
import json, runpy, sys
from tina import hydra_internal
from tina.config import TinaConfig

loader = hydra_internal.ConfigLoaderImpl
counts = {"compositions": 0, "job_compositions": 0, "validations": 0}
load_configuration, load_sweep_config, check = loader.load_configuration, loader.load_sweep_config, TinaConfig.check
def counted_composition(self, *a, **k):
    counts["compositions"] += 1
    return load_configuration(self, *a, **k)
def counted_load(self, *a, **k):
    counts["job_compositions"] += 1
    return load_sweep_config(self, *a, **k)
def counted_check(self):
    counts["validations"] += 1
    return check(self)
loader.load_configuration, loader.load_sweep_config, TinaConfig.check = counted_composition, counted_load, counted_check
sys.argv = ["tina.train", *sys.argv[1:]]
try:
    runpy.run_module("tina.train", run_name="__main__", alter_sys=True)
finally:
    print("COUNTS " + json.dumps(counts), file=sys.stderr)
"""


@pytest.mark.parametrize("multirun", [False, True], ids=["single run", "sweep of 2, basic launcher"])
def test_each_job_is_composed_and_validated_once(multirun, tmp_path):
    """The launcher's check composes and validates each job, and the job starts from that config and
    that result; a single run is composed by Hydra alone (tina.start_check validates that config, and
    the job does not again). Real jobs, counted as Hydra's config loader and the schema's check() are
    called (they were 3 compositions and 2 validations a job in a sweep; a single run was composed 3
    times, once by tina's precheck, and validated twice). Hydra's `hydra.main` composes a command's
    config twice itself (once to read its mode, once to run it), which no public API skips."""
    args = ["-m", f"hydra.sweep.dir={tmp_path}/sweep", "lora.rank=4,8"] if multirun else [f"hydra.run.dir={tmp_path}/run"]
    proc = subprocess.run([sys.executable, "-c", COUNT_DRIVER, *args, "train.max_steps=1", "train.save_steps=1",
                           "algorithm.max_completion_length=8"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    counts = json.loads(proc.stderr.split("COUNTS ")[-1])
    jobs = 2 if multirun else 1
    job_compositions = jobs if multirun else 0  # each also a composition (load_sweep_config calls load_configuration)
    assert counts == {"compositions": 2 + job_compositions, "job_compositions": job_compositions, "validations": jobs}, counts
    runs = sorted((tmp_path / "sweep").glob("[0-9]_*")) if multirun else [tmp_path / "run"]
    statuses = [json.loads((run / "summary.json").read_text())["status"] for run in runs]
    assert statuses == ["completed"] * jobs
    if multirun:  # each job trained its own config, in its own directory
        import yaml

        configs = [yaml.safe_load((run / "config.yaml").read_text()) for run in runs]
        assert [(c["lora"]["rank"], c["train"]["output_dir"]) for c in configs] == [(4, str(runs[0])), (8, str(runs[1]))]
