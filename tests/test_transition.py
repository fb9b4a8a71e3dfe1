"""experiment=toy_transition: a real phase transition on CPU, and the embedded model it starts from.

The run is real (TRL's GRPOTrainer on tina/embedded/transition); what the test checks of its curve
uses a rule written here (tests/helpers.py: fall_begins), not tina.phase, so a detector that
drifts from what a reader sees fails it.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time

import pytest

from tests.helpers import ROOT, assert_rebuild_identical, fall_begins, metrics, rise_halfway, summary
from tina import toy
from tina.embedded import TRANSITION_DIR
from tina.errors import ConfigError
from tina.phase import CLIPPED_KEY, FORMAT_KEY, detect
from tina.rewards import get_reward

STEPS = 200  # conf/experiment/toy_transition.yaml's train.max_steps


def run_transition(run, *overrides: str, timeout: float = 1500) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "tina.train", "experiment=toy_transition", f"hydra.run.dir={run}",
                           *overrides], capture_output=True, text=True, cwd=ROOT, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def test_sum_traces_pass_or_fail_the_rewards_as_labelled():
    fmt, acc = get_reward("format"), get_reward("accuracy")
    rng = random.Random(0)
    for r in toy.rows("train", 200, 0, "sum") + toy.rows("test", 50, 0, "sum"):
        for malformed in (False, True):
            for guessed in (False, True):
                c = toy.sum_trace(r["problem"], malformed=malformed, guessed=guessed, rng=rng)
                lucky = all(t % 10 == 0 for t in toy.parse_terms(r["problem"]))
                assert fmt([c], solution=[r["solution"]]) == [0.0 if malformed else 1.0], c
                assert acc([c], solution=[r["solution"]]) == [1.0 if (not guessed or lucky) else 0.0], c


def test_sum_splits_are_disjoint_and_every_size_occurs():
    train, test = toy.rows("train", 3000, 0, "sum"), toy.rows("test", 300, 0, "sum")
    assert not {r["problem"] for r in train} & {r["problem"] for r in test}
    assert {len(toy.parse_terms(r["problem"])) for r in train} == set(range(toy.SUM_TERMS[0], toy.SUM_TERMS[1] + 1))
    assert toy.rows("train", 20, 0) == toy.rows("train", 20, 0, "add")  # the default task is unchanged
    with pytest.raises(ValueError, match=r"\['add', 'sum'\]"):
        toy.rows("train", 2, 0, "product")


def test_budget_cuts_every_worked_answer_after_its_boxed_result_and_no_guess():
    """The setting's mechanism: conf/model/tiny_transition.yaml's budget against the traces' lengths.
    Cut there, a worked answer keeps its (right) answer and loses its format; a guess fits."""
    from omegaconf import OmegaConf
    from transformers import AutoTokenizer

    budget = OmegaConf.load(ROOT / "conf" / "model" / "tiny_transition.yaml").algorithm.max_completion_length
    tokenizer = AutoTokenizer.from_pretrained(TRANSITION_DIR)
    fmt, acc = get_reward("format"), get_reward("accuracy")
    rng = random.Random(0)
    for r in toy.rows("train", 300, 0, "sum"):
        for guessed in (False, True):
            ids = tokenizer.encode(toy.sum_trace(r["problem"], malformed=False, guessed=guessed, rng=rng),
                                   add_special_tokens=False)
            cut = tokenizer.decode(ids[:budget])
            lucky = all(t % 10 == 0 for t in toy.parse_terms(r["problem"]))
            want = (1.0, 1.0 if lucky else 0.0) if guessed else (0.0, 1.0)
            assert (fmt([cut])[0], acc([cut], solution=[r["solution"]])[0]) == want, (guessed, cut)


def test_experiment_composes_the_transition_setting(tmp_path):
    from tests.helpers import compose_cfg
    from tina.config import validate

    tc = validate(compose_cfg(["experiment=toy_transition", f"train.output_dir={tmp_path}"]))
    assert tc.model.name_or_path == str(TRANSITION_DIR) and tc.dataset.task == tc.eval.toy_task == "sum"
    assert tc.eval.max_new_tokens == tc.algorithm.max_completion_length == 33
    assert tc.train.max_steps == STEPS and tc.eval.after_training and tc.eval.checkpoints.value == "all"
    with pytest.raises(ConfigError, match="dataset.task"):
        validate(compose_cfg(["experiment=toy_transition", "dataset.task=product", f"train.output_dir={tmp_path}"]))


@pytest.mark.slow
def test_transition_rebuild_is_byte_identical(tmp_path):
    """~4 min on a free CPU core: the committed transition model is exactly what the build script makes."""
    assert_rebuild_identical(tmp_path, TRANSITION_DIR, "--setting", "transition", timeout=1800)


@pytest.mark.slow
def test_toy_transition_rises_holds_and_falls_as_the_cut_share_rises(tmp_path):
    """One real run (~2.5 min on 2 free cores): the format reward rises (the format is learnt), holds
    near its top, then falls as the cut share rises; tina.phase puts the acquisition and the
    destabilisation within 5% and 10% of the run of where rules that never call it see them
    (tests/helpers.py: rise_halfway, fall_begins); every checkpoint has its held-out accuracy."""
    run = tmp_path / "run"
    started = time.time()
    run_transition(run)
    rows = metrics(run)
    assert [r["step"] for r in rows] == list(range(1, STEPS + 1))
    steps, fmt = [r["step"] for r in rows], [r[FORMAT_KEY] for r in rows]

    fall = fall_begins(steps, fmt)
    assert fall is not None, f"the format reward never fell: {fmt}"
    rise = rise_halfway(steps, fmt, fall)
    assert fall["peak"] >= 0.9 and fall["peak"] - sum(fmt[:10]) / 10 >= 0.15, fall   # rises to near 1
    assert fall["step"] - rise >= 0.1 * STEPS, (rise, fall)                           # holds
    assert fall["peak"] - fall["bottom"] >= 0.3, fall                                 # falls
    cut = [r.get(CLIPPED_KEY, 0.0) for r in rows]
    i = steps.index(fall["step"])
    before, after = cut[max(0, i - 20): i + 1], cut[i: i + 40]
    assert sum(after) / len(after) - sum(before) / len(before) >= 0.1, (before, after)  # ... because of the cut

    found = detect(run / "metrics.jsonl")
    assert found["step"] is not None and found["acquisition_step"] is not None, found
    assert abs(found["step"] - fall["step"]) <= 0.1 * STEPS, (found["step"], found["reason"], fall)
    assert abs(found["acquisition_step"] - rise) <= 0.05 * STEPS, (found["acquisition_reason"], rise)

    saved = summary(run)["saved_steps"]
    assert saved == list(range(10, STEPS + 1, 10))
    by_checkpoint = {}
    for step in saved:
        result = json.loads((run / "eval" / f"checkpoint-{step}" / "toy.json").read_text())
        assert result["step"] == step and 0 <= result["pass@1"] <= 1
        by_checkpoint[step] = result["pass@1"]
    print(f"rise {rise}; fall {fall}; detector {found['acquisition_step']}, {found['step']} ({found['confidence']}); "
          f"held-out by checkpoint {by_checkpoint}; {time.time() - started:.0f} s")
