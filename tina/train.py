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
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from tina import hydra_internal, machine, process_state
from tina import run_dir as rd
from tina import run_record
from tina.config import PACKAGE_DIR, TinaConfig, check_override_keys, schema_defaults, validate_job
from tina.errors import ConfigError
from tina.phase import best_checkpoint
from tina.run_status import RunStatus, status_of
from tina.schema import composition_error
from tina.status import SweepSummary, print_sweep_summary
from tina.signals import Interrupted, SignalGuard, status_for

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


# GRPOConfig fields tina has no key for, pinned to TRL 1.16's values so that a TRL release that moves
# a default cannot change a recipe (RUN/trainer_config.json records all that TRL resolved).
TRL_PINNED = dict(
    delta=None,                                   # two-sided clip (INTELLECT-2): off
    top_entropy_quantile=1.0,                     # every token in the loss, not only high-entropy ones
    multi_objective_aggregation="sum_then_normalize",  # weighted reward sum, then scale_rewards
    use_bias_correction_kl=True,                  # KL x ratio (DeepSeek-V3.2); TRL 0.15 had no such factor
    vllm_importance_sampling_mode="sequence_mask",
    vllm_importance_sampling_clip_max=3.0,
    vllm_importance_sampling_clip_min=None,
    off_policy_mask_threshold=None,
    entropy_coef=0.0,
    use_adaptive_entropy=False,
    disable_dropout=False,                        # LoRA dropout stays active, in rollouts too (as TRL 0.15)
    sync_ref_model=False,
    shuffle_dataset=True,
    min_p=None,
    repetition_penalty=1.0,
    cast_lm_head_to_fp32=False,
    generation_kwargs=None,
    use_transformers_continuous_batching=False,   # generation through HF generate (or vLLM)
    remove_unused_columns=False,                  # the rewards read the `solution` column
)


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
        learning_rate=o.learning_rate,
        lr_scheduler_type=o.scheduler.value,
        lr_scheduler_kwargs={"min_lr_rate": o.min_lr_rate} if o.scheduler.value == "cosine_with_min_lr" else {},
        warmup_steps=o.warmup_ratio,  # TRL 1.16: a float below 1 is a ratio of max_steps
        weight_decay=o.weight_decay,
        max_grad_norm=o.max_grad_norm,
        optim=o.optimizer,
        per_device_train_batch_size=tc.per_device_batch,
        gradient_accumulation_steps=tc.gradient_accumulation_steps,
        steps_per_generation=tc.gradient_accumulation_steps,  # one generation per optimizer step: on-policy
        loss_type=a.loss_type.value,
        scale_rewards=a.scale_rewards.value,
        beta=a.beta,
        num_generations=a.num_generations,
        temperature=a.temperature,
        top_p=a.top_p,
        top_k=a.top_k,
        max_completion_length=a.max_completion_length,
        epsilon=a.epsilon,
        epsilon_high=a.epsilon_high,
        importance_sampling_level=a.importance_sampling_level.value,
        num_iterations=a.num_iterations,
        mask_truncated_completions=a.mask_truncated_completions,
        vllm_importance_sampling_correction=a.vllm_importance_sampling_correction,
        reward_weights=[spec.weight for spec in tc.reward.funcs.values()],
        bf16=c.bf16,
        activation_checkpointing=c.gradient_checkpointing,  # transformers 5's name for it
        use_vllm=c.use_vllm,
        vllm_mode=c.vllm_mode,
        vllm_gpu_memory_utilization=c.vllm_gpu_memory_utilization,
        vllm_max_model_length=c.vllm_max_model_length,
        disable_tqdm=False,
        **TRL_PINNED,
    )


def load_tokenizer(tc: TinaConfig):
    from tina.evaluate import inprocess

    return inprocess.load_tokenizer(tc.model.name_or_path, tc.model.chat_template)  # the one setup


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
        use_rslora=tc.lora.use_rslora,
        use_dora=tc.lora.use_dora,
        bias="none",
        task_type="CAUSAL_LM",
    )


def reward_funcs(tc: TinaConfig) -> list:
    from tina.rewards import get_reward

    return [get_reward(name, **spec.params) for name, spec in tc.reward.funcs.items()]


def _heldout(model, tokenizer, eval_ds, tc: TinaConfig, run_dir: Path, which: str) -> dict:
    """Held-out scores for summary.json; the per-problem outcomes go to RUN/heldout.json first, so a
    summary that names a score always has its per-problem record beside it."""
    from tina.heldout import score

    scored = score(
        model, tokenizer, list(eval_ds["prompt"]), list(eval_ds["solution"]),
        temperature=tc.algorithm.temperature, top_p=tc.algorithm.top_p, top_k=tc.algorithm.top_k,
        max_new_tokens=tc.algorithm.max_completion_length, seed=tc.train.seed,
    )
    rd.write_heldout(run_dir, which, scored.pop("per_problem"))
    return scored


def train(cfg: DictConfig, tc: TinaConfig | None = None) -> dict:
    """Run (or resume) one training job in cfg.train.output_dir; return its summary.

    Compose, validate, own the run directory (run_record.writer: lock, config, summary), load data, build
    the trainer, train, record. Any failure is recorded in summary.json and re-raised, so Hydra
    marks that job failed while the rest of a multirun goes on.
    """
    tc = tc or validate_job(cfg)  # raises ConfigError naming the key, before any file or model
    with process_state.restored():
        return _train(cfg, tc)


def _train(cfg: DictConfig, tc: TinaConfig) -> dict:
    _export_slurm_ranks()
    check_world_size(tc)
    run_dir = Path(tc.train.output_dir)
    if tc.wandb.mode.value != "disabled":
        _wandb_env(tc, run_dir)  # before the run lock's heartbeat thread: setenv races getenv in threads
    config = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    main_process = int(os.environ.get("RANK", "0")) == 0
    with SignalGuard() as guard:
        try:
            with run_record.writer(run_dir, config, _hydra_files(cfg), main_process, schema_defaults()) as rec:
                result = _run(tc, run_dir, rec, guard)
        except Interrupted:
            guard.chain()  # recorded; now as the signal asks: submitit requeues on USR2, TERM ends the job
        if guard.signalled is not None and not (status_of(result.get("status")) or RunStatus.FAILED).finished:
            guard.chain()  # a run that did its last step is complete: nothing to requeue, nothing lost
    return result


def _hydra_files(cfg: DictConfig) -> dict:
    """Hydra's own record of the job (.hydra/), which conf/train.yaml stops Hydra from writing
    before tina has accepted the start (hydra.output_subdir: null): a refused rerun changes nothing."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return {}
    hc = HydraConfig.get()
    task = OmegaConf.to_container(hc.overrides.task)
    return {rd.HYDRA_CONFIG: OmegaConf.to_container(cfg, enum_to_str=True),
            rd.HYDRA_YAML: {"hydra": OmegaConf.to_container(hc, enum_to_str=True)}, rd.HYDRA_OVERRIDES: task}


def _quiet() -> None:
    """The console shows tina's progress line; library bars and a deprecation TRL triggers inside
    transformers 5 (is_gradient_checkpointing) are noise to a user who can do nothing about them."""
    import warnings

    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)


def _scores(heldout: dict) -> str:
    return f"format {heldout['format']:.3f}, accuracy {heldout['accuracy']:.3f} on {heldout['n']} problems"


# Key of the result of a job that found its run already finished (not written to the summary): a
# rerun then says so instead of "ran".
NOTHING_TO_DO = "nothing_to_do"


def _finished(tc: TinaConfig, previous: dict) -> bool:
    if previous.get("status") == RunStatus.STOPPED_EARLY:
        return True
    return previous.get("status") == RunStatus.COMPLETED and previous.get("steps", 0) >= (tc.stop_step or previous["steps"])


def _run(tc: TinaConfig, run_dir: Path, rec: "run_record.Record", guard: SignalGuard) -> dict:
    import torch
    from transformers.trainer_callback import ProgressCallback
    from trl import GRPOConfig, GRPOTrainer

    from tina import accelerate_env, data
    from tina.callbacks import MarkComplete, MetricsFile, PhaseEarlyStop, QuietProgress, StopAt

    accelerate_env.install()  # before GRPOTrainer: its accelerator construction would race our threads' getenv

    if _finished(tc, rec.previous):
        log.info("%s already finished at step %s; nothing to do", run_dir, rec.previous["steps"])
        return {**rec.write(**{k: rec.previous[k] for k in ("status", "reason", "error") if k in rec.previous},
                            wall_seconds=rec.wall_before), NOTHING_TO_DO: True}
    machine.check(tc)  # a SLURM job's node: checked here, before anything heavy loads; a refusal is recorded
    env = run_record.environment()
    env["device"]["gpu_type"] = tc.compute.gpu_type or env["device"]["gpu_name"]
    rec.write(max_steps=tc.train.max_steps, stop_at_step=tc.train.stop_at_step, model=tc.model.name_or_path, **env)
    _quiet()
    if tc.compute.num_threads:
        torch.set_num_threads(tc.compute.num_threads)
    tokenizer = load_tokenizer(tc)
    # Data before the model: a broken data set should fail in seconds, not after loading 1.5B weights.
    train_ds = data.drop_long_prompts(data.load_train(tc.dataset), tokenizer, tc.algorithm.max_prompt_length)
    eval_ds = data.load_eval(tc.dataset)
    rec.write(train_rows=len(train_ds))
    model = load_model(tc)

    resume_from = rd.resume_point(run_dir) if rec.enabled else None
    resume_step = rd.checkpoint_step(resume_from) if resume_from else 0
    if rec.enabled:
        rec.resumed_from(resume_step if resume_from is not None else None)
        if resume_from is not None:
            log.info("resuming from %s", resume_from)
            rd.truncate_metrics(run_dir, after_step=resume_step)
        else:
            (run_dir / rd.METRICS).unlink(missing_ok=True)
        if eval_ds is not None and "heldout_base" not in rd.read_summary(run_dir):
            rec.write(heldout_base=_heldout(model, tokenizer, eval_ds, tc, run_dir, "base"))
            log.info("held-out before training: %s", _scores(rd.read_summary(run_dir)["heldout_base"]))

    if tc.stop_step is not None and resume_step >= tc.stop_step:
        # Killed after its last checkpoint, before its summary: the work is done, train no step more.
        from peft import PeftModel

        log.info("%s reached step %d already (checkpoint %s): recording it completed", run_dir, resume_step, resume_from)
        with guard.deferred():  # its last step is done: whatever signal comes, it is recorded complete
            trained = PeftModel.from_pretrained(model, str(resume_from))
            trained.save_pretrained(str(rd.adapter_dir(run_dir)))
            result = _record_end(tc, run_dir, rec, trained, tokenizer, eval_ds, RunStatus.COMPLETED, dict(steps=resume_step))
        _evaluate_after(tc, run_dir, rec, guard)
        return result

    metrics_cb = MetricsFile(run_dir)
    phase_cb = PhaseEarlyStop(run_dir, tc.train.early_stop_patience) if tc.train.early_stop.value == "phase" else None
    trl_kwargs = dict(grpo_kwargs(tc, run_dir), use_cpu=not torch.cuda.is_available())
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=reward_funcs(tc),
        args=GRPOConfig(**trl_kwargs),
        train_dataset=train_ds,
        processing_class=tokenizer,
        peft_config=lora_config(tc),
        # metrics first: the phase detector reads them
        callbacks=[cb for cb in (metrics_cb, MarkComplete(), phase_cb,
                                 StopAt(tc.stop_step or float("inf"), guard, rec.lock)) if cb is not None],
    )
    if rec.enabled:
        changed = rd.write_trainer_config(run_dir, trl_kwargs, trainer.args.to_dict())
        if changed:  # e.g. TRL upgraded between a preemption and the requeue: say so, do not hide it
            log.warning("the trainer resolved its config differently from this run's first start: %s", changed)
            rec.write(trainer_config_changed=changed)
    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(QuietProgress())
    trainable, total = trainer.model.get_nb_trainable_parameters()
    rec.write(num_params=total, trainable_params=trainable)
    guard.where = f"after step {resume_step}"
    with guard.deferred():  # to the end of the record: a run that did its last step is recorded complete
        trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
        steps = trainer.state.global_step
        last = steps >= (tc.stop_step or trainer.state.max_steps) or bool(phase_cb and phase_cb.transition is not None)
        status = RunStatus.COMPLETED if guard.signalled is None or last else status_for(guard.signalled)
        fields = dict(steps=steps, **metrics_cb.totals)
        if guard.signalled is not None:
            name = signal.Signals(guard.signalled).name
            if last:
                log.warning("%s arrived during the last step (%d): the run is complete, recording it so", name, steps)
            else:
                fields["reason"] = f"{name} at step {steps}; checkpoint saved"
        if phase_cb is not None and status == RunStatus.COMPLETED:
            fields.update(phase_step=phase_cb.transition,
                          best_checkpoint=best_checkpoint(phase_cb.transition, rd.saved_steps(run_dir)))
            status = RunStatus.STOPPED_EARLY if phase_cb.transition is not None else status
        if status.finished:
            trainer.save_model(str(rd.adapter_dir(run_dir)))
        result = _record_end(tc, run_dir, rec, trainer.model, tokenizer, eval_ds, status, fields)
    guard.where = f"after its last step ({steps}), while evaluating"
    if status.finished:
        _evaluate_after(tc, run_dir, rec, guard)
    return result


def _record_end(tc, run_dir, rec, model, tokenizer, eval_ds, status: RunStatus, fields: dict) -> dict:
    if status.finished and eval_ds is not None and rec.enabled:
        fields["heldout_final"] = _heldout(model, tokenizer, eval_ds, tc, run_dir, "final")
        log.info("held-out after training: %s", _scores(fields["heldout_final"]))
    result = rec.write(status=status, saved_steps=rd.saved_steps(run_dir), wall_seconds=rec.wall(), **fields)
    log.info("%s after %d steps in %.0f s: %s", status, fields["steps"], result["wall_seconds"], run_dir)
    return result


def _evaluate_after(tc: TinaConfig, run_dir: Path, rec: "run_record.Record", guard: SignalGuard) -> None:
    """eval.after_training: evaluate the finished run in the same job. A failure or a signal is logged
    and recorded, not raised: the training result stands, and `python -m tina.evaluate` redoes it."""
    import gc

    import torch

    from tina.evaluate import evaluate_run

    if not (tc.eval.after_training and rec.enabled):
        return
    if guard.signalled is not None:
        rec.write(eval_error=f"not run: {signal.Signals(guard.signalled).name} arrived before it")
        return
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()  # the GPU backend starts vLLM in a subprocess: leave it the memory
    try:
        evaluate_run(run_dir, tc.eval)
    except Exception as e:
        log.exception("evaluation after training failed")
        rec.write(eval_error=f"{type(e).__name__}: {e}")
    except Interrupted as e:
        log.warning("evaluation after training stopped: %s", e.reason)
        rec.write(eval_error=f"stopped: {e.reason}")


def check_world_size(tc: TinaConfig) -> None:
    """A job with fewer processes than configured would train on a smaller batch than it says."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world != tc.compute.num_processes:
        raise ConfigError(
            f"compute.num_processes: set to {tc.compute.num_processes} but this job runs {world} process(es); "
            f"launch one process per GPU (accelerate launch --num_processes {tc.compute.num_processes} -m tina.train, "
            f"or hydra/launcher=slurm, which starts compute.num_processes tasks) "
            f"or set compute.num_processes={world}"
        )


def _export_slurm_ranks() -> None:
    """Under SLURM with several tasks, make each task a torch.distributed rank (SLURM sets SLURM_PROCID,
    not RANK/WORLD_SIZE). submitit knows the mapping, master address included."""
    if int(os.environ.get("SLURM_NTASKS", "1")) > 1 and "RANK" not in os.environ:
        from submitit.helpers import TorchDistributedEnvironment

        TorchDistributedEnvironment().export(set_cuda_visible_devices=False)


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> dict:
    """One job. In a single run a refusal is one line on the console and a new run directory is
    removed; in a multirun it is raised, so Hydra records that job failed and the others go on."""
    from hydra.core.hydra_config import HydraConfig

    hydra_internal.release()  # done by tina.start_check, unless hydra.callbacks dropped it: the job's errors are Hydra's
    single = HydraConfig.get().mode.name == "RUN"
    run_dir = Path(cfg.train.output_dir)
    # What was there before this job; Hydra's own empty train.log, made just now, does not count.
    before = {p for p in run_dir.iterdir() if p.name != rd.TRAIN_LOG or p.stat().st_size} if run_dir.is_dir() else set()
    try:
        tc = validate_job(cfg)  # tina.start_check's or the launcher's result: this job was checked
        print_config(cfg)
        return train(cfg, tc)
    except ConfigError as e:
        if not single:
            raise
        rd.discard_new(run_dir, before)
        sys.exit(f"tina: {e}")


def precheck(args: list[str]) -> bool:
    """What can be checked of a command line before Hydra composes it: its syntax, a sweep without
    -m, unknown keys and group options, each in one line naming the override. True when the command
    starts a single run, whose composed config tina.start_check then checks, before Hydra makes its
    run directory; a multirun is checked job by job by tina's sweeper and launchers
    (hydra_plugins/tina_launcher).

    The command line is read by Hydra's own parser, so its flags, their values and its overrides are
    what Hydra will see."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from tina.hydra_internal import get_args_parser

    ns = get_args_parser().parse_args(args)  # a usage error: Hydra's own message and exit status
    if ns.shell_completion or ns.experimental_rerun is not None:
        return False  # Hydra's own modes: no job runs from these overrides
    info = bool(ns.help or ns.hydra_help or ns.cfg or ns.info or ns.config_name or ns.config_path or ns.config_dir)
    for override in ns.overrides:
        try:
            (one,) = OverridesParser.create().parse_overrides([override])
        except Exception as e:
            raise ConfigError(f"{override}: not Hydra override syntax ({composition_error(e)}); "
                              "quote values with special characters, e.g. 'key=\"a,b\"'") from None
        if one.is_sweep_override() and not ns.multirun and not info:
            raise ConfigError(f"{override}: several values are a sweep: add -m (python -m tina.train -m {override}); "
                              "for one list value write key=[a,b]")
        _check_group_choice(one)
    check_override_keys(ns.overrides)
    return not (info or ns.multirun)


def _check_group_choice(override) -> None:
    """`dataset=gsm8k`, `+sweeps=lora_rnak`, `+study=rnak`: one line listing the options, also under -m, where Hydra
    would print its search path over a dozen lines."""
    key = override.get_key_element().lstrip("+~")
    folder = PACKAGE_DIR.parent / (key if key in ("sweeps", "study") else f"conf/{key}")
    if key.startswith("hydra") or "." in key or not folder.is_dir() or override.is_delete():
        return
    try:
        values = list(override.sweep_iterator()) if override.is_sweep_override() else [override.value()]
    except Exception:  # glob(...) and the like: Hydra expands them against the options itself
        return
    options = sorted(p.stem for p in folder.glob("*.yaml"))
    for value in values:
        if isinstance(value, str) and value not in options:
            raise ConfigError(f"{key}={value}: no such option; {key} has: {', '.join(options)}")


def cli() -> None:
    try:
        single = precheck(sys.argv[1:])
    except ConfigError as e:
        sys.exit(f"tina: {e}")
    try:
        if not single:
            main()
            return
        with hydra_internal.errors_raised() as composing:
            try:
                main()
            except Exception as e:  # Hydra's composition errors: name the override, drop the traceback
                if not composing.active:
                    raise  # the job's own (HYDRA_FULL_ERROR set by the user): as Hydra would
                sys.exit(f"tina: {composition_error(e)}")
    finally:
        for sweep in SweepSummary.sweeps:
            print_sweep_summary(sweep)


if __name__ == "__main__":
    cli()
