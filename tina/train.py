"""`python -m tina.train`: one LoRA-GRPO run through TRL's GRPOTrainer, configured by Hydra.

The order below is deliberate: validate the whole config before touching a model or a file, so
bad input costs nothing; write the run directory's config and summary before training, so even a
crash leaves a readable row; resume from the run's own last checkpoint, so a requeued or rerun
job never redoes finished steps. A failure is recorded in summary.json and re-raised, so Hydra
marks that job failed while the rest of a multirun goes on.
"""

from __future__ import annotations

import logging
import os
import signal
import time
import traceback
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from tina import run_dir as rd
from tina.config import ConfigError, TinaConfig, validate

log = logging.getLogger("tina.train")


def print_config(cfg: DictConfig) -> None:
    """The composed config as a rich tree, groups in schema order."""
    import rich
    import rich.syntax
    import rich.tree

    tree = rich.tree.Tree("config", style="bold")
    for group, node in cfg.items():
        text = OmegaConf.to_yaml(node, resolve=True) if OmegaConf.is_config(node) else str(node)
        tree.add(str(group), style="bold").add(rich.syntax.Syntax(text, "yaml", theme="ansi_dark"))
    rich.print(tree)


def _wandb_env(tc: TinaConfig, run_dir: Path) -> None:
    """wandb reads these when HF's callback initialises it; the id makes a resumed job continue the same run."""
    import hashlib

    os.environ["WANDB_MODE"] = tc.wandb.mode.value
    os.environ["WANDB_PROJECT"] = tc.wandb.project
    os.environ["WANDB_RUN_ID"] = hashlib.sha1(str(run_dir.resolve()).encode()).hexdigest()[:16]
    os.environ["WANDB_RESUME"] = "allow"
    os.environ["WANDB_DIR"] = str(run_dir)
    if tc.wandb.entity:
        os.environ["WANDB_ENTITY"] = tc.wandb.entity
    from hydra.core.hydra_config import HydraConfig

    group = tc.wandb.group
    if group is None and HydraConfig.initialized() and HydraConfig.get().mode.name == "MULTIRUN":
        group = Path(HydraConfig.get().sweep.dir).name
    if group:
        os.environ["WANDB_RUN_GROUP"] = group


def grpo_kwargs(tc: TinaConfig, run_dir: Path) -> dict:
    """The one place tina's config becomes TRL's GRPOConfig keys (TRL renames keys between releases).

    A dict, not the GRPOConfig itself, so the GPU recipes' mapping can be checked on a CPU machine
    (GRPOConfig refuses bf16 without a GPU).
    """
    a, o, c, t = tc.algorithm, tc.optim, tc.compute, tc.train
    return dict(
        output_dir=str(run_dir / rd.CHECKPOINTS),
        run_name=run_dir.name,
        report_to="none" if tc.wandb.mode.value == "disabled" else ["wandb"],
        seed=t.seed,
        max_steps=t.max_steps or -1,  # -1: HF Trainer runs num_train_epochs instead
        num_train_epochs=1,
        save_strategy="steps",
        save_steps=t.save_steps,
        logging_steps=t.logging_steps,
        learning_rate=o.lr,
        lr_scheduler_type=o.scheduler.value,
        lr_scheduler_kwargs={"min_lr_rate": o.min_lr_rate} if o.scheduler.value == "cosine_with_min_lr" else {},
        warmup_steps=o.warmup_ratio,  # TRL 1.16: a float below 1 is a ratio of max_steps
        weight_decay=o.weight_decay,
        max_grad_norm=o.max_grad_norm,
        optim=o.optimizer,
        per_device_train_batch_size=tc.per_device_batch,
        gradient_accumulation_steps=tc.gradient_accumulation_steps,
        loss_type=a.loss_type.value,
        scale_rewards=a.scale_rewards.value,
        beta=a.beta,
        num_generations=a.num_generations,
        temperature=a.temperature,
        top_p=a.top_p,
        top_k=a.top_k,
        max_completion_length=a.max_completion_length,
        epsilon=a.epsilon,
        num_iterations=a.num_iterations,
        mask_truncated_completions=a.mask_truncated_completions,
        reward_weights=[spec.weight for spec in tc.reward.funcs.values()],
        bf16=c.bf16,
        activation_checkpointing=c.gradient_checkpointing,  # transformers 5's name for it
        use_vllm=c.use_vllm,
        vllm_mode=c.vllm_mode,
        vllm_gpu_memory_utilization=c.vllm_gpu_memory_utilization,
        vllm_max_model_length=c.vllm_max_model_length,
        disable_tqdm=False,
    )


def load_tokenizer(tc: TinaConfig):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tc.model.name_or_path)
    if tc.model.chat_template is not None:
        tokenizer.chat_template = tc.model.chat_template
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(tc: TinaConfig):
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(
        tc.model.name_or_path,
        dtype=getattr(torch, tc.model.dtype.value),
        attn_implementation=tc.model.attn_implementation.value,
    )


def lora_config(tc: TinaConfig):
    from peft import LoraConfig

    return LoraConfig(
        r=tc.lora.rank,
        lora_alpha=tc.lora.alpha,
        lora_dropout=tc.lora.dropout,
        target_modules=list(tc.lora.target_modules),
        bias="none",
        task_type="CAUSAL_LM",
    )


def reward_funcs(tc: TinaConfig) -> list:
    from tina.rewards import get_reward

    return [get_reward(name, **spec.params) for name, spec in tc.reward.funcs.items()]


def _heldout(model, tokenizer, eval_ds, tc: TinaConfig) -> dict:
    from tina.heldout import score

    return score(
        model, tokenizer, list(eval_ds["prompt"]), list(eval_ds["solution"]),
        temperature=tc.algorithm.temperature, max_new_tokens=tc.algorithm.max_completion_length, seed=tc.train.seed,
    )


def train(cfg: DictConfig) -> dict:
    """Run (or resume) one training job in cfg.train.output_dir; return its summary."""
    tc = validate(cfg)  # raises ConfigError naming the key, before any file or model
    _export_slurm_ranks()
    run_dir = Path(tc.train.output_dir)
    main_process = int(os.environ.get("RANK", "0")) == 0
    if main_process:
        rd.check_or_write_config(run_dir, cfg)
    previous = rd.read_summary(run_dir)
    finished = previous.get("status") == "stopped_early" or (
        previous.get("status") == "completed" and previous.get("steps", 0) >= (tc.stop_step or previous["steps"]))
    if finished:
        log.info("%s already finished at step %s; nothing to do", run_dir, previous["steps"])
        return previous

    started = time.time()
    wall_before = previous.get("wall_seconds", 0.0)
    summary = rd.Summary(run_dir, enabled=main_process)
    env = rd.environment()
    env["device"]["gpu_type"] = tc.compute.gpu_type or env["device"]["gpu_name"]
    summary.write(
        status="running", error=None, max_steps=tc.train.max_steps, stop_at_step=tc.train.stop_at_step,
        steps=previous.get("steps", 0), wall_seconds=wall_before, model=tc.model.name_or_path, **env,
    )
    try:
        _check_world_size(tc)
        result, stop_cb = _train(tc, run_dir, summary, started, wall_before)
    except BaseException as e:
        log.error("run failed: %s: %s", type(e).__name__, e)
        summary.write(
            status="failed", error=f"{type(e).__name__}: {e}", traceback=traceback.format_exc(),
            wall_seconds=wall_before + time.time() - started,
        )
        raise
    if tc.eval.after_training and result.get("status") in ("completed", "stopped_early") and main_process:
        _evaluate_after(tc, run_dir, summary)
    if stop_cb.signalled is not None:
        stop_cb.chain()
    return result


def _evaluate_after(tc: TinaConfig, run_dir: Path, summary: "rd.Summary") -> None:
    """eval.after_training: evaluate the finished run in the same job. A failure is logged and recorded,
    not raised: the training result stands, and `python -m tina.evaluate run_dir=...` redoes it."""
    import gc

    import torch

    from tina.evaluate import evaluate_run

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()  # the GPU backend starts vLLM in a subprocess: leave it the memory
    try:
        evaluate_run(run_dir, tc.eval)
    except Exception as e:
        log.exception("evaluation after training failed")
        summary.write(eval_error=f"{type(e).__name__}: {e}")


def _check_world_size(tc: TinaConfig) -> None:
    """A job with fewer processes than configured would train on a smaller batch than it says."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world != tc.compute.num_processes:
        raise ConfigError(
            f"compute.num_processes: set to {tc.compute.num_processes} but this job runs {world} process(es); "
            f"launch one process per GPU (accelerate launch --num_processes {tc.compute.num_processes} -m tina.train, "
            f"or hydra/launcher=slurm with hydra.launcher.tasks_per_node={tc.compute.num_processes}) "
            f"or set compute.num_processes={world}"
        )


def _export_slurm_ranks() -> None:
    """Under SLURM with several tasks, make each task a torch.distributed rank (SLURM sets SLURM_PROCID,
    not RANK/WORLD_SIZE). submitit knows the mapping, master address included."""
    if int(os.environ.get("SLURM_NTASKS", "1")) > 1 and "RANK" not in os.environ:
        from submitit.helpers import TorchDistributedEnvironment

        TorchDistributedEnvironment().export(set_cuda_visible_devices=False)


def _train(tc: TinaConfig, run_dir: Path, summary: "rd.Summary", started: float, wall_before: float):
    import torch
    from trl import GRPOConfig, GRPOTrainer

    from tina import data
    from tina.callbacks import MetricsFile, PhaseEarlyStop, StopAt

    if tc.wandb.mode.value != "disabled":
        _wandb_env(tc, run_dir)
    if tc.compute.num_threads:
        torch.set_num_threads(tc.compute.num_threads)
    tokenizer = load_tokenizer(tc)
    # Data before the model: a missing data set should fail in seconds, not after loading 1.5B weights.
    train_ds = data.drop_long_prompts(data.load_train(tc.dataset), tokenizer, tc.algorithm.max_prompt_length)
    eval_ds = data.load_eval(tc.dataset)
    model = load_model(tc)

    resume_from = rd.last_checkpoint(run_dir)
    if summary.enabled:
        if resume_from is not None:
            log.info("resuming from %s", resume_from)
            rd.truncate_metrics(run_dir, after_step=int(resume_from.name.split("-")[1]))
        else:
            (run_dir / rd.METRICS).unlink(missing_ok=True)
        if eval_ds is not None and "heldout_base" not in rd.read_summary(run_dir):
            summary.write(heldout_base=_heldout(model, tokenizer, eval_ds, tc))
            log.info("held-out before training: %s", rd.read_summary(run_dir)["heldout_base"])

    metrics_cb = MetricsFile(run_dir)
    stop_cb = StopAt(tc.stop_step or float("inf"))
    phase_cb = PhaseEarlyStop(run_dir, tc.train.early_stop_patience) if tc.train.early_stop.value == "phase" else None
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=reward_funcs(tc),
        args=GRPOConfig(**grpo_kwargs(tc, run_dir), use_cpu=not torch.cuda.is_available()),
        train_dataset=train_ds,
        processing_class=tokenizer,
        peft_config=lora_config(tc),
        callbacks=[cb for cb in (metrics_cb, phase_cb, stop_cb) if cb is not None],  # metrics first: the detector reads them
    )
    trainable, total = trainer.model.get_nb_trainable_parameters()
    summary.write(num_params=total, trainable_params=trainable)
    trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)

    steps = trainer.state.global_step
    # USR2 is SLURM's warning before preemption or the time limit (the job is requeued); TERM ends it.
    status = {None: "completed", signal.SIGUSR2: "preempted"}.get(stop_cb.signalled, "interrupted")
    fields = dict(steps=steps, wall_seconds=wall_before + time.time() - started, **metrics_cb.totals)
    if phase_cb is not None and status == "completed":
        from analysis.phase import best_checkpoint

        fields.update(phase_step=phase_cb.transition,
                      best_checkpoint=best_checkpoint(phase_cb.transition, rd.saved_steps(run_dir)))
        status = "stopped_early" if phase_cb.transition is not None else status
    if status in ("completed", "stopped_early"):
        trainer.save_model(str(run_dir / rd.ADAPTER))
        if eval_ds is not None and summary.enabled:
            fields["heldout_final"] = _heldout(trainer.model, tokenizer, eval_ds, tc)
            log.info("held-out after training: %s", fields["heldout_final"])
    result = summary.write(status=status, saved_steps=rd.saved_steps(run_dir), **fields)
    log.info("%s after %d steps in %.0f s: %s", status, steps, fields["wall_seconds"], run_dir)
    return result, stop_cb


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> dict:
    print_config(cfg)
    return train(cfg)


def cli() -> None:
    import sys

    from tina.config import ConfigError, check_override_keys

    try:
        check_override_keys(sys.argv[1:])
    except ConfigError as e:
        sys.exit(f"tina: {e}")
    main()


if __name__ == "__main__":
    cli()
