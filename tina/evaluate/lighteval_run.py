"""lighteval backends (`eval.backend=accelerate|vllm`): lighteval 0.13 in its own environment.

lighteval cannot be installed beside tina (it pins latex2sympy2_extended 1.0.6 and so
antlr4 4.13, Hydra needs 4.9), so it runs as a subprocess: `eval.lighteval_python -m lighteval
{accelerate|vllm} MODEL_ARGS.yaml TASKS --custom-tasks tina/evaluate/lighteval_tasks.py ...`
(scripts/lighteval-env.sh provisions that python). vllm is the paper's evaluation on GPUs;
accelerate (transformers generate) runs anywhere, CPU included, through the same task file.

Per target, the weights lighteval loads are an evaluation-owned directory (RUN/eval/<ckpt>/lighteval/
model, removed afterwards unless eval.keep_merged): the LoRA adapter merged into the base (lighteval
0.13 has no LoRA fields), or for the base a view of it (weights symlinked, small files copied), with
the tokenizer evaluated and a generation config that samples (the accelerate backend never sets
do_sample itself, and n_samples > 1 then fails). Nothing is written into the base model's or an
adapter's directory. lighteval's sample cache is keyed by `model_name` and a hash of the config, not
the weights, and lands inside the model directory when model_name is an absolute path: so each
lighteval run gets `model_name=model` (relative, run from the target's directory) and a cache
directory of its own that is deleted before and after, and no result can come from another
checkpoint's or config's cache. (Today the task half of lighteval's key happens to differ between
processes for this task file, because it hashes the repr of our metric object, address included;
the isolation does not rely on that.)

Then one lighteval run per seed and system prompt (the toy task keeps its training prompt; the
paper's benchmarks have none, and lighteval takes the system prompt per model, not per task).
Each run's results JSON gives `sample_i` per task: one benchmark score per sample index; its
details give each completion, from which per-problem scores are taken.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shlex
import shutil
import subprocess
import time
from pathlib import Path
from typing import Optional

import yaml

log = logging.getLogger("tina.evaluate")

TASKS_FILE = Path(__file__).with_name("lighteval_tasks.py")
MODEL = "model"  # the evaluated weights, relative to the target's lighteval directory
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")


def device(ec) -> str:
    if ec.accelerate.device != "auto":
        return ec.accelerate.device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def dtype(ec) -> str:
    return ec.vllm.dtype if ec.backend.value == "vllm" else ec.accelerate.dtype


def model_args(model: str, ec, *, seed: int, system: Optional[str], cache_dir: str) -> dict:
    """lighteval's model config as YAML `model_parameters` (a file: no comma/quote escaping in paths or prompts)."""
    gen = {"temperature": ec.temperature, "top_p": ec.top_p, "max_new_tokens": ec.max_new_tokens, "seed": seed}
    common = {
        "model_name": model,
        "override_chat_template": True,  # chat template on, whatever lighteval would guess
        "system_prompt": system,  # none for the paper's benchmarks: no training system prompt
        "cache_dir": cache_dir,
        "generation_parameters": gen,
    }
    if ec.backend.value == "vllm":
        v = ec.vllm
        params = {"dtype": v.dtype, "max_model_length": v.max_model_length,
                  "gpu_memory_utilization": v.gpu_memory_utilization, "max_num_batched_tokens": v.max_num_batched_tokens,
                  "tensor_parallel_size": v.tensor_parallel_size, "data_parallel_size": v.data_parallel_size,
                  "seed": seed}
    else:
        gen["top_k"] = 0  # transformers' default top_k=50 would sample differently from vLLM and TRL
        params = {"dtype": ec.accelerate.dtype, "device": device(ec),
                  "batch_size": max(1, ec.batch_size // ec.n_samples)}  # problems per batch, n samples each
    return {"model_parameters": {**common, **params}}


def command(ec, model_args_path: Path, task_names: list[str], output_dir: Path) -> list[str]:
    """The lighteval invocation (0.13 task syntax: `task|fewshot`; the old `suite|task|0|0` is refused)."""
    cmd = [
        str(ec.lighteval_python), "-m", "lighteval", ec.backend.value, str(model_args_path),
        ",".join(f"{name}|0" for name in task_names),
        "--custom-tasks", str(TASKS_FILE),
        "--output-dir", str(output_dir),
        "--save-details",
        "--remove-reasoning-tags" if ec.remove_reasoning_tags else "--no-remove-reasoning-tags",
    ]
    return cmd + [str(a) for a in ec.lighteval_args]


def lighteval_version(python: str) -> str:
    """Ask lighteval's environment for its version: fails in seconds, before a model is merged."""
    probe = "import importlib.metadata as m; print(m.version('lighteval'))"
    try:
        out = subprocess.run([python, "-c", probe], capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.SubprocessError) as e:
        raise RuntimeError(f"eval.lighteval_python={python} cannot run: {e}") from e
    if out.returncode != 0:
        raise RuntimeError(f"eval.lighteval_python={python} has no lighteval: {out.stderr.strip()[-300:]}")
    return out.stdout.strip()


def _local(base: str) -> Path:
    if Path(base).is_dir():
        return Path(base)
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(base))


def prepare_model(base: str, adapter: Optional[Path], out: Path, *, dtype: str, tokenizer, ec) -> Path:
    """The weights lighteval loads, in `out` (evaluation-owned): merged, or a view of the base."""
    shutil.rmtree(out, ignore_errors=True)
    if adapter is not None:
        from tina.evaluate.inprocess import load_model

        model = load_model(base, adapter, dtype=dtype)
        model.save_pretrained(out)
        del model
    else:  # link the weights (no copy of a 3 GB file); copy the small files, which get rewritten below
        out.mkdir(parents=True)
        for f in _local(base).iterdir():
            if f.is_file() and f.name.endswith(WEIGHT_SUFFIXES):
                (out / f.name).symlink_to(f.resolve())
            elif f.is_file():
                shutil.copyfile(f, out / f.name)
    for f in out.iterdir():  # the tokenizer evaluated replaces the base's (template override included)
        if f.name.startswith(("tokenizer", "special_tokens_map", "chat_template", "vocab", "merges", "added_tokens")):
            f.unlink()
    tokenizer.save_pretrained(out)
    path = out / "generation_config.json"
    gen = json.loads(path.read_text()) if path.is_file() else {}
    gen.update(do_sample=True, temperature=ec.temperature, top_p=ec.top_p, top_k=0)
    path.write_text(json.dumps(gen, indent=2))
    return out


def write_examples(data_dir: Path, examples: list[dict]) -> Path:
    data_dir.mkdir(parents=True, exist_ok=True)
    rows = ({"query": e["query"], "choices": e["choices"], "gold_index": e["gold_index"]} for e in examples)
    (data_dir / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return data_dir


def parse(output_dir: Path, task_names: list[str], n_samples: int) -> dict[str, list[float]]:
    """{task: [score of sample_0, ..., sample_{n-1}]} from the results JSON lighteval wrote.

    lighteval 0.13 writes OUTPUT/results/<model>/results_<date>.json with "results" keyed by
    "<task>|<fewshot>" -> {"sample_0": mean, "sample_0_stderr": ..., ...}.
    """
    files = sorted(output_dir.glob("results/**/results_*.json"), key=lambda p: p.stat().st_mtime)
    if not files:
        raise RuntimeError(f"lighteval wrote no results_*.json under {output_dir}/results")
    results = json.loads(files[-1].read_text())["results"]
    scores = {}
    for name in task_names:
        entry = results.get(f"{name}|0")
        if entry is None:
            raise RuntimeError(f"{files[-1]} has no results for {name}|0 (has {sorted(results)})")
        scores[name] = [float(entry[f"sample_{i}"]) for i in range(n_samples)]
    return scores


def details(output_dir: Path, task_name: str, n_samples: int) -> list[dict]:
    """Per problem, in the benchmark's row order: {"query", "texts": [n completions], "scores": [n 0/1]}.

    From OUTPUT/details/<model>/<date>/details_<task>|0_<date>.parquet (--save-details), whose rows
    lighteval orders its own way (by length); each doc's `id` is its row index in rows.jsonl.
    """
    import pandas as pd

    files = sorted(output_dir.glob(f"details/**/details_{task_name}|0_*.parquet"))
    if not files:
        raise RuntimeError(f"lighteval wrote no details for {task_name} under {output_dir}/details")
    rows = sorted(pd.read_parquet(files[-1]).to_dict("records"), key=lambda r: int(r["doc"]["id"]))
    return [{"query": r["doc"]["query"], "texts": [str(t) for t in r["model_response"]["text"]],
             "scores": [float(r["metric"][f"sample_{i}"]) for i in range(n_samples)]} for r in rows]


def system_key(system: Optional[str]) -> str:
    return "nosys" if system is None else "sys-" + hashlib.sha256(system.encode()).hexdigest()[:8]


def evaluate(workdir: Path, ec, groups: dict[Optional[str], list[tuple]]) -> dict[str, dict]:
    """Run lighteval on workdir/model for each system-prompt group and seed.

    `groups` maps a system prompt (None: none) to [(benchmark, examples), ...]. Returns
    {benchmark: {"runs": [score per seed x sample], "per_problem": [...], "wall_seconds"}}.
    """
    out: dict[str, dict] = {}
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}  # model and rows are local files
    for system, members in groups.items():
        key = system_key(system)
        names = [b.lighteval_task for b, _ in members]
        spec = {
            "n_samples": ec.n_samples,
            "max_new_tokens": ec.max_new_tokens,
            "tasks": [{"name": b.lighteval_task, "metric": b.metric,
                       "data_dir": str(write_examples(workdir / "data" / b.name, ex).resolve())} for b, ex in members],
        }
        spec_path = workdir / f"spec-{key}.json"
        spec_path.write_text(json.dumps(spec, indent=2))
        runs = {b.name: [] for b, _ in members}
        totals = {b.name: [0.0] * len(ex) for b, ex in members}
        wall = 0.0
        for seed in ec.seeds:
            run_dir = (workdir / key / f"seed-{seed}").resolve()
            shutil.rmtree(run_dir, ignore_errors=True)  # a stale results file must not be read as this run's
            run_dir.mkdir(parents=True)
            cache_dir = run_dir / "cache"
            args_path = run_dir / "model_args.yaml"
            args_path.write_text(yaml.safe_dump(model_args(MODEL, ec, seed=seed, system=system,
                                                           cache_dir=str(cache_dir)), sort_keys=False))
            cmd = command(ec, args_path, names, run_dir)
            (run_dir / "command.txt").write_text(f"cd {shlex.quote(str(workdir.resolve()))} && {shlex.join(cmd)}\n")
            log.info("lighteval (seed %d, %s): %s", seed, key, shlex.join(cmd))
            started = time.time()
            with open(run_dir / "lighteval.log", "w") as logf:
                proc = subprocess.run(cmd, stdout=logf, stderr=subprocess.STDOUT, cwd=workdir,
                                      env={**env, "TINA_LIGHTEVAL_SPEC": str(spec_path.resolve()),
                                           "TINA_LIGHTEVAL_SEED": str(seed)})
            wall += time.time() - started
            shutil.rmtree(cache_dir, ignore_errors=True)
            if proc.returncode != 0:
                tail = (run_dir / "lighteval.log").read_text()[-3000:]
                raise RuntimeError(f"lighteval failed (exit {proc.returncode}); log {run_dir / 'lighteval.log'}:\n{tail}")
            for name, scores in parse(run_dir, names, ec.n_samples).items():
                bench, examples = next((b, ex) for b, ex in members if b.lighteval_task == name)
                runs[bench.name].extend(scores)
                per = details(run_dir, name, ec.n_samples)
                if [p["query"] for p in per] != [e["query"] for e in examples]:
                    raise RuntimeError(f"{name}: lighteval's details under {run_dir} are not the problems tina wrote")
                totals[bench.name] = [t + sum(p["scores"]) for t, p in zip(totals[bench.name], per)]
        scale = ec.n_samples * len(ec.seeds)
        for bench, _ in members:
            out[bench.name] = {"runs": runs[bench.name], "per_problem": [t / scale for t in totals[bench.name]],
                               "wall_seconds": wall}
    return out
