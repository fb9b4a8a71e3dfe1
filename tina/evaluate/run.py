"""The evaluation itself (tina.evaluate's functions, kept out of the package's __init__ so that
tina.config can nest EvalConfig without an import cycle).

The order is deliberate: check the config, load every benchmark's rows (a missing data set fails
in seconds), then per checkpoint load or merge the weights once and score every benchmark not
already scored with the same settings, so a killed or requeued job redoes only what it had not
written.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import shutil
import time
from pathlib import Path
from typing import Any, Optional

from tina.evaluate import testsets as bm
from tina.evaluate import results as res
from tina.evaluate.checkpoints import Target, run_config, select
from tina import run_dir as rd
from tina import run_record
from tina.errors import ConfigError
from tina.evaluate.config import Backend, ChatTemplate, EvalConfig, EvaluateConfig, to_eval_config

log = logging.getLogger("tina.evaluate")


def evaluate_run(run_dir: str | Path, eval_cfg: Any = None) -> list[dict]:
    """Evaluate a training run's checkpoints as `eval_cfg` (EvalConfig, DictConfig, dict or None) says."""
    ec = EvaluateConfig(run_dir=str(run_dir), base_model=None, output_dir=str(run_dir), eval=to_eval_config(eval_cfg))
    ec.check()
    return evaluate(ec)


def evaluate_model(model: str, output_dir: str | Path, eval_cfg: Any = None) -> list[dict]:
    """Evaluate a model on its own (hub id or path): results in OUTPUT_DIR/eval/base/."""
    ec = EvaluateConfig(run_dir=None, base_model=model, output_dir=str(output_dir), eval=to_eval_config(eval_cfg))
    ec.check()
    return evaluate(ec)


def _source(bench: bm.Benchmark, e: EvalConfig) -> str:
    path = e.data_path.get(bench.name)
    if path is not None:
        return f"file:{Path(path).resolve()}"
    if bench.hub_id is None:
        task = "" if e.toy_task == "add" else f":task={e.toy_task}"  # "add" as before: its results stay valid
        return f"tina.toy:{bench.split}:size={e.toy_size}:seed={e.toy_seed}{task}"
    return f"hub:{bench.hub_id}:{bench.config or 'default'}:{bench.split}"


def _examples(bench: bm.Benchmark, e: EvalConfig) -> list[dict]:

    key = f"eval.data_path.{bench.name}"
    rows = bm.load_rows(bench, path=e.data_path.get(bench.name), toy_size=e.toy_size, toy_seed=e.toy_seed,
                      toy_task=e.toy_task)
    rows = rows[: e.limit] if e.limit else rows
    if not rows:
        raise ConfigError(f"{key}: no rows to evaluate in {_source(bench, e)}")
    try:
        return [bm.build_example(bench, r) for r in rows]
    except KeyError as e_:  # a local file in another schema than the hub's
        raise ConfigError(f"{key}: {e_.args[0]}") from None


def _settings(bench: bm.Benchmark, e: EvalConfig, *, template: Optional[str], extra: dict) -> dict:
    """Everything that changes the number; a results file with equal settings is not redone."""
    return {
        "temperature": e.temperature,
        "top_p": e.top_p,
        "max_new_tokens": e.max_new_tokens,
        "n_samples": e.n_samples,
        "seeds": list(e.seeds),
        "limit": e.limit,
        "data": _source(bench, e),
        "system_prompt": bm.system_prompt(bench, e.system_prompt),
        "prompt_template": bench.template,
        "gold": f"{bench.gold_format}:{bench.gold_field}",
        "metric": bench.metric,
        "chat_template": e.chat_template.value,
        "chat_template_sha": None if template is None else hashlib.sha256(template.encode()).hexdigest()[:12],
        **extra,
    }


def evaluate(ec: EvaluateConfig) -> list[dict]:
    """Evaluate per the checked config; return the records written or found (one per target x benchmark)."""
    e = ec.eval
    root = Path(ec.output_dir)
    if ec.run_dir is not None:
        model_cfg = run_config(Path(ec.run_dir)).get("model") or {}
        base, training_template = str(model_cfg["name_or_path"]), model_cfg.get("chat_template")
        targets, selection = select(Path(ec.run_dir), e.checkpoints.value, e.include_base)
    else:
        base, training_template = str(ec.base_model), None
        targets, selection = [Target("base", None, None)], None
    chat_template = training_template if e.chat_template == ChatTemplate.training else None
    benches = [bm.get(name) for name in e.benchmarks]
    data = {b.name: _examples(b, e) for b in benches}  # before any model: bad data fails in seconds
    from tina.evaluate.inprocess import load_tokenizer

    template = load_tokenizer(base, chat_template).chat_template  # the text used, so a changed template redoes

    if e.backend.lighteval:
        from tina.evaluate import lighteval_run

        version = lighteval_run.lighteval_version(str(e.lighteval_python))
        engine = {"vllm": dataclasses.asdict(e.vllm)} if e.backend == Backend.vllm else {
            "device": lighteval_run.device(e), "batch_size": e.batch_size}
        extra = {"dtype": lighteval_run.dtype(e), **engine, "lighteval_version": version,
                 "remove_reasoning_tags": e.remove_reasoning_tags, "lighteval_args": list(e.lighteval_args)}
    else:
        extra = {"dtype": "float32", "batch_size": e.batch_size}
    git_sha = run_record.environment()["git_sha"]
    records: list[dict] = []
    for target in targets:
        todo = []
        for b in benches:
            path = res.result_path(root, target.name, b.name)
            settings = _settings(b, e, template=template, extra=extra)
            found = None if e.overwrite else res.existing(path, settings)
            if found is not None:
                log.info("%s/%s: done before (%s), skipping", target.name, b.name, path)
                records.append(found)
            else:
                todo.append((b, settings, path))
        if not todo:
            continue
        common = {
            "checkpoint": target.name,
            "step": target.step if ec.run_dir is not None else None,
            "n_samples": e.n_samples,
            "seeds": list(e.seeds),
            "backend": e.backend.value,
            "model": base,
            "adapter": None if target.adapter is None else str(target.adapter),
            "run_dir": ec.run_dir,
            "selection": selection,
            "git_sha": git_sha,
        }
        run = _run_lighteval if e.backend.lighteval else _run_inprocess
        for b, settings, path, scored in run(root, target, base, chat_template, todo, data, e):
            record = {
                "benchmark": b.name,
                **common,
                **res.summarise(scored["runs"], scored.get("per_problem")),
                "n_problems": len(data[b.name]),
                "problem_ids": [rd.problem_id(x["query"]) for x in data[b.name]],
                "settings": settings,
                "wall_seconds": scored["wall_seconds"],
                "paper_column": b.paper_column,
                **{k: scored[k] for k in ("gold_unread", "extra") if k in scored},
            }
            records.append(res.write(path, record))
            std = record["pass@1_std"]
            log.info("%s %s: pass@1 %.4f%s over %d problems x %d samples x %d seeds (%.1f s) -> %s",
                     target.name, b.name, record["pass@1"], "" if std is None else f" ± {std:.4f}",
                     record["n_problems"], e.n_samples, len(e.seeds), record["wall_seconds"], path)
    return records


def _run_inprocess(root, target: Target, base, chat_template, todo, data, e: EvalConfig):
    import torch

    from tina.evaluate import inprocess

    model = inprocess.load_model(base, target.adapter)
    tokenizer = inprocess.load_tokenizer(base, chat_template)
    for b, settings, path in todo:
        started = time.time()
        threads = torch.get_num_threads()
        torch.set_num_threads(e.threads or threads)
        try:
            scored = inprocess.evaluate(model, tokenizer, b, data[b.name], system=bm.system_prompt(b, e.system_prompt),
                                  n=e.n_samples, seeds=list(e.seeds), temperature=e.temperature, top_p=e.top_p,
                                  max_new_tokens=e.max_new_tokens, batch_size=e.batch_size)
        finally:
            torch.set_num_threads(threads)  # the caller's (e.g. training's) setting, as it was
        if scored["gold_unread"]:
            log.warning("%s: math-verify could not read %d gold answers; those problems score 0",
                        b.name, scored["gold_unread"])
        yield b, settings, path, {**scored, "wall_seconds": time.time() - started}


def _run_lighteval(root, target: Target, base, chat_template, todo, data, e: EvalConfig):
    from tina.evaluate import inprocess, lighteval_run

    workdir = root / res.EVAL_DIR / target.name / "lighteval"
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.time()
    model_dir = lighteval_run.prepare_model(base, target.adapter, workdir / lighteval_run.MODEL,
                                            dtype=lighteval_run.dtype(e), ec=e,
                                            tokenizer=inprocess.load_tokenizer(base, chat_template))
    prepare_seconds = time.time() - started
    groups: dict[Optional[str], list] = {}
    for b, _, _ in todo:
        groups.setdefault(bm.system_prompt(b, e.system_prompt), []).append((b, data[b.name]))
    try:
        scored = lighteval_run.evaluate(workdir, e, groups)
    finally:
        if not e.keep_merged:
            shutil.rmtree(model_dir, ignore_errors=True)
    for b, settings, path in todo:
        yield b, settings, path, {**scored[b.name], "extra": {"merge_seconds": prepare_seconds}}
