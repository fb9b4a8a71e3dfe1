"""The non-distilled base (model=qwen2_5_1_5b_instruct) composes with the paper's recipes, passes the
checks from a local copy of its weights, and prompts in ChatML with no "<think>" prefilled."""

from __future__ import annotations

import shutil

import pytest

from tests.helpers import TINY_MODEL, compose_cfg
from tina.config import ConfigError, validate
from tina.train import load_tokenizer

MESSAGES = [{"role": "system", "content": "Think in <think> tags."}, {"role": "user", "content": "1 + 1?"}]
# Qwen2.5's ChatML for a system and a user message, as its model card shows it.
CHATML = ("<|im_start|>system\nThink in <think> tags.<|im_end|>\n<|im_start|>user\n1 + 1?<|im_end|>\n"
          "<|im_start|>assistant\n")


@pytest.mark.parametrize("order", ["model first", "experiment first"])
def test_replaces_the_distilled_base_in_a_paper_recipe(order, tmp_path):
    overrides = ["model=qwen2_5_1_5b_instruct", "experiment=tina_open_rs2"]
    tc = validate(compose_cfg([*(overrides if order == "model first" else overrides[::-1]),
                               f"train.output_dir={tmp_path}"]))
    assert tc.model.name_or_path == "Qwen/Qwen2.5-1.5B-Instruct" and tc.model.dtype.value == "bfloat16"
    assert (tc.dataset.name, tc.algorithm.num_generations, tc.train.stop_at_step) == ("open_rs2", 6, 850)


def test_local_weights_pass_the_checks_and_prompt_in_chatml(tmp_path):
    local = tmp_path / "Qwen2.5-1.5B-Instruct"  # stands in for a downloaded copy: the embedded model's files
    shutil.copytree(TINY_MODEL, local)
    tc = validate(compose_cfg(["model=qwen2_5_1_5b_instruct", f"model.name_or_path={local}", "compute=cpu",
                               f"train.output_dir={tmp_path / 'run'}"]))
    prompt = load_tokenizer(tc).apply_chat_template(MESSAGES, tokenize=False, add_generation_prompt=True)
    assert prompt == CHATML and not prompt.endswith("<think>\n")
    with pytest.raises(ConfigError, match=r"^model\.name_or_path: no model directory at"):
        validate(compose_cfg(["model=qwen2_5_1_5b_instruct", f"model.name_or_path={tmp_path / 'absent'}",
                              f"train.output_dir={tmp_path / 'run'}"]))
