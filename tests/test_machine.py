"""The GPU path on the wrong machine is refused in one line, in seconds, before any directory:
no CUDA for a config that needs it, no vLLM for compute.use_vllm, a model neither on disk nor on a
reachable hub. For SLURM, the submitting node checks what sinfo knows (partition, its GPUs) and
asks for GPUs only for a config that needs them; each job checks its node at its start
(tests/test_slurm_train.py: a flash-attention job on a node without CUDA).

Real CLI runs on this machine (no CUDA, no vLLM, no hub); nothing is mocked. The hub cases point the
client at an offline cache (HF_HUB_OFFLINE) or at a closed local port (HF_ENDPOINT).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest
import torch

from tests.helpers import ROOT
from tina.machine import VLLM_INSTALL

NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
NO_VLLM = pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed here")
MISSING = "tina-tests/no-such-model"
CLOSED_PORT = "http://127.0.0.1:9"  # discard port: nothing listens, the connection is refused at once


def tina(cwd, *args, env=None, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tina.train", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL, env={**os.environ, **(env or {})})


def one_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode != 0 and proc.stdout == "", proc.stdout[-2000:] + proc.stderr[-2000:]
    (line,) = proc.stderr.strip().splitlines()  # one line, no traceback
    return line


@pytest.mark.parametrize("args, env, expected", [
    pytest.param(["compute=gpu"], {}, "tina: compute.bf16=true: needs a CUDA GPU and this machine has none",
                 marks=NO_CUDA, id="gpu-config-without-cuda"),
    pytest.param(["model.attn_implementation=flash_attention_2"], {},
                 "tina: model.attn_implementation=flash_attention_2: needs a CUDA GPU", marks=NO_CUDA, id="flash-attention"),
    pytest.param(["compute.use_vllm=true"], {}, f"tina: compute.use_vllm=true: vLLM is not installed here; install it with {VLLM_INSTALL}",
                 marks=NO_VLLM, id="vllm-not-installed"),
    pytest.param([f"model.name_or_path={MISSING}"], {"HF_HUB_OFFLINE": "1"},
                 f"tina: model.name_or_path: {MISSING} is not a local directory and is not in the hub cache", id="hub-offline"),
    pytest.param([f"model.name_or_path={MISSING}"], {"HF_ENDPOINT": CLOSED_PORT, "HF_HUB_OFFLINE": "0"},
                 f"tina: model.name_or_path: {MISSING} is not a local directory and the hub ({CLOSED_PORT}) is unreachable",
                 id="hub-unreachable"),
])
def test_the_gpu_path_on_the_wrong_machine_is_one_line_before_any_directory(args, env, expected, tmp_path):
    line = one_line(tina(tmp_path, *args, env=env))
    assert line.startswith(expected), line
    assert list(tmp_path.iterdir()) == [], "a refused run makes no directory"


def test_the_vllm_hint_is_the_readmes():
    assert f"`{VLLM_INSTALL}`" in (ROOT / "README.md").read_text()


@NO_CUDA
def test_a_gpu_sweep_is_refused_by_the_local_launchers_and_reported_by_a_dry_run(tmp_path):
    for launcher in ("hydra/launcher=tina_basic", "hydra/launcher=local hydra.launcher.gpus_per_node=1"):
        line = one_line(tina(tmp_path, "-m", *launcher.split(), f"hydra.sweep.dir={tmp_path}/sweep",
                             "compute=gpu", "compute.num_processes=1", "lora.rank=4,8"))
        assert line.startswith("tina: job #0 (compute=gpu compute.num_processes=1 lora.rank=4): compute.bf16=true: "
                               "needs a CUDA GPU"), line
        assert line.endswith("nothing was started") and list(tmp_path.iterdir()) == []
    dry = tina(tmp_path, "-m", f"hydra.sweep.dir={tmp_path}/sweep", "compute=gpu", "compute.num_processes=1",
               "hydra.sweeper.dry_run=true")
    assert dry.returncode == 0 and "pass every check" in dry.stdout  # the configs are right ...
    assert "tina: but not where they would run: job #0" in dry.stdout and "needs a CUDA GPU" in dry.stdout  # ... the machine not
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slurm
def test_slurm_asks_for_gpus_only_where_the_config_needs_them_and_checks_the_partition(cluster, tmp_path):
    """The local cluster's one partition, debug, has no GPUs (sinfo gres: (null))."""
    sweep = [f"hydra.sweep.dir={tmp_path}/sweep", "hydra/launcher=slurm"]
    dry = tina(tmp_path, "-m", *sweep, "lora.rank=4,8", "hydra.sweeper.dry_run=true")
    assert dry.returncode == 0 and "gpus_per_node=0" in dry.stdout, dry.stdout + dry.stderr  # compute=cpu: no GPU
    dry = tina(tmp_path, "-m", *sweep, "experiment=tina_open_rs2", "compute.num_processes=1", "hydra.sweeper.dry_run=true")
    assert "gpus_per_node=1" in dry.stdout and "partition debug has no GPUs" in dry.stdout, dry.stdout  # compute=gpu: one per process
    line = one_line(tina(tmp_path, "-m", *sweep, "experiment=tina_open_rs2"))
    assert line.startswith("tina: hydra.launcher.gpus_per_node=2: partition debug has no GPUs"), line
    line = one_line(tina(tmp_path, "-m", *sweep, "hydra.launcher.partition=nope", "lora.rank=4"))
    assert line.startswith("tina: hydra.launcher.partition=nope: no such partition on this cluster; sinfo lists: debug"), line
    assert list(tmp_path.iterdir()) == []
