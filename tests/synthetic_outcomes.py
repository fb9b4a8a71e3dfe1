"""Synthetic per-problem outcomes with a known truth, and sweeps of them on disk in tina's format
(shared by tests/test_verdicts.py and benchmarks/bench_compare.py).

The truth: each problem has a baseline success probability p_i drawn from Uniform(0.15, 0.85) (a
fresh problem set per replicate: the interval is about problems one could have asked); the arm's
is p_i + delta; each training seed shifts all of a run's probabilities by one draw of
Normal(0, seed_sd). A run's per-problem accuracy is Binomial(k, p)/k. So the true difference of the
arms, over problems and seeds, is delta.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import yaml

from tina import run_dir as rd


def simulate(rng, reps: int, n: int, k: int, seeds: int = 1, delta: float = 0.0, seed_sd: float = 0.0,
             base_seeds: int | None = None):
    """(arm, base): arrays (reps, seeds, n) and (reps, base_seeds, n) of per-problem accuracies."""
    p = rng.uniform(0.15, 0.85, size=(reps, 1, n))
    T = seeds if base_seeds is None else base_seeds

    def runs(shift, S):
        q = np.clip(p + shift + rng.normal(0.0, seed_sd, size=(reps, S, 1)), 0.0, 1.0) if seed_sd else p + shift
        return rng.binomial(k, np.broadcast_to(q, (reps, S, n))) / k
    return runs(delta, seeds), runs(0.0, T)


def ids(n: int, tag: str = "") -> list[str]:
    return [rd.problem_id(f"problem {tag}{i}") for i in range(n)]


def write_run(run: Path, overrides: list[str], per_problem, problem_ids, *, benchmark: str | None = "toy",
              n_samples: int = 4, settings: dict | None = None) -> Path:
    """A finished run as tina writes it: .hydra/overrides.yaml, summary.json, and the outcomes either
    as an evaluation record (eval/adapter/BENCHMARK.json) or, with benchmark=None, RUN/heldout.json."""
    (run / rd.HYDRA).mkdir(parents=True, exist_ok=True)
    (run / rd.HYDRA / rd.HYDRA_OVERRIDES).write_text(yaml.safe_dump(list(overrides)))
    values = [float(v) for v in per_problem]
    acc = float(np.mean(values))
    summary = {"status": "completed", "steps": 10, "max_steps": 10}
    if benchmark is None:
        summary["heldout_final"] = {"format": 1.0, "accuracy": acc, "n": len(values) * n_samples}
        rd.write_heldout(run, "final", {"problem_ids": problem_ids, "n_samples": n_samples, "accuracy": values})
    else:
        path = run / rd.EVAL / "adapter" / f"{benchmark}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        record = {"benchmark": benchmark, "checkpoint": "adapter", "step": 10, "pass@1": acc, "pass@1_std": None,
                  "n_problems": len(values), "n_samples": n_samples, "seeds": [0], "runs": [acc],
                  "per_problem": values, "settings": settings or {"temperature": 0.6, "n_samples": n_samples}}
        if problem_ids is not None:
            record["problem_ids"] = problem_ids
        path.write_text(json.dumps(record))
    (run / rd.SUMMARY).write_text(json.dumps(summary))
    return run
