"""GPU backend: lighteval 0.13 + vLLM with the paper's settings, run in lighteval's own environment.

lighteval cannot be installed beside tina (STACK.md: it pins latex2sympy2_extended 1.0.6 and so
antlr4 4.13, Hydra needs 4.9), so it runs as a subprocess: `eval.lighteval_python -m lighteval
vllm MODEL_ARGS.yaml TASKS --custom-tasks tina/evaluate/lighteval_tasks.py --output-dir DIR`.

Per target: merge the LoRA adapter into the base (PEFT merge_and_unload; lighteval 0.13's
VLLMModelConfig has no LoRA fields, so serving the adapter as LoRA is not an option), write the
benchmark examples tina built, then one lighteval run per seed and system prompt (the toy task
keeps its training prompt; the paper's benchmarks have none, and lighteval takes the system prompt
per model, not per task). Each run's results JSON gives `sample_i` per task: one benchmark score
per sample index.
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


def model_args(model: str, ec, *, seed: int, system: Optional[str], tokenizer: Optional[str] = None) -> dict:
    """lighteval's VLLMModelConfig as YAML `model_parameters` (a file: no comma/quote escaping in paths or prompts)."""
    params = {
        "model_name": model,
        "dtype": ec.vllm.dtype,
        "max_model_length": ec.vllm.max_model_length,
        "gpu_memory_utilization": ec.vllm.gpu_memory_utilization,
        "max_num_batched_tokens": ec.vllm.max_num_batched_tokens,
        "tensor_parallel_size": ec.vllm.tensor_parallel_size,
        "data_parallel_size": ec.vllm.data_parallel_size,
        "seed": seed,
        "override_chat_template": True,  # chat template on, whatever lighteval would guess
        "system_prompt": system,  # none for the paper's benchmarks: no training system prompt
        "generation_parameters": {
            "temperature": ec.temperature,
            "top_p": ec.top_p,
            "max_new_tokens": ec.max_new_tokens,
            "seed": seed,
        },
    }
    if tokenizer is not None:
        params["tokenizer"] = tokenizer
    return {"model_parameters": params}


def command(ec, model_args_path: Path, task_names: list[str], output_dir: Path) -> list[str]:
    """The lighteval invocation (0.13 task syntax: `task|fewshot`; the old `suite|task|0|0` is refused)."""
    cmd = [
        str(ec.lighteval_python), "-m", "lighteval", "vllm", str(model_args_path),
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


def merge(base: str, adapter: Path, out: Path, *, dtype: str, tokenizer) -> Path:
    """The adapter merged into the base and saved where vLLM can load it (with the tokenizer evaluated)."""
    from tina.evaluate.cpu import load_model

    model = load_model(base, adapter, dtype=dtype)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    del model
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


def _system_key(system: Optional[str]) -> str:
    return "nosys" if system is None else "sys-" + hashlib.sha256(system.encode()).hexdigest()[:8]


def evaluate(workdir: Path, model: str, ec, groups: dict[Optional[str], list[tuple]], *,
             tokenizer_dir: Optional[Path] = None) -> dict[str, dict]:
    """Run lighteval for each system-prompt group and seed; {benchmark: {"runs": [...], "wall_seconds"}}.

    `groups` maps a system prompt (None: none) to [(benchmark, examples), ...].
    """
    out: dict[str, dict] = {}
    for system, members in groups.items():
        key = _system_key(system)
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
        wall = 0.0
        for seed in ec.seeds:
            run_dir = workdir / key / f"seed-{seed}"
            shutil.rmtree(run_dir, ignore_errors=True)  # a stale results file must not be read as this run's
            run_dir.mkdir(parents=True)
            args_path = run_dir / "model_args.yaml"
            args_path.write_text(yaml.safe_dump(model_args(
                model, ec, seed=seed, system=system, tokenizer=None if tokenizer_dir is None else str(tokenizer_dir),
            ), sort_keys=False))
            cmd = command(ec, args_path, names, run_dir)
            (run_dir / "command.txt").write_text(shlex.join(cmd) + "\n")  # to rerun by hand
            log.info("lighteval (seed %d, %s): %s", seed, key, shlex.join(cmd))
            started = time.time()
            with open(run_dir / "lighteval.log", "w") as logf:
                proc = subprocess.run(cmd, stdout=logf, stderr=subprocess.STDOUT,
                                      env={**os.environ, "TINA_LIGHTEVAL_SPEC": str(spec_path.resolve())})
            wall += time.time() - started
            if proc.returncode != 0:
                tail = (run_dir / "lighteval.log").read_text()[-3000:]
                log_path = run_dir / "lighteval.log"
                raise RuntimeError(f"lighteval failed (exit {proc.returncode}); log {log_path}:\n{tail}")
            for name, scores in parse(run_dir, names, ec.n_samples).items():
                bench = next(b for b, _ in members if b.lighteval_task == name)
                runs[bench.name].extend(scores)
        for bench, _ in members:
            out[bench.name] = {"runs": runs[bench.name], "wall_seconds": wall}
    return out

