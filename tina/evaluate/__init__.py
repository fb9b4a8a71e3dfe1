"""Evaluation of a run's checkpoints, or of a model, on the benchmarks (tina/evaluate/testsets.py).

    python -m tina.evaluate run_dir=RUN [eval=cpu|gpu] [eval.backend=transformers|accelerate|vllm]
        [eval.checkpoints=all|last|best] [eval.benchmarks=[...]]
    python -m tina.evaluate model=deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B eval=gpu

Writes RUN/eval/<checkpoint>/<benchmark>.json (format: tina/evaluate/results.py). From training,
`evaluate_run(run_dir, eval_cfg)` (tina.train calls it when eval.after_training is set).

This __init__ imports nothing: tina.config nests `tina.evaluate.config.EvalConfig` in the training
schema, and the modules doing the work import tina.config, so they load only when called.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def evaluate_run(run_dir: str | Path, eval_cfg: Any = None) -> list[dict]:
    """Evaluate a training run's checkpoints as `eval_cfg` (EvalConfig, DictConfig, dict or None) says;
    return the results records (written to RUN/eval/<checkpoint>/<benchmark>.json, or found there)."""
    from tina.evaluate.run import evaluate_run as run

    return run(run_dir, eval_cfg)


def evaluate_model(model: str, output_dir: str | Path, eval_cfg: Any = None) -> list[dict]:
    """Evaluate a model on its own (hub id or path): results in OUTPUT_DIR/eval/base/."""
    from tina.evaluate.run import evaluate_model as run

    return run(model, output_dir, eval_cfg)


def evaluate(ec) -> list[dict]:
    """Evaluate per a checked EvaluateConfig (what `python -m tina.evaluate` runs)."""
    from tina.evaluate.run import evaluate as run

    return run(ec)


def read_results(roots) -> list[dict]:
    """Every results record under each root's eval/ (run directories or base-model output dirs)."""
    from tina.evaluate.results import read_results as read

    return read(roots)
