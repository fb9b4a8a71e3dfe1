"""Today's algorithms (conf/algorithm/*), LoRA's variants and the learning-rate rule reach TRL and PEFT:
each is checked on the trainer TRL builds (GRPOTrainer on the embedded model), not on tina's own dict.
A real short run records what the trainer resolved (RUN/trainer_config.json)."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest
from transformers import TrainingArguments
from trl import GRPOConfig

from tests.helpers import compose_cfg, options, summary, train
from tina import run_dir as rd
from tina.config import ConfigError, validate
from tina.train import grpo_kwargs

# algorithm: (loss_type, scale_rewards, importance_sampling_level, epsilon, epsilon_high,
#             mask_truncated_completions, beta), from each method's source (the option's header)
EXPECTED = {
    "grpo": ("grpo", "group", "token", 0.2, 0.2, False, 0.04),
    "dr_grpo": ("dr_grpo", "none", "token", 0.2, 0.2, False, 0.04),
    "dapo": ("dapo", "group", "token", 0.2, 0.28, True, 0.0),
    "bnpo": ("bnpo", "group", "token", 0.2, 0.2, False, 0.04),
    "gspo": ("grpo", "group", "sequence", 3e-4, 4e-4, False, 0.0),
    "clip_higher": ("grpo", "group", "token", 0.2, 0.28, False, 0.04),
    "mask_truncated": ("grpo", "group", "token", 0.2, 0.2, True, 0.04),
}

# GRPOConfig's own fields tina leaves to TRL, and why each cannot change a tina recipe. A TRL release
# that adds a field fails test_every_grpo_field_is_pinned_or_known_inert until it is pinned or listed.
INERT = {
    # losses and modes tina does not offer
    "sapo_temperature_neg", "sapo_temperature_pos", "vespo_k_neg", "vespo_k_pos", "vespo_lambda_neg",
    "vespo_lambda_pos", "entropy_coef_delta", "entropy_coef_max", "entropy_coef_min", "entropy_target",
    "ref_model_mixup_alpha", "ref_model_sync_steps", "max_tool_calling_iterations", "router_aux_loss_coef",
    # tina loads the model and tokenizer itself; no evaluation inside training
    "model_init_kwargs", "trust_remote_code", "num_generations_eval", "chat_template_kwargs",
    # derived from steps_per_generation (set), and padding only on Neuron; caches, DeepSpeed ZeRO-3 only
    "generation_batch_size", "pad_to_multiple_of", "cache_implementation", "ds3_gather_for_generation",
    "transformers_continuous_batching_config", "use_transformers_paged",
    # vLLM server mode and engine plumbing (tina colocates); deprecated alias of the pinned clip_max
    "vllm_server_base_url", "vllm_server_host", "vllm_server_port", "vllm_server_timeout", "vllm_group_port",
    "vllm_enable_sleep_mode", "vllm_model_impl", "vllm_tensor_parallel_size", "vllm_structured_outputs_regex",
    "vllm_importance_sampling_cap",
    # logging
    "log_completions", "log_completions_hub_repo", "log_multimodal", "log_unique_prompts", "num_completions_to_print",
}


def _trainer(tmp_path, *overrides):
    """The GRPOTrainer tina builds for these overrides, on the embedded model and 16 toy problems."""
    import torch
    from trl import GRPOTrainer

    from tina import data
    from tina.train import load_model, load_tokenizer, lora_config, reward_funcs

    tc = validate(compose_cfg([*overrides, "dataset.size=16", f"train.output_dir={tmp_path}"]))
    tokenizer = load_tokenizer(tc)
    return tc, GRPOTrainer(model=load_model(tc), reward_funcs=reward_funcs(tc),
                           args=GRPOConfig(**grpo_kwargs(tc, tmp_path), use_cpu=not torch.cuda.is_available()),
                           train_dataset=data.load_train(tc.dataset), processing_class=tokenizer,
                           peft_config=lora_config(tc))


def test_every_algorithm_option_is_in_the_table():
    assert set(options("algorithm")) == set(EXPECTED)


@pytest.mark.parametrize("algorithm", sorted(EXPECTED))
def test_algorithm_reaches_the_trainer(algorithm, tmp_path):
    loss, scale, level, eps, eps_high, mask, beta = EXPECTED[algorithm]
    _, trainer = _trainer(tmp_path, f"algorithm={algorithm}")
    args = trainer.args
    assert (args.loss_type, args.scale_rewards, args.importance_sampling_level) == (loss, scale, level)
    assert (args.epsilon, args.epsilon_high, args.mask_truncated_completions, args.beta) == (eps, eps_high, mask, beta)
    # ... and the trainer acts on them (what its loss reads)
    assert (trainer.loss_type, trainer.importance_sampling_level, trainer.mask_truncated_completions) == (loss, level, mask)
    assert (trainer.epsilon_low, trainer.epsilon_high, trainer.beta) == (eps, eps_high, beta)
    # pinned, not TRL 1.16's defaults left to chance
    assert args.vllm_importance_sampling_correction is True and args.top_entropy_quantile == 1.0
    assert args.delta is None and args.steps_per_generation == args.gradient_accumulation_steps


def test_every_grpo_field_is_pinned_or_known_inert(tmp_path):
    """TRL's default loss is now dapo and beta 0: a field tina leaves unset inherits whatever the installed
    TRL defaults to, so every GRPOConfig field is either set by tina or listed in INERT with a reason."""
    own = {f.name for f in dataclasses.fields(GRPOConfig)} - {f.name for f in dataclasses.fields(TrainingArguments)}
    kwargs = grpo_kwargs(validate(compose_cfg([f"train.output_dir={tmp_path}"])), tmp_path)
    assert not own - set(kwargs) - INERT, "GRPOConfig fields neither pinned in tina/train.py nor known inert"
    assert not INERT - own, "INERT names fields GRPOConfig no longer has"


@pytest.mark.parametrize("overrides,message", [
    (["algorithm.epsilon_high=0.28"], r"^algorithm\.epsilon_high: grpo requires epsilon_high = epsilon"),
    (["algorithm=dapo", "algorithm.epsilon_high=0.2"], r"^algorithm\.epsilon_high: dapo requires epsilon_high > epsilon"),
    (["algorithm=gspo", "algorithm.importance_sampling_level=token"],
     r"^algorithm\.importance_sampling_level: gspo requires importance_sampling_level=sequence, got token;"),
    (["algorithm=mask_truncated", "algorithm.mask_truncated_completions=false"],
     r"^algorithm\.mask_truncated_completions: mask_truncated requires mask_truncated_completions=true"),
    (["algorithm.importance_sampling_level=sequence"], r"^algorithm\.importance_sampling_level: grpo requires"),
    (["algorithm.epsilon_high=0.1"], r"^algorithm\.epsilon_high: must be >= algorithm\.epsilon=0\.2"),
    (["algorithm.epsilon_high=1.5"], r"^algorithm\.epsilon_high: must be a number in \(0, 1\]"),
    (["optim.lr_from_full=1e-5"], r"^optim\.lr: give one rate"),
    (["optim.lr=null"], r"^optim\.lr: is null"),
    (["optim.lr=null", "optim.lr_from_full=0"], r"^optim\.lr_from_full: must be a number in \(0, inf\)"),
    (["optim.lr=null", "optim.lr_from_full=1e-5", "optim.lr_from_full_ratio=-1"], r"^optim\.lr_from_full_ratio"),
])
def test_bad_algorithm_or_rate_is_one_line_naming_the_key(overrides, message, tmp_path):
    with pytest.raises(ConfigError, match=message) as e:
        validate(compose_cfg([*overrides, f"train.output_dir={tmp_path}"]))
    assert "\n" not in str(e.value)


def test_a_variant_runs_under_custom(tmp_path):
    tc = validate(compose_cfg(["algorithm=dapo", "algorithm.name=custom", "algorithm.epsilon_high=0.2",
                               f"train.output_dir={tmp_path}"]))
    assert (tc.algorithm.loss_type.value, tc.algorithm.epsilon_high) == ("dapo", 0.2)


def test_rslora_reaches_peft_and_scales_by_the_square_root_of_the_rank(tmp_path):
    _, plain = _trainer(tmp_path, "lora.rank=4")
    _, rs = _trainer(tmp_path, "lora.rank=4", "lora.use_rslora=true")
    assert rs.model.peft_config["default"].use_rslora and not plain.model.peft_config["default"].use_rslora
    q_plain = plain.model.base_model.model.model.layers[0].self_attn.q_proj
    q_rs = rs.model.base_model.model.model.layers[0].self_attn.q_proj
    assert q_plain.scaling["default"] == 16 / 4 and q_rs.scaling["default"] == 16 / math.sqrt(4)  # alpha 4 x rank


@pytest.mark.parametrize("rank", [1, 2])
def test_dora_and_ranks_1_and_2_reach_peft(rank, tmp_path):
    _, trainer = _trainer(tmp_path, f"lora.rank={rank}", "lora.use_dora=true")
    config = trainer.model.peft_config["default"]
    assert (config.r, config.lora_alpha, config.use_dora) == (rank, 4 * rank, True)
    trainable = [n for n, p in trainer.model.named_parameters() if p.requires_grad]
    assert any("lora_magnitude_vector" in n for n in trainable)  # DoRA's learned magnitudes train
    assert all(p.shape[0] == rank for n, p in trainer.model.named_parameters() if "lora_A" in n)


def test_learning_rate_scaled_from_full_fine_tuning_reaches_the_trainer(tmp_path):
    _, trainer = _trainer(tmp_path, "optim.lr=null", "optim.lr_from_full=2e-5")
    assert trainer.args.learning_rate == pytest.approx(2e-4)  # LoRA Without Regret: 10 x full fine-tuning
    _, trainer = _trainer(tmp_path, "optim.lr=null", "optim.lr_from_full=2e-5", "optim.lr_from_full_ratio=5")
    assert trainer.args.learning_rate == pytest.approx(1e-4)
    _, trainer = _trainer(tmp_path, "optim.lr=3e-4")
    assert trainer.args.learning_rate == 3e-4


def _strict_json(path: Path) -> dict:
    def refuse(constant):
        raise ValueError(f"{path}: {constant} is not JSON")
    return json.loads(path.read_text(), parse_constant=refuse)


def test_a_run_records_what_the_trainer_resolved_and_a_resume_keeps_it(tmp_path):
    """DAPO with rank-1 DoRA trains (real steps) and its directory says what TRL resolved; resuming
    from its checkpoint rebuilds the trainer, which resolves the same config: the record stays as it was."""
    run = tmp_path / "run"
    recipe = ("train.max_steps=2", "train.save_steps=1", "algorithm=dapo", "lora.rank=1", "lora.use_dora=true")
    train(run, *recipe, "train.stop_at_step=1")
    record = _strict_json(run / rd.TRAINER_CONFIG)
    resolved, given = record["resolved"], record["set_by_tina"]
    assert record["trl"].startswith("1.16") and summary(run)["status"] == "completed"
    assert summary(run)["train_rows"] == 2000  # the toy set, no prompt too long
    assert (resolved["loss_type"], resolved["epsilon_high"], resolved["mask_truncated_completions"]) == ("dapo", 0.28, True)
    assert resolved["importance_sampling_level"] == "token" and resolved["beta"] == 0.0
    assert given["loss_type"] == "dapo" and "top_entropy_quantile" in given
    assert len(resolved) > 150 and "logging_first_step" not in given  # TRL's own defaults are recorded too
    before = (run / rd.TRAINER_CONFIG).read_bytes()
    train(run, *recipe)  # resumes from checkpoint-1 to step 2
    assert summary(run)["steps"] == 2 and summary(run)["status"] == "completed"
    assert (run / rd.TRAINER_CONFIG).read_bytes() == before and "trainer_config_changed" not in summary(run)


def test_pinned_values_are_trl_1_16s_defaults():
    """The pins keep TRL 1.16's behaviour (the README's measured runs); under another TRL this names the
    defaults that moved, which tina's recipes do not follow."""
    from importlib.metadata import version

    from tina.train import TRL_PINNED

    defaults = {f.name: f.default for f in dataclasses.fields(GRPOConfig)}
    moved = {k: (v, defaults[k]) for k, v in TRL_PINNED.items() if defaults[k] != v}
    if not version("trl").startswith("1.16."):
        pytest.skip(f"TRL {version('trl')}: defaults moved since 1.16 (pinned, TRL's now): {moved}")
    assert not moved
