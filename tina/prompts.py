"""System prompts and gold-answer formats: the text facts of a data set, with no heavy imports.

A bottom layer on its own so that tina.config (which resolves `${system_prompt:NAME}`) and
tina.data (which reads the data) can both use them without importing each other.
"""

from __future__ import annotations

import json
from typing import Callable

from tina.toy import SYSTEM_PROMPT as _TOY_PROMPT

# The paper's two system prompts (its released training recipes), and the toy task's shortened one.
SYSTEM_PROMPTS = {
    # Open-RS data sets ask for \boxed{} and <think>/<answer> tags.
    "open_rs": (
        "A conversation between User and Assistant. The user asks a question, and the Assistant solves it. "
        "The assistant first thinks about the reasoning process in the mind and then provides the user with "
        "the answer, and put your final answer within \\boxed{} . The reasoning process and answer are "
        "enclosed within <think> </think> and <answer> </answer> tags, respectively, i.e., "
        "<think> reasoning process here </think> <answer> answer here </answer>. "
        "Note that respond by English, NOT use other languages."
    ),
    # The other data sets ask for the exact newline-delimited format the format reward checks.
    "r1": (
        "You are a helpful AI Assistant that provides well-reasoned and detailed responses. You first think "
        "about the reasoning process as an internal monologue and then provide the user with the answer. "
        "Respond in the following format: <think>\n...\n</think>\n<answer>\n...\n</answer>"
    ),
    "toy": _TOY_PROMPT,
}


def _ii_thought_answer(value: str) -> str:
    answer = json.loads(value)["answer"]["value"]
    if answer is None or not str(answer).strip():
        raise ValueError("answer.value is empty")
    return f"${answer}$"


# How a raw gold field becomes a string math-verify parses.
ANSWER_FORMATS: dict[str, Callable[[str], str]] = {
    "as_is": lambda value: str(value),  # already LaTeX, or a worked solution whose \boxed{} is the gold
    "dollars": lambda value: f"${value}$",  # a bare answer such as "3/4"
    "ii_thought_json": _ii_thought_answer,  # II-Thought's JSON verification_info
}
