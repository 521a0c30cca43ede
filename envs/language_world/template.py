"""The instruction template: how a prompt is shown to the language model and where its answer goes.

    User: {prompt text}\\nAssistant:{" " + completion}

A completion is appended after one space and ends at the first newline (or the tokenizer's end of
text token). The pretraining corpus never contains this template, so only SFT teaches it.
"""

from __future__ import annotations

from .prompts import Prompt

USER_PREFIX = "User: "
ASSISTANT_PREFIX = "\nAssistant:"
COMPLETION_SEPARATOR = " "
COMPLETION_STOP = "\n"


def format_prompt(prompt: Prompt | str) -> str:
    """The text fed to the model; its completion follows directly after it."""
    text = prompt.text if isinstance(prompt, Prompt) else prompt
    return f"{USER_PREFIX}{text}{ASSISTANT_PREFIX}"


def format_example(prompt: Prompt | str, completion: str) -> str:
    """Prompt and completion as one training text (SFT, PPO-ptx), without an end-of-text token."""
    return format_prompt(prompt) + COMPLETION_SEPARATOR + completion.strip()


def clean_completion(generated: str) -> str:
    """The answer inside generated text: drop the leading space and cut at the end of the turn."""
    return generated.lstrip(" ").split(COMPLETION_STOP, 1)[0].strip()
