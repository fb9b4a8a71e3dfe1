"""Every config group composes and validates; every bad override is refused naming its key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hydra.errors import HydraException
from omegaconf.errors import OmegaConfBaseException

from tina.config import ConfigError, validate
from trl import GRPOConfig

from tests.helpers import ROOT, compose_cfg, options
from tina.train import grpo_kwargs


GROUPS = ["model", "lora", "optim", "algorithm", "dataset", "reward", "compute", "eval", "experiment"]


@pytest.mark.parametrize(
    "override", [f"{g}={o}" for g in GROUPS for o in options(g)], ids=lambda o: o
)
def test_every_group_option_composes_and_validates(override, tmp_path):
    cfg = compose_cfg([override, f"train.output_dir={tmp_path}"])
    tc = validate(cfg)
    kwargs = grpo_kwargs(tc, tmp_path)
    assert kwargs["per_device_train_batch_size"] * kwargs["gradient_accumulation_steps"] * tc.compute.num_processes == (
        tc.train.prompts_per_step * tc.algorithm.num_generations
    )
    if not tc.compute.bf16:  # TRL accepts every key we pass (GPU configs: bf16 needs a GPU to build)
        assert GRPOConfig(**kwargs).num_generations == tc.algorithm.num_generations


# Combinations of the kind the README shows, each with what it must set (values written by hand from
# the README and the paper, not read back from the config).
COMBINATIONS = [
    ([], lambda tc: (tc.dataset.name, tc.lora.rank, tc.optim.lr) == ("toy", 32, 1e-3)),
    (["lora.rank=4"], lambda tc: (tc.lora.rank, tc.lora.alpha) == (4, 16)),  # alpha = 4 x rank
    (["algorithm=dr_grpo", "optim.lr=5e-4"],
     lambda tc: (tc.algorithm.loss_type.value, tc.algorithm.scale_rewards.value, tc.optim.lr) == ("dr_grpo", "none", 5e-4)),
    (["model=deepseek_r1_distill_qwen_1_5b", "compute=cpu"],
     lambda tc: tc.model.name_or_path == "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B" and not tc.compute.bf16
     and not tc.compute.use_vllm),
    (["reward.funcs.accuracy.weight=1", "+reward.funcs.cosine.weight=1", "+reward.funcs.cosine.params.max_len=100"],
     lambda tc: {k: (f.weight, f.params) for k, f in tc.reward.funcs.items()}
     == {"format": (1, {}), "accuracy": (1, {}), "cosine": (1, {"max_len": 100})}),
    (["train.stop_at_step=20", "train.max_steps=40"], lambda tc: (tc.stop_step, tc.train.max_steps) == (20, 40)),
    (["wandb.mode=offline"], lambda tc: tc.wandb.mode.value == "offline"),
]


@pytest.mark.parametrize("overrides, sets", COMBINATIONS, ids=lambda o: " ".join(o) or "default" if isinstance(o, list) else "")
def test_combinations_validate_and_set_what_they_say(overrides, sets, tmp_path):
    assert sets(validate(compose_cfg(overrides + [f"train.output_dir={tmp_path}"])))


def test_default_is_the_embedded_cpu_run(tmp_path):
    tc = validate(compose_cfg([f"train.output_dir={tmp_path}"]))
    assert tc.model.name_or_path.endswith("embedded/tiny") and Path(tc.model.name_or_path).is_dir()
    assert tc.dataset.name == "toy" and not tc.compute.bf16 and not tc.compute.use_vllm
    assert tc.lora.rank == 32 and tc.lora.alpha == 128 and tc.lora.dropout == 0.05
    assert tc.algorithm.loss_type.value == "grpo" and tc.algorithm.beta == 0.04


def test_alpha_follows_rank_unless_set(tmp_path):
    assert validate(compose_cfg(["lora.rank=8", f"train.output_dir={tmp_path}"])).lora.alpha == 32
    assert validate(compose_cfg(["lora.rank=8", "lora.alpha=8", f"train.output_dir={tmp_path}"])).lora.alpha == 8


def test_dr_grpo_reaches_the_trainer(tmp_path):
    tc = validate(compose_cfg(["algorithm=dr_grpo", f"train.output_dir={tmp_path}"]))
    args = GRPOConfig(**grpo_kwargs(tc, tmp_path))
    assert args.loss_type == "dr_grpo"
    assert args.scale_rewards == "none"


def test_grpo_reaches_the_trainer_with_paper_values(tmp_path):
    tc = validate(compose_cfg(["model=deepseek_r1_distill_qwen_1_5b", f"train.output_dir={tmp_path}"]))
    args = GRPOConfig(**grpo_kwargs(tc, tmp_path))
    assert (args.loss_type, args.scale_rewards, args.beta, args.temperature) == ("grpo", "group", 0.04, 0.7)
    assert args.learning_rate == 1e-6 and args.lr_scheduler_type == "cosine_with_min_lr"
    assert args.lr_scheduler_kwargs == {"min_lr_rate": 0.1} and args.warmup_steps == 0.1
    assert args.max_completion_length == 3584 and args.top_k == 0
    assert args.reward_weights == [1.0, 2.0]


# (override, text the error must contain). Each must fail before any model or file.
BAD = [
    ("lora.rank=0", "lora.rank"),
    ("lora.rank=-4", "lora.rank"),
    ("lora.rank=abc", "lora.rank"),
    ("lora.rank=1.5", "lora.rank"),
    ("lora.rnk=8", "lora.rank"),
    ("lora.alpha=0", "lora.alpha"),
    ("lora.dropout=1.5", "lora.dropout"),
    ("lora.target_modules=[]", "lora.target_modules"),
    ("optim.lr=0", "optim.lr"),
    ("optim.lr=fast", "optim.lr"),
    ("optim.learning_rate=1e-3", "optim.learning_rate"),
    ("optim.scheduler=cosine_annealing", "cosine_with_min_lr"),
    ("optim.warmup_ratio=1.5", "optim.warmup_ratio"),
    ("optim.min_lr_rate=2", "optim.min_lr_rate"),
    ("algorithm=ppo", "grpo"),
    ("algorithm.loss_type=ppo", "dr_grpo"),
    ("algorithm.scale_rewards=std", "group"),
    ("algorithm.scale_reward=none", "algorithm.scale_rewards"),  # the paper's own misspelling
    ("algorithm.scale_rewards=none", "algorithm.name=custom"),  # GRPO without std scaling is not GRPO
    ("algorithm.num_generations=1", "algorithm.num_generations"),
    ("train.prompts_per_step=0", "train.prompts_per_step"),
    ("algorithm.temperature=0", "algorithm.temperature"),
    ("algorithm.beta=-1", "algorithm.beta"),
    ("algorithm.top_p=0", "algorithm.top_p"),
    ("algorithm.max_completion_length=0", "algorithm.max_completion_length"),
    ("dataset=gsm8k", "toy"),
    ("dataset.answer_field_name=x", "dataset.answer_field"),
    ("reward.funcs.format.wieght=2", "reward.funcs.format.wieght"),
    ("reward.funcs.format.weight=heavy", "reward.funcs.format.weight"),
    ("+reward.funcs.speed.weight=1", "accuracy"),
    ("+reward.funcs.cosine.params.max_length=100", "max_len"),
    ("train.max_steps=0", "train.max_steps"),
    ("train.stop_at_step=500", "train.stop_at_step"),
    ("train.save_steps=0", "train.save_steps"),
    ("train.max_step=10", "train.max_steps"),
    ("train.resume=false", "train.resume: removed"),  # it did nothing: a run always resumes
    ("compute.per_device_batch=5", "compute.per_device_batch"),
    ("compute.num_processes=3", "compute.per_device_batch"),
    ("compute.bf16=maybe", "compute.bf16"),
    ("model.dtype=fp8", "bfloat16"),
    ("model.attn_implementation=flash", "sdpa"),
    ("wandb.mode=cloud", "offline"),
    ("trian.max_steps=10", "train"),
    ("experiment=tina_nonexistent", "experiment"),
]


@pytest.mark.parametrize("override,expected", BAD, ids=[b[0] for b in BAD])
def test_bad_override_is_refused_naming_the_key(override, expected, tmp_path):
    with pytest.raises((ConfigError, HydraException, OmegaConfBaseException)) as info:
        validate(compose_cfg([override, f"train.output_dir={tmp_path}"]))
    chain, e = [], info.value
    while e is not None:  # Hydra wraps OmegaConf's message (which names the allowed values) as the cause
        chain.append(str(e))
        e = e.__cause__
    assert expected in "\n".join(chain)
    assert not any(tmp_path.iterdir()), "a refused config must write nothing"


def test_cli_refuses_bad_input_with_nonzero_exit_before_writing(tmp_path):
    out = tmp_path / "run"
    for override in ["lora.rank=0", "lora.rnk=8", "algorithm.loss_type=ppo"]:
        proc = subprocess.run(
            [sys.executable, "-m", "tina.train", override, f"train.output_dir={out}", f"hydra.run.dir={out}"],
            capture_output=True, text=True, cwd=ROOT, timeout=120,
        )
        assert proc.returncode != 0
        assert override.split("=")[0] in proc.stdout + proc.stderr
        assert not (out / "config.yaml").exists() and not (out / "checkpoints").exists()


def test_help_lists_groups():
    proc = subprocess.run([sys.executable, "-m", "tina.train", "--help"], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    assert proc.returncode == 0
    for group in ["model", "lora", "optim", "algorithm", "dataset", "reward", "compute"]:
        assert f"{group}:" in proc.stdout
