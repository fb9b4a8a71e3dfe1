"""Jobs of a basic-launcher multirun run in one process: none may inherit what another changed."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.helpers import ROOT

# Two real jobs in one process (Hydra's basic launcher): the first sets wandb's environment and
# torch's threads and installs tina's accelerate context; the process must look afterwards as it
# did before, so the second job (and the first of any later sweep) starts from the same state.
CODE = """
import json, os, sys
import accelerate.utils, torch
torch.set_num_threads(3)
state = lambda: ({k: v for k, v in os.environ.items() if k.startswith(("WANDB_", "RANK", "WORLD_"))},
                 torch.get_num_threads(), accelerate.utils.clear_environment.__module__)
before = state()
sys.argv = ["tina.train", "-m", "wandb.mode=offline,disabled", "compute.num_threads=1", "train.max_steps=1",
            "train.save_steps=1", "dataset.eval_size=4", "algorithm.max_completion_length=8",
            "hydra.sweep.dir=" + sys.argv[1]]
import runpy
runpy.run_module("tina.train", run_name="__main__", alter_sys=True)  # as `python -m tina.train -m ...`
print("STATE", json.dumps([before, state()]))
"""


def test_a_job_leaves_the_process_as_it_found_it(tmp_path):
    proc = subprocess.run([sys.executable, "-c", CODE, str(tmp_path / "sweep")], capture_output=True, text=True,
                          cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    before, after = json.loads(proc.stdout.split("STATE ", 1)[1].splitlines()[0])
    assert before == [{}, 3, "accelerate.utils.environment"]
    assert after == before
    summaries = sorted((tmp_path / "sweep").glob("*/summary.json"))
    assert [json.loads(p.read_text())["status"] for p in summaries] == ["completed", "completed"]
    assert list((tmp_path / "sweep").glob("0_*/wandb/offline-run-*"))  # the first job did set wandb up
