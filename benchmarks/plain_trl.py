"""The baseline of bench_overhead.py: tina's default run written as a plain TRL script, without tina.

    python benchmarks/plain_trl.py OUT_DIR [--steps 40]

What a user would write by hand for the same job: the embedded tiny model, the toy task's rows
and chat prompts, the same two reward functions, and the GRPOConfig / LoRA values that
`python -m tina.train` resolves to by default (conf/: model=tiny, algorithm=grpo, optim=default,
lora=default, compute=cpu, reward=format_accuracy), spelled out literally. Writes
OUT_DIR/plain_summary.json with HF's train_runtime, the in-process wall time and the token count
(the same seed and data give the same tokens as tina's run: a check that both did the same work).
"""

import argparse
import json
import time
from pathlib import Path

STARTED = time.time()

import datasets  # noqa: E402
import torch  # noqa: E402
from peft import LoraConfig  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402
from trl import GRPOConfig, GRPOTrainer  # noqa: E402

from tina.embedded import TINY_DIR  # noqa: E402  (only to locate the committed weights)
from tina.rewards import accuracy_reward, format_reward  # noqa: E402
from tina.toy import SYSTEM_PROMPT, rows  # noqa: E402

MODEL = str(TINY_DIR)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("out", type=Path)
    p.add_argument("--steps", type=int, default=40)
    args = p.parse_args()
    torch.set_num_threads(1)

    tokenizer = AutoTokenizer.from_pretrained(MODEL)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    data = datasets.Dataset.from_list([
        {"prompt": [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": r["problem"]}],
         "solution": r["solution"]}
        for r in rows("train", 2000, 0)
    ])
    model = AutoModelForCausalLM.from_pretrained(MODEL, dtype=torch.float32, attn_implementation="sdpa")

    config = GRPOConfig(
        output_dir=str(args.out / "checkpoints"), run_name=args.out.name, report_to="none", seed=42,
        max_steps=args.steps, num_train_epochs=1, save_strategy="steps", save_steps=50, logging_steps=1,
        learning_rate=1e-3, lr_scheduler_type="cosine_with_min_lr", lr_scheduler_kwargs={"min_lr_rate": 0.1},
        warmup_steps=0.1, weight_decay=0.0, max_grad_norm=1.0, optim="adamw_torch",
        per_device_train_batch_size=32, gradient_accumulation_steps=1,  # 8 prompts x G=4 in one micro-batch
        loss_type="grpo", scale_rewards="group", beta=0.04, num_generations=4, temperature=0.7,
        top_p=1.0, top_k=0, max_completion_length=32, epsilon=0.2, num_iterations=1,
        mask_truncated_completions=False, reward_weights=[1.0, 2.0],
        bf16=False, activation_checkpointing=False, use_vllm=False, use_cpu=True,
    )
    lora = LoraConfig(
        r=32, lora_alpha=128, lora_dropout=0.05, bias="none", task_type="CAUSAL_LM",
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    )
    trainer = GRPOTrainer(
        model=model, reward_funcs=[format_reward, accuracy_reward], args=config,
        train_dataset=data, processing_class=tokenizer, peft_config=lora,
    )
    result = trainer.train()
    trainer.save_model(str(args.out / "adapter"))

    last = [h for h in trainer.state.log_history if "num_tokens" in h][-1]
    (args.out / "plain_summary.json").write_text(json.dumps({
        "steps": trainer.state.global_step,
        "train_runtime": result.metrics["train_runtime"],
        "wall_seconds": time.time() - STARTED,  # from just before the imports
        "num_tokens": last["num_tokens"],
        "step_times": [h["step_time"] for h in trainer.state.log_history if "step_time" in h],
    }, indent=2))


if __name__ == "__main__":
    main()
