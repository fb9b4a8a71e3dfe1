"""lighteval 0.13 custom tasks over examples tina wrote: `lighteval accelerate|vllm ... --custom-tasks THIS_FILE`.

This file runs inside lighteval's own environment (lighteval cannot share one with tina's Hydra
and math-verify), so it imports nothing from tina. The benchmark logic (fields, gold,
prompt, GPQA shuffle) lives once in tina/evaluate/testsets.py: tina.evaluate.lighteval_run builds the examples,
writes them as <data_dir>/rows.jsonl ({"query", "choices", "gold_index"}), and names a spec file
in TINA_LIGHTEVAL_SPEC: {"n_samples": n, "max_new_tokens": m, "tasks": [{"name", "data_dir", "metric"}]}.

The metric reports each of the n samples separately (`sample_0` ... `sample_{n-1}`, each a mean
over problems): their mean is pass@1 over n samples, their spread is how much a one-sample
evaluation moves (the paper's AIME24 moves ~10 points between seeds). Matching is the paper's
extractive match: maths boxed first (open-r1's latex/expr gold metrics), letters for GPQA.
"""

import json
import os
from pathlib import Path

import numpy as np
from lighteval.metrics.dynamic_metrics import MultilingualExtractiveMatchMetric
from lighteval.metrics.metrics_sample import SampleLevelComputation, SamplingMetric
from lighteval.metrics.utils.extractive_match_utils import (
    ExprExtractionConfig,
    IndicesExtractionConfig,
    LatexExtractionConfig,
)
from lighteval.metrics.utils.metric_utils import SampleLevelMetricGrouping
from lighteval.models.model_output import ModelResponse
from lighteval.tasks.lighteval_task import LightevalTaskConfig
from lighteval.tasks.requests import Doc, SamplingMethod
from lighteval.utils.language import Language


def matcher(metric: str) -> MultilingualExtractiveMatchMetric:
    if metric == "letter":
        # lighteval 0.13's own gpqa:diamond setting; without the anchor-free pass a \boxed{C} is missed
        letters = [IndicesExtractionConfig(prefix_for_extraction="NativeLetters", try_extract_without_anchor=True)]
        return MultilingualExtractiveMatchMetric(
            language=Language.ENGLISH, gold_extraction_target=letters, pred_extraction_target=letters, precision=5
        )
    return MultilingualExtractiveMatchMetric(
        language=Language.ENGLISH,
        fallback_mode="first_match",
        precision=5,
        # golds are "$204$", a worked solution with \boxed{}, or a bare expression
        gold_extraction_target=(LatexExtractionConfig(), ExprExtractionConfig()),
        pred_extraction_target=(ExprExtractionConfig(), LatexExtractionConfig(boxed_match_priority=0)),  # boxed first
        aggregation_function=max,
    )


class PerSample(SamplingMetric, SampleLevelComputation):
    """Correctness of each sample on its own. A SamplingMetric, so lighteval generates n per problem."""

    def __init__(self, n: int, match: MultilingualExtractiveMatchMetric):
        super().__init__(sample_scoring_function=match)
        self.n = n

    def compute(self, doc: Doc, model_response: ModelResponse, **kwargs) -> dict:
        texts = list(model_response.final_text)  # reasoning-stripped when lighteval is told to strip
        return {
            f"sample_{i}": float(self.compute_score(doc, ModelResponse(text=[texts[i] if i < len(texts) else ""])))
            for i in range(self.n)
        }

    def num_samples(self) -> int:
        return self.n


def per_sample_metric(n: int, metric: str) -> SampleLevelMetricGrouping:
    names = [f"sample_{i}" for i in range(n)]
    return SampleLevelMetricGrouping(
        metric_name=names,
        higher_is_better=dict.fromkeys(names, True),
        category=SamplingMethod.GENERATIVE,
        sample_level_fn=PerSample(n, matcher(metric)),
        corpus_level_fn=dict.fromkeys(names, np.mean),
    )


def prompt(line: dict, task_name: str = None) -> Doc:
    return Doc(task_name=task_name, query=line["query"], choices=list(line["choices"]),
               gold_index=int(line["gold_index"]))


def tasks(spec: dict) -> list:
    return [
        LightevalTaskConfig(
            name=t["name"],
            prompt_function=prompt,
            hf_repo=t["data_dir"],  # a local folder holding rows.jsonl: datasets loads it as split "train"
            hf_subset="default",
            hf_avail_splits=["train"],
            evaluation_splits=["train"],
            few_shots_split=None,
            few_shots_select=None,
            generation_size=spec["max_new_tokens"],
            metrics=[per_sample_metric(spec["n_samples"], t["metric"])],
            stop_sequence=[],  # chat models stop at EOS
            version=1,
        )
        for t in spec["tasks"]
    ]


# Without a spec (e.g. `lighteval tasks list --custom-tasks` by hand) there is nothing to offer.
_SPEC = os.environ.get("TINA_LIGHTEVAL_SPEC")
TASKS_TABLE = tasks(json.loads(Path(_SPEC).read_text())) if _SPEC else []

# lighteval seeds `random` and numpy but not torch, and its accelerate backend samples with torch:
# without this every eval.seeds entry would draw the same completions (vLLM takes the seed itself).
if os.environ.get("TINA_LIGHTEVAL_SEED"):
    import torch

    torch.manual_seed(int(os.environ["TINA_LIGHTEVAL_SEED"]))
