"""The embedded tiny model and the toy task: what the default run stands on."""

from __future__ import annotations

import random
import time

import pytest
import torch
from math_verify import parse
from tokenizers import Tokenizer
from transformers import AutoModelForCausalLM, AutoTokenizer

from tests.helpers import assert_rebuild_identical
from tina import toy
from tina.embedded import TINY_DIR, TINY_DIRECT_DIR
from tina.embedded.build import CHAT_TEMPLATE, FILES, TAGS, conversation
from tina.rewards import get_reward

KINDS = [(m, g) for m in (False, True) for g in (False, True)]  # (malformed, guessed)


@pytest.fixture(scope="module")
def tokenizer():
    tok = AutoTokenizer.from_pretrained(TINY_DIR)
    tok.padding_side = "left"
    return tok


@pytest.fixture(scope="module")
def raw():
    return Tokenizer.from_file(str(TINY_DIR / "tokenizer.json"))


@pytest.fixture(scope="module")
def model():
    return AutoModelForCausalLM.from_pretrained(TINY_DIR).eval()


def _sample_texts() -> list[str]:
    rng = random.Random(0)
    texts = ["", "café  naïve\n\n\t x", "What is 12 + 345?  It's 357.\r\n", "<think></think><answer>x</answer>"]
    for r in toy.rows("test", 10, 0):
        for malformed, guessed in KINDS:
            completion = toy.trace(r["problem"], r["solution"], malformed=malformed, guessed=guessed, rng=rng)
            texts += [completion, f"<|system|>{toy.SYSTEM_PROMPT}<|user|>{r['problem']}<|assistant|>{completion}<|endoftext|>"]
    return texts


# --- tokenizer and chat template ---------------------------------------------------------------

def test_autotokenizer_is_qwen2_with_the_raw_tokenizers_ids(tokenizer, raw):
    # transformers 5 rebuilds a qwen2 tokenizer's pipeline with Qwen2's regex: ids must not move.
    assert type(tokenizer).__name__ == "Qwen2Tokenizer"
    assert len(tokenizer) == raw.get_vocab_size()
    for text in _sample_texts():
        assert tokenizer.encode(text, add_special_tokens=False) == raw.encode(text, add_special_tokens=False).ids, text


def test_chat_template_ids_match_the_rendered_text(tokenizer, raw):
    messages = conversation("What is 23 + 45?")
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]
    assert list(ids) == raw.encode(text, add_special_tokens=False).ids


def test_tags_are_single_plain_tokens_that_survive_skip_special_tokens(tokenizer):
    for tag in TAGS:
        ids = tokenizer.encode(tag, add_special_tokens=False)
        assert len(ids) == 1 and ids[0] not in tokenizer.all_special_ids, tag
    completion = "<think>\n2+4=6\n</think>\n<answer>\n\\boxed{6}\n</answer>"
    ids = tokenizer.encode(completion, add_special_tokens=False) + [tokenizer.eos_token_id]
    assert tokenizer.decode(ids, skip_special_tokens=True) == completion  # TRL decodes like this
    assert tokenizer.eos_token == tokenizer.pad_token == "<|endoftext|>"


def test_chat_template_does_not_prefill_think(tokenizer):
    assert tokenizer.chat_template == CHAT_TEMPLATE
    messages = conversation("What is 23 + 45?")
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert prompt == f"<|system|>{toy.SYSTEM_PROMPT}<|user|>What is 23 + 45?<|assistant|>"
    assert "<think>" not in prompt.rsplit("<|assistant|>", 1)[1]
    full = tokenizer.apply_chat_template(messages + [{"role": "assistant", "content": "<think>\nx\n</think>"}], tokenize=False)
    assert full == prompt + "<think>\nx\n</think><|endoftext|>"
    no_prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=False, tokenize=False)
    assert not no_prompt.endswith("<|assistant|>")


def test_prompts_and_completions_fit_the_default_lengths(tokenizer):
    prompt_lengths, completion_lengths = set(), []
    rng = random.Random(0)
    for r in toy.rows("train", 300, 0) + toy.rows("test", 100, 0):
        ids = tokenizer.apply_chat_template(conversation(r["problem"]), add_generation_prompt=True, return_dict=True)
        prompt_lengths.add(len(ids["input_ids"]))
        for malformed, guessed in KINDS:
            c = toy.trace(r["problem"], r["solution"], malformed=malformed, guessed=guessed, rng=rng)
            completion_lengths.append(len(tokenizer.encode(c, add_special_tokens=False)) + 1)  # + EOS
    assert max(prompt_lengths) <= 64
    assert max(completion_lengths) <= 32  # tiny model's max_completion_length: no trace is truncated


# --- model --------------------------------------------------------------------------------------

def test_committed_files_are_complete_and_small():
    names = {p.name for p in TINY_DIR.iterdir()}
    assert {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
            "tokenizer_config.json", "chat_template.jinja"} <= names <= set(FILES)
    assert sum(p.stat().st_size for p in TINY_DIR.iterdir()) < 2_000_000


def test_model_loads_and_generates(model, tokenizer):
    assert model.config.model_type == "qwen2" and model.config.tie_word_embeddings
    assert model.num_parameters() < 200_000
    assert model.generation_config.eos_token_id == tokenizer.eos_token_id
    prompts = [conversation(r["problem"]) for r in toy.rows("test", 4, 0)]
    batch = tokenizer.apply_chat_template(prompts, add_generation_prompt=True, return_dict=True, padding=True,
                                          return_tensors="pt")
    out = model.generate(**batch, max_new_tokens=32, do_sample=False)
    texts = tokenizer.batch_decode(out[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)
    assert all(t.startswith("<think>\n") and "\\boxed{" in t for t in texts), texts


def test_heldout_score_is_seeded_and_leaves_state_alone(model, tokenizer):
    from tina.heldout import score

    rows = toy.rows("test", 6, 0)
    prompts, golds = [conversation(r["problem"]) for r in rows], [r["solution"] for r in rows]
    model.train()
    state = torch.random.get_rng_state()
    a = score(model, tokenizer, prompts, golds, seed=3, num_samples=2, batch_size=8)
    assert model.training and torch.equal(state, torch.random.get_rng_state())
    model.eval()
    assert a == score(model, tokenizer, prompts, golds, seed=3, num_samples=2, batch_size=8)
    assert a["n"] == 12 and 0 <= a["format"] <= 1 and 0 <= a["accuracy"] <= 1
    from tina.run_dir import problem_id

    per = a["per_problem"]  # what analysis.compare pairs by: each problem's id and mean over its 2 samples
    assert per["problem_ids"] == [problem_id(r["problem"]) for r in rows] and per["n_samples"] == 2
    assert sum(per["accuracy"]) / 6 == pytest.approx(a["accuracy"]) and set(per["accuracy"]) <= {0, 0.5, 1}


def test_base_has_room_to_learn(model, tokenizer):
    """Sampled as GRPO samples, the base is right in format and answer only part of the time."""
    from tina.heldout import score

    rows = toy.rows("test", 200, 0)
    s = score(model, tokenizer, [conversation(r["problem"]) for r in rows], [r["solution"] for r in rows], seed=0)
    assert 0.3 <= s["format"] <= 0.75 and 0.4 <= s["accuracy"] <= 0.8, s


# --- toy task -----------------------------------------------------------------------------------

def test_toy_splits_are_disjoint_and_deterministic():
    train, test = toy.rows("train", 3000, 0), toy.rows("test", 500, 0)
    assert not {r["problem"] for r in train} & {r["problem"] for r in test}
    assert toy.rows("train", 50, 7) == toy.rows("train", 50, 7)
    assert toy.rows("train", 50, 7) != toy.rows("train", 50, 8)
    assert len({r["problem"] for r in toy.rows("test", 200, 0)}) == 200  # no repeats while the split lasts
    pools = {s: {(a, b) for a, b in toy._pool(s)} for s in toy.SPLITS}
    assert not pools["train"] & pools["test"] and len(pools["train"]) + len(pools["test"]) == 90 * 90
    assert len(toy.rows("test", 2000, 0)) == 2000  # past the split's size problems repeat
    assert all(toy.split_of(r["problem"]) == "test" for r in test)


def test_toy_rejects_unknown_split():
    with pytest.raises(ValueError, match=r"\['train', 'test'\]"):
        toy.rows("validation", 10, 0)


def test_every_toy_gold_parses_to_the_sum():
    for r in toy.rows("train", 500, 0) + toy.rows("test", 500, 0):
        a, b = toy.parse_problem(r["problem"])
        assert r["solution"] == f"${a + b}$"
    # every gold is "$N$" for a sum N: parsing each possible sum once covers all 8100 problems
    for total in sorted({a + b for split in toy.SPLITS for a, b in toy._pool(split)}):
        gold = parse(f"${total}$")
        assert gold and int(gold[0]) == total, total


def test_traces_pass_or_fail_the_rewards_as_labelled():
    fmt, acc = get_reward("format"), get_reward("accuracy")
    rng = random.Random(0)
    rows = toy.rows("train", 100, 1) + [{"problem": "What is 30 + 50?", "solution": "$80$"},
                                         {"problem": "What is 99 + 99?", "solution": "$198$"}]
    seen_malformed = set()
    for r in rows:
        for malformed, guessed in KINDS:
            for _ in range(3):
                c = toy.trace(r["problem"], r["solution"], malformed=malformed, guessed=guessed, rng=rng)
                assert c.startswith("<think>\n") and "\\boxed{" in c
                assert fmt([c], solution=[r["solution"]]) == [0.0 if malformed else 1.0], c
                a, b = toy.parse_problem(r["problem"])
                lucky = a % 10 == 0 and b % 10 == 0
                assert acc([c], solution=[r["solution"]]) == [1.0 if (not guessed or lucky) else 0.0], c
                if malformed:
                    seen_malformed.add(("</think>" in c, "\n</think>" in c, "</think>\n" in c))
    assert len(seen_malformed) == len(toy.MALFORMED)  # every way of breaking the format occurs


def test_trace_rejects_foreign_problems():
    with pytest.raises(ValueError, match="not a toy problem"):
        toy.trace("What is 2 * 3?", "6", malformed=False, guessed=False, rng=random.Random(0))


# --- reproducibility -----------------------------------------------------------------------------

@pytest.mark.slow
def test_rebuild_is_byte_identical(tmp_path):
    """~50 s on 2 CPU cores: the committed files are exactly what the build script makes."""
    started = time.time()
    assert_rebuild_identical(tmp_path, TINY_DIR)
    print(f"rebuilt in {time.time() - started:.0f} s")


@pytest.mark.slow
def test_direct_rebuild_is_byte_identical(tmp_path):
    """The toy non-distilled base (tina/embedded/tiny_direct) likewise, from `--setting direct`."""
    assert_rebuild_identical(tmp_path, TINY_DIRECT_DIR, "--setting", "direct")


# --- the toy non-distilled base ------------------------------------------------------------------

def test_direct_traces_answer_without_working_and_score_as_labelled():
    fmt, acc = get_reward("format"), get_reward("accuracy")
    rng = random.Random(0)
    for r in toy.rows("train", 50, 2):
        for malformed, guessed in KINDS:
            c = toy.trace(r["problem"], r["solution"], malformed=malformed, guessed=guessed, rng=rng, direct=True)
            assert c.startswith(f"<think>\n{toy.DIRECT_WORK}") and "+" not in c and "=" not in c, c  # no working
            assert fmt([c], solution=[r["solution"]]) == [0.0 if malformed else 1.0], c
            a, b = toy.parse_problem(r["problem"])
            assert acc([c], solution=[r["solution"]]) == [1.0 if not guessed or (a % 10 == 0 and b % 10 == 0) else 0.0], c


def test_direct_base_knows_the_format_as_often_but_cannot_work_the_sum():
    """Sampled as GRPO samples: format about as often as the distilled tiny base, accuracy far below it,
    and its think block never works the sum out."""
    from tina.heldout import score

    tok = AutoTokenizer.from_pretrained(TINY_DIRECT_DIR)
    tok.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(TINY_DIRECT_DIR).eval()
    rows = toy.rows("test", 100, 0)
    s = score(model, tok, [conversation(r["problem"]) for r in rows], [r["solution"] for r in rows], seed=0)
    assert 0.3 <= s["format"] <= 0.75 and s["accuracy"] <= 0.15, s
    batch = tok.apply_chat_template([conversation(r["problem"]) for r in rows[:8]], add_generation_prompt=True,
                                    return_dict=True, padding=True, return_tensors="pt")
    out = model.generate(**batch, max_new_tokens=32, do_sample=False)
    texts = tok.batch_decode(out[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)
    assert all(t.startswith(f"<think>\n{toy.DIRECT_WORK}") and "+" not in t for t in texts), texts


def test_heldout_samples_with_the_runs_top_k(model, tokenizer):
    """top_k=1 keeps only the likeliest token: the seed no longer matters (it did, top_k ignored)."""
    from tina.heldout import score

    rows = toy.rows("test", 16, 0)
    prompts, golds = [conversation(r["problem"]) for r in rows], [r["solution"] for r in rows]
    greedy = [score(model, tokenizer, prompts, golds, seed=s, top_k=1, temperature=1.5) for s in (0, 1, 2)]
    assert greedy[0] == greedy[1] == greedy[2]
    sampled = [score(model, tokenizer, prompts, golds, seed=s, temperature=1.5) for s in (0, 1, 2)]
    assert len({(s["format"], s["accuracy"]) for s in sampled}) > 1
