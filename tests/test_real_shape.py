"""One GRPO step at DeepSeek-R1-Distill-Qwen-1.5B's real shape, on CPU, through `python -m tina.train`.

The GPU path cannot run here (scripts/gpu-check.sh runs it where a GPU is), so this is its CPU
stand-in: a randomly initialised model of the 1.5B's exact config (benchmarks/real_shape.py, no
download) with the embedded tokenizer, the paper's LoRA (r=32, alpha 128, all seven projections),
beta 0.04 (the reference is the base with the adapter disabled, not a copy), G=2, completions of 4
tokens, gradient checkpointing on as the GPU profile sets it; fp32, because TRL refuses bf16
without a GPU. It shows the real shape goes through tina's own config, model loading, LoRA and
TRL's step, and measures the time and peak memory of that step (benchmarks/RESULTS.md).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.real_shape import SHAPE_1_5B
from tests.helpers import TINY_MODEL
from tina import run_dir as rd

ROOT = Path(__file__).resolve().parents[1]

# Parameters of the 1.5B and of its r=32 LoRA on q k v o gate up down, from its config.
H, I, KV, L, V = 1536, 8960, 256, 28, 151936
BASE_PARAMS = 2 * V * H + L * (2 * (H * H + H) - H + 2 * (H * KV + KV) + 3 * H * I + 2 * H) + H
LORA_PARAMS = L * 32 * sum(a + b for a, b in [(H, H), (H, KV), (H, KV), (H, H), (H, I), (H, I), (I, H)])

# Runs tina.train in this process and reports its own peak RSS (not the builder's, not pytest's).
MEASURED = """
import json, resource, runpy, sys, time
sys.argv = ["tina.train", *sys.argv[1:]]
started = time.time()
runpy.run_module("tina.train", run_name="__main__")
print(json.dumps({"seconds": time.time() - started,
                  "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}))
"""


@pytest.mark.slow
def test_one_grpo_step_at_the_real_shape_on_cpu(tmp_path):
    assert (SHAPE_1_5B["hidden_size"], SHAPE_1_5B["intermediate_size"], SHAPE_1_5B["num_hidden_layers"],
            SHAPE_1_5B["vocab_size"]) == (H, I, L, V)
    model = tmp_path / "model"
    # bf16 on disk (3.6 GB, built in a process of its own), loaded as fp32 by training
    build = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "real_shape.py"), str(model), "--dtype",
                            "bfloat16"], capture_output=True, text=True, timeout=1200)
    assert build.returncode == 0, build.stderr[-3000:]
    run = tmp_path / "run"
    overrides = [
        f"hydra.run.dir={run}", "model=deepseek_r1_distill_qwen_1_5b", f"model.name_or_path={model}",
        "model.dtype=float32", "model.attn_implementation=sdpa",
        "compute=cpu", "compute.gradient_checkpointing=true", "compute.num_threads=2",
        "lora.rank=32", "algorithm.beta=0.04", "algorithm.num_generations=2", "algorithm.max_completion_length=4",
        "train.prompts_per_step=1", "train.max_steps=1", "train.save_steps=1000", "dataset.eval_size=0",
        "wandb.mode=disabled",
    ]
    proc = subprocess.run([sys.executable, "-c", MEASURED, *overrides], capture_output=True, text=True,
                          timeout=3600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-5000:]
    figures = json.loads(proc.stdout.strip().splitlines()[-1])

    summary = rd.read_summary(run)
    assert summary["status"] == "completed" and summary["steps"] == 1
    assert summary["trainable_params"] == LORA_PARAMS == 36_929_536
    assert summary["num_params"] - summary["trainable_params"] == BASE_PARAMS == 1_777_088_000
    (step,) = [json.loads(line) for line in (run / rd.METRICS).read_text().splitlines()]
    assert step["step"] == 1 and "kl" in step and step["completions/max_length"] <= 4
    config = json.loads((model / "config.json").read_text())
    assert config["tie_word_embeddings"] is False and config["num_key_value_heads"] == 2
    print(f"\nreal-shape GRPO step on CPU: {figures['seconds']:.0f} s for `python -m tina.train` "
          f"(step_time {step.get('step_time', float('nan')):.0f} s), peak RSS {figures['peak_rss_gib']:.1f} GiB")


@pytest.mark.skipif(subprocess.run(["sh", "-c", "command -v nvidia-smi"], capture_output=True).returncode == 0,
                    reason="a GPU machine: run scripts/gpu-check.sh itself")
def test_gpu_check_without_a_gpu_fails_at_once_saying_why(tmp_path):
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "gpu-check.sh")], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "GPU_CHECK_DIR": str(tmp_path)})
    assert proc.returncode == 1
    assert "[preflight] FAILED" in proc.stderr and "needs an NVIDIA GPU" in proc.stderr
    assert not (tmp_path / "model").exists() and not (tmp_path / "run").exists()  # nothing built or trained


def test_gpu_check_commands_are_valid_configs(tmp_path):
    """What scripts/gpu-check.sh will run on the GPU machine composes and validates here, so a config
    change breaks this test rather than the check on a GPU someone waited for."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from tina.evaluate.config import check_override_keys, to_eval_config
    from tests.helpers import compose_cfg
    from tina.config import validate

    out = subprocess.run(["bash", str(ROOT / "scripts" / "gpu-check.sh"), "--commands", str(TINY_MODEL),
                          sys.executable], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "GPU_CHECK_DIR": str(tmp_path / "work")})
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    train_args, eval_args = lines[: lines.index("--")], lines[lines.index("--") + 1:]
    assert "compute=gpu" in train_args and f"model.name_or_path={TINY_MODEL}" in train_args
    GlobalHydra.instance().clear()
    validate(compose_cfg([*train_args, f"train.output_dir={tmp_path / 'run'}"]))  # compute=gpu, vLLM colocated
    check_override_keys(eval_args)
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        ec = to_eval_config(compose("evaluate", overrides=eval_args).eval)
    assert ec.backend.value == "vllm" and ec.lighteval_python == sys.executable and ec.checkpoints.value == "last"
    assert not (tmp_path / "work").exists()  # printing the commands builds and runs nothing
