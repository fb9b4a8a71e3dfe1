"""Build the embedded tiny model: `python -m tina.embedded.build [--setting tiny|direct|transition] [--out DIR] [--seed 0]`.

Why a built model rather than a downloaded one: no package ships a small causal LM with weights,
and the default run must work offline. Why a warm start: GRPO from random weights gets all-zero
rewards and learns nothing; the paper starts from a *distilled* model that already knows the
format part of the time. So this script makes a toy distilled base in three seeded steps:

1. A byte-level BPE tokenizer trained with `tokenizers` on toy conversations. It uses Qwen2's
   own normaliser and pre-tokenizer, because transformers 5 loads any `qwen2` checkpoint's
   tokenizer as `Qwen2Tokenizer`, which rebuilds the pipeline with Qwen2's regex: any other
   pre-tokenizer would silently change the ids. `<think>`, `</think>`, `<answer>`, `</answer>`
   are ordinary added tokens (special=False): TRL decodes completions with
   skip_special_tokens=True, which would strip special ones and zero the format reward. The chat
   template does not prefill `<think>`, as in the paper (else the format reward cannot fire).
2. A random Qwen2ForCausalLM (hidden 64, 2 layers, tied embeddings: 143k parameters, 575 kB).
3. Supervised training on toy traces (`tina.toy.trace`): 63% break the format, 40% guess (drawn
   independently). Sampled as GRPO samples (temperature 0.7, top_k 0) the base then scores format
   ~0.57 and accuracy ~0.65 on the held-out split, while its worked-out answers are ~97% right:
   the right format and answer are there for GRPO to find and reinforce. The mix is not the
   target rate: temperature 0.7 sharpens each decision token (more so where the format can
   break at three different tokens), so the trained shares land below the data's.

`--setting transition` builds experiment=toy_transition's base the same way on the "sum" task
(tina.toy: two-digit sums), with the SETTINGS below, and then a second, short supervised stage on
traces that nearly always guess: a base that can work a sum out but seldom does (see TRANSITION_SFT).

Reproducible: the same seed gives byte-identical files, given (a) the locked versions of torch
and transformers (transformers' weight initialisation changes between releases; constraints.txt
holds the version config.json records), (b) one CPU thread and seeded RNGs, and (c) the same float
kernels. torch's CPU kernels and MKL dispatch on the processor (AVX2, AVX-512, AMX), and 600 SFT
steps amplify the rounding differences into different weights; so the build pins the AVX2 paths
(ATEN_CPU_CAPABILITY=avx2, MKL_CBWR=AVX2), which every x86-64 CPU of the last decade runs. Checked
on an AMD EPYC (AVX2): the pinned build equals the unpinned one there; Intel AVX-512 hosts take
the AVX2 paths too (not checked here). Other architectures (Arm) will differ.

`--setting direct` builds the toy analog of a NON-distilled base into tina/embedded/tiny_direct: the same
steps, seeds and trace mix (as often malformed, as often guessed), but every trace answers directly,
its think block holding no working (`tina.toy.trace(direct=True)`). It knows the format as often as
the distilled one and has never seen a sum worked out: the base_model study asks whether RL that
rewards format and answer helps such a base as it helps the distilled one.
"""

from __future__ import annotations

import os

# Before torch loads: the float kernels every x86-64 build of this model runs (docstring, (c)).
os.environ.setdefault("ATEN_CPU_CAPABILITY", "avx2")
os.environ.setdefault("MKL_CBWR", "AVX2")

import argparse  # noqa: E402
import json  # noqa: E402
import math
import random
import re
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from tina import toy
from tina.embedded import TINY_DIR, TINY_DIRECT_DIR, TRANSITION_DIR

EOS = "<|endoftext|>"
ROLE_TOKENS = ["<|system|>", "<|user|>", "<|assistant|>"]
TAGS = ["<think>", "</think>", "<answer>", "</answer>"]
VOCAB_SIZE = 384  # an upper bound: training stops at ~300 once every word of the corpus is one token

# Role markers are special tokens, so a decoded completion never shows them. The generation
# prompt ends at <|assistant|>: the model writes `<think>` itself.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'system' -%}<|system|>{{ message['content'] }}"
    "{%- elif message['role'] == 'user' -%}<|user|>{{ message['content'] }}"
    "{%- elif message['role'] == 'assistant' -%}<|assistant|>{{ message['content'] }}<|endoftext|>"
    "{%- else -%}{{ raise_exception('unknown role: ' + message['role']) }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}<|assistant|>{%- endif -%}"
)

MODEL = dict(
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    intermediate_size=256,
    max_position_embeddings=256,
    tie_word_embeddings=True,
)

# The warm start. The trace mix sets where the base starts; the rest only has to make the
# well-formed, worked traces reliable (~97% right), so that RL has a good mode to move to. 800 x 32
# sequences take ~45 s of one CPU core. Base scores (3 sampling seeds): build seed 0 (committed)
# format 0.55-0.59, accuracy 0.65-0.66; seeds 1 and 2 format 0.50-0.56, accuracy 0.57-0.64.
SFT = dict(
    steps=800,
    batch_size=32,
    lr=5e-3,
    warmup=40,
    beta2=0.999,
    p_malformed=0.63,
    p_guessed=0.40,
)



@dataclass(frozen=True)
class Setting:
    """What differs between the embedded models: the task, the model's shape, the warm start."""

    name: str
    out: Path
    task: str  # a tina.toy task
    model: dict = field(default_factory=lambda: dict(MODEL))
    sft: dict = field(default_factory=lambda: dict(SFT))
    eval_tokens: int = 32  # base_scores' completion budget: the setting's max_completion_length
    direct: bool = False  # traces without working (the toy non-distilled base)
    then: dict | None = None  # a second supervised stage after `sft` (its keys), on traces drawn anew


# The transition setting (experiment=toy_transition): two-digit sums worked out with running sums,
# the answer boxed inside the think block and then checked (tina.toy.sum_trace), or guessed.
# Why two stages. The paper's curve rises (the format is learnt), holds, then falls (the working
# that the accuracy reward spreads outgrows the length budget and loses its closing tags). For a
# hold, the format must be learnt well before the working takes over. GRPO spreads a rare way of
# answering at a pace that grows with its share (a group holds it more often, and each time it
# gains), so the takeover takes time ~ 1 / its starting share, while the format, wrong in a third
# of the base's samples, is learnt in ~20 steps whatever that share. Stage 1 (1500 x 32 sequences,
# 15% worked) teaches the working; stage 2 (100 x 32 sequences, 3% worked, a lower lr) makes the
# base choose it in ~0.5% of its samples (the skill itself GRPO sharpens again: held-out accuracy
# 0.01 -> 0.66-0.95 in 200 steps): the takeover starts ~20-40 steps after the format is learnt.
# With 6.5% worked (stage 1 alone) the format fell from the start; with 1.8% it rose for ~15 steps
# and fell; a longer stage 2 left no worked answer in 1,200 samples.
# 3 layers. ~4 min of a free core. Base, sampled at temperature 0.7 with 33 tokens: held-out
# format ~0.67, accuracy ~0.01.
TRANSITION_SFT = dict(SFT, steps=1500, p_malformed=0.5, p_guessed={2: 0.85})  # by number of addends
TRANSITION_THEN = dict(TRANSITION_SFT, steps=100, lr=3e-4, warmup=10, p_guessed={2: 0.97})
SETTINGS = {
    "tiny": Setting("tiny", TINY_DIR, "add"),
    "direct": Setting("direct", TINY_DIRECT_DIR, "add", direct=True),
    "transition": Setting("transition", TRANSITION_DIR, "sum", model=dict(MODEL, num_hidden_layers=3),
                          sft=TRANSITION_SFT, then=TRANSITION_THEN, eval_tokens=33),  # the budget: conf/model/tiny_transition.yaml
}

FILES = (
    "config.json", "generation_config.json", "model.safetensors",
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja",
)


def conversation(problem: str, completion: str | None = None) -> list[dict]:
    messages = [{"role": "system", "content": toy.SYSTEM_PROMPT}, {"role": "user", "content": problem}]
    if completion is not None:
        messages.append({"role": "assistant", "content": completion})
    return messages


def _sample_traces(problems: list[dict], rng: random.Random, setting: Setting) -> list[str]:
    sft = setting.sft
    if setting.task == "sum":  # the chance to guess depends on the number of addends
        return [
            toy.sum_trace(p["problem"], malformed=rng.random() < sft["p_malformed"],
                          guessed=rng.random() < sft["p_guessed"][len(toy.parse_terms(p["problem"]))], rng=rng)
            for p in problems
        ]
    return [
        toy.trace(
            p["problem"], p["solution"],
            malformed=rng.random() < sft["p_malformed"], guessed=rng.random() < sft["p_guessed"], rng=rng,
            direct=setting.direct,
        )
        for p in problems
    ]


def _render(problem: str, completion: str) -> str:
    """The chat template, written out; only for the tokenizer's training corpus."""
    return f"<|system|>{toy.SYSTEM_PROMPT}<|user|>{problem}<|assistant|>{completion}{EOS}"


def build_tokenizer(seed: int, setting: Setting = SETTINGS["tiny"]):
    """A raw `tokenizers.Tokenizer` with Qwen2's pre-tokenization, trained on toy conversations."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers, pre_tokenizers
    from tokenizers.models import BPE
    from tokenizers.trainers import BpeTrainer
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    tok = Tokenizer(BPE(unk_token=None, continuing_subword_prefix="", end_of_word_suffix="", fuse_unk=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    rng = random.Random(f"tina.embedded.tokenizer/{seed}")
    problems = toy.rows("train", 2000, seed, setting.task)
    corpus = [_render(p["problem"], c) for p, c in zip(problems, _sample_traces(problems, rng, setting))]
    # Tags and role markers are whole tokens that split the text before BPE sees it: train on the
    # pieces between them, so their own text never enters the merges.
    markers = re.compile("|".join(re.escape(m) for m in [EOS, *ROLE_TOKENS, *TAGS]))
    corpus = [piece for text in corpus for piece in markers.split(text) if piece]
    trainer = BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=[EOS, *ROLE_TOKENS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer=trainer)
    # After training, so their ids follow the learnt vocabulary (ids 0-3 are the special tokens).
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in TAGS])
    return tok


def hf_tokenizer(raw, setting: Setting = SETTINGS["tiny"]):
    from transformers import PreTrainedTokenizerFast

    hf = PreTrainedTokenizerFast(
        tokenizer_object=raw, eos_token=EOS, pad_token=EOS, unk_token=EOS, model_max_length=setting.model["max_position_embeddings"]
    )
    hf.chat_template = CHAT_TEMPLATE
    return hf


def build_model(vocab_size: int, eos_id: int, seed: int, setting: Setting = SETTINGS["tiny"]):
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(vocab_size=vocab_size, bos_token_id=None, eos_token_id=eos_id, pad_token_id=eos_id, **setting.model)
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config)
    model.generation_config = GenerationConfig(bos_token_id=None, eos_token_id=eos_id, pad_token_id=eos_id)
    return model


def warm_start(model, hf, seed: int, log=print, setting: Setting = SETTINGS["tiny"]) -> None:
    """Supervised training on sampled toy traces; loss on the completion (and its EOS) only."""
    import torch

    sft = setting.sft
    steps, batch_size = sft["steps"], sft["batch_size"]
    rng = random.Random(f"tina.embedded.sft/{seed}")
    problems = toy.rows("train", steps * batch_size, seed, setting.task)
    completions = _sample_traces(problems, rng, setting)
    raw = hf.backend_tokenizer
    prompt_ids: dict[str, list[int]] = {}
    for p in problems:
        if p["problem"] not in prompt_ids:
            prompt_ids[p["problem"]] = hf.apply_chat_template(
                conversation(p["problem"]), add_generation_prompt=True, tokenize=True, return_dict=True
            )["input_ids"]
    eos = hf.eos_token_id
    completion_ids = [e.ids + [eos] for e in raw.encode_batch(completions, add_special_tokens=False)]
    seqs = [prompt_ids[p["problem"]] + c for p, c in zip(problems, completion_ids)]
    width = max(len(s) for s in seqs)
    inputs = torch.full((len(seqs), width), eos, dtype=torch.long)
    labels = torch.full((len(seqs), width), -100, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, (p, c, s) in enumerate(zip(problems, completion_ids, seqs)):
        inputs[i, : len(s)] = torch.tensor(s)
        mask[i, : len(s)] = 1
        labels[i, len(s) - len(c) : len(s)] = torch.tensor(c)

    opt = torch.optim.AdamW(model.parameters(), lr=sft["lr"], betas=(0.9, sft["beta2"]), weight_decay=0.0)

    def lr_at(step: int) -> float:
        if step < sft["warmup"]:
            return (step + 1) / sft["warmup"]
        progress = (step - sft["warmup"]) / max(1, steps - sft["warmup"])
        return 0.5 * (1 + math.cos(math.pi * progress))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    model.train()
    for step in range(steps):
        sl = slice(step * batch_size, (step + 1) * batch_size)
        out = model(input_ids=inputs[sl], attention_mask=mask[sl], labels=labels[sl])
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        if step % 100 == 0 or step == steps - 1:
            log(f"  sft step {step:4d}  loss {out.loss.item():.3f}")
    model.eval()


def build(out: Path | None = None, seed: int = 0, log=print, setting: Setting = SETTINGS["tiny"]) -> Path:
    """Build tokenizer, model and warm start into `out` (default: the setting's folder; its previous
    build files are replaced)."""
    import torch

    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(1)  # float sums in a fixed order: byte-identical rebuilds
    torch.use_deterministic_algorithms(True)
    try:
        out = Path(out or setting.out)
        started = time.time()
        raw = build_tokenizer(seed, setting)
        hf = hf_tokenizer(raw, setting)
        model = build_model(len(hf), hf.eos_token_id, seed, setting)
        log(f"tokenizer: {len(hf)} tokens; model: {model.num_parameters()} parameters")
        warm_start(model, hf, seed, log=log, setting=setting)
        if setting.then:  # its own draw of problems and traces: seed + 1
            warm_start(model, hf, seed + 1, log=log, setting=replace(setting, sft=setting.then))
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)

    out.mkdir(parents=True, exist_ok=True)
    for name in FILES:
        (out / name).unlink(missing_ok=True)
    model.save_pretrained(out)
    hf.save_pretrained(out)
    # Qwen2Tokenizer is what transformers picks for a qwen2 checkpoint anyway; say so explicitly.
    cfg_path = out / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["tokenizer_class"] = "Qwen2Tokenizer"
    cfg_path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    log(f"built {out} in {time.time() - started:.1f} s")
    return out


def base_scores(path: Path, seeds=(0, 1, 2), eval_size: int = 200, problem_seed: int = 0,
                setting: Setting = SETTINGS["tiny"]) -> list[dict]:
    """Held-out format/accuracy of the built model, sampled as GRPO samples (temperature 0.7, the
    setting's completion budget)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tina.heldout import score

    tokenizer = AutoTokenizer.from_pretrained(path)
    tokenizer.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(path)
    test = toy.rows("test", eval_size, problem_seed, setting.task)
    prompts = [conversation(r["problem"]) for r in test]
    return [score(model, tokenizer, prompts, [r["solution"] for r in test], seed=s, max_new_tokens=setting.eval_tokens)
            for s in seeds]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tina.embedded.build", description=__doc__.split("\n\n")[0])
    parser.add_argument("--setting", choices=sorted(SETTINGS), default="tiny",
                        help="tiny: the default model (add task); direct: the toy non-distilled base (no working); "
                             "transition: experiment=toy_transition's (sum task)")
    parser.add_argument("--out", type=Path, default=None,
                        help=f"output folder (default: the setting's: {', '.join(str(s.out) for s in SETTINGS.values())})")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-eval", action="store_true", help="skip the held-out scores at the end")
    args = parser.parse_args(argv)
    setting = SETTINGS[args.setting]
    out = build(args.out, args.seed, setting=setting)
    if not args.no_eval:
        started = time.time()
        for s, r in zip((0, 1, 2), base_scores(out, setting=setting)):
            print(f"held-out base (200 test problems, sampling seed {s}): "
                  f"format {r['format']:.3f}  accuracy {r['accuracy']:.3f}")
        print(f"evaluated in {time.time() - started:.1f} s")


if __name__ == "__main__":
    main()
