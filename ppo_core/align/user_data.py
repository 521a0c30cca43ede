"""Local datasets in the formats TRL documents, read offline through Hugging Face ``datasets``
(``load_dataset("json" | "parquet" | "csv", data_files=path)``), checked row by row.

- SFT: ``prompt`` / ``completion`` rows, or conversational ``messages`` rows (the last message the
  assistant's answer) rendered with the tokenizer's chat template.
- Reward model: pairwise ``prompt`` / ``chosen`` / ``rejected`` rows, or K-wise rows ``prompt``,
  ``completions`` (K strings) and ``ranking`` (a permutation of 0..K-1, best first).
- RL prompts: ``prompt`` rows, or ``messages`` without the answer; every other column travels with
  its prompt to reward functions.

A prompt may itself be a list of chat messages wherever it is a column. Bad data is a ConfigError
naming the file, the row (counted from 1) and the column.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any, NamedTuple

from transformers import PreTrainedTokenizerBase

from ppo_core.errors import ConfigError

DATA_FORMATS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}


def is_data_file(source: str) -> bool:
    return os.path.splitext(source)[1].lower() in DATA_FORMATS


def read_rows(path: str, key: str) -> list[dict[str, Any]]:
    """Every row of a local .jsonl, .json, .parquet or .csv file, as dicts."""
    extension = os.path.splitext(path)[1].lower()
    if extension not in DATA_FORMATS:
        raise ConfigError(f"{key}={path!r} is not a data file; expected one of {', '.join(DATA_FORMATS)}")
    if not os.path.isfile(path):
        raise ConfigError(f"{key}={path!r} does not exist")
    import datasets  # a second or two to import: only runs that read a file pay it

    datasets.disable_progress_bars()
    try:
        table = datasets.load_dataset(DATA_FORMATS[extension], data_files=path, split="train")
    except Exception as error:  # pyarrow's and datasets' parse errors, whatever their class
        if extension == ".jsonl" and not read_jsonl(path, key):  # names a line that is not a JSON object
            raise ConfigError(f"{key}={path!r} holds no rows") from None
        cause = error.__cause__ or error
        raise ConfigError(f"{key}={path!r} could not be read as {DATA_FORMATS[extension]}: "
                          f"{str(cause).splitlines()[0] if str(cause) else type(cause).__name__}") from None
    rows = table.to_list()
    if not rows:
        raise ConfigError(f"{key}={path!r} holds no rows")
    return rows


def read_jsonl(path: str, key: str) -> list[tuple[int, dict]]:
    """(line number, object) of every non-blank line of a .jsonl file; a line that is not a JSON object
    is a ConfigError naming the file, the line and what is wrong."""
    rows = []
    with open(path, encoding="utf-8", errors="strict") as f:
        try:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as error:
                    raise ConfigError(f"{key}={path!r}: line {number} is not JSON ({error.msg} at column {error.colno})"
                                      ) from None
                if not isinstance(row, dict):
                    raise ConfigError(f"{key}={path!r}: line {number} is a JSON {type(row).__name__}, expected an "
                                      "object such as {\"prompt\": \"...\"}")
                rows.append((number, row))
        except UnicodeDecodeError as error:
            raise ConfigError(f"{key}={path!r} is not UTF-8 text ({error.reason} after line {len(rows)})") from None
    return rows


class RowError:
    """Builds the ConfigError of one row: ``where(n)("column 'prompt' is empty")``."""

    def __init__(self, key: str, path: str):
        self.key, self.path = key, path

    def __call__(self, row: int, column: str, problem: str) -> ConfigError:
        return ConfigError(f"{self.key}={self.path!r}: row {row} column {column!r} {problem}")


def require_columns(rows: Sequence[dict], columns: Sequence[str], error: RowError) -> None:
    for number, row in enumerate(rows, 1):
        for column in columns:
            if row.get(column) is None:
                present = [name for name, value in row.items() if value is not None]
                raise error(number, column, f"is missing (the row has {', '.join(map(repr, present)) or 'no columns'})")


def text(value: Any, column: str, number: int, error: RowError) -> str:
    if not isinstance(value, str):
        raise error(number, column, f"is a {type(value).__name__}; expected a string")
    if not value.strip():
        raise error(number, column, "is empty")
    return value


def check_messages(value: Any, column: str, number: int, error: RowError) -> list[dict[str, str]]:
    if not isinstance(value, list) or not value:
        raise error(number, column, "is not a non-empty list of chat messages")
    for turn, message in enumerate(value):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str) or \
                not isinstance(message.get("content"), str):
            raise error(number, column, f"message {turn} is not a {{'role': str, 'content': str}} dict")
    return value


def chat_prompt(messages: list[dict[str, str]], tokenizer: PreTrainedTokenizerBase, column: str, number: int,
                error: RowError) -> str:
    """The messages rendered as the model is prompted with them: the chat template, then the
    assistant's turn opened (``add_generation_prompt``)."""
    if not getattr(tokenizer, "chat_template", None):
        raise error(number, column, "holds chat messages but the tokenizer has no chat template; give prompt/"
                    "completion strings, or save a tokenizer with a chat_template")
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def prompt_text(row: dict, number: int, tokenizer: PreTrainedTokenizerBase, error: RowError) -> str:
    """A ``prompt`` column: a string, or chat messages rendered with the chat template."""
    value = row["prompt"]
    if isinstance(value, list):
        return chat_prompt(check_messages(value, "prompt", number, error), tokenizer, "prompt", number, error)
    return text(value, "prompt", number, error)


def answer_text(value: Any, column: str, number: int, error: RowError) -> str:
    """A completion: a string, or one assistant message (TRL's conversational form)."""
    if isinstance(value, list):
        messages = check_messages(value, column, number, error)
        if len(messages) != 1 or messages[0]["role"] != "assistant":
            raise error(number, column, "must be a string or a single assistant message")
        value = messages[0]["content"]
    return text(value, column, number, error)


def split_messages(row: dict, number: int, tokenizer: PreTrainedTokenizerBase, error: RowError,
                   answer: bool) -> tuple[str, str | None]:
    """A ``messages`` row as (prompt text, answer): with ``answer`` the last message must be the
    assistant's and is the answer; without, a trailing assistant message is dropped."""
    messages = check_messages(row["messages"], "messages", number, error)
    if messages[-1]["role"] == "assistant":
        history, last = messages[:-1], messages[-1]["content"]
    elif answer:
        raise error(number, "messages", f"ends with a {messages[-1]['role']!r} message; the last must be the "
                    "assistant's answer")
    else:
        history, last = messages, None
    if not history:
        raise error(number, "messages", "has no message before the answer")
    if answer and not last.strip():
        raise error(number, "messages", "ends with an empty answer")
    return chat_prompt(history, tokenizer, "messages", number, error), last


def sft_pairs(path: str, key: str, tokenizer: PreTrainedTokenizerBase) -> list[tuple[str, str]]:
    """(prompt text, completion text) of every row."""
    rows, error = read_rows(path, key), RowError(key, path)
    if "messages" in rows[0] and "prompt" not in rows[0]:
        require_columns(rows, ["messages"], error)
        return [split_messages(row, n, tokenizer, error, answer=True) for n, row in enumerate(rows, 1)]
    require_columns(rows, ["prompt", "completion"], error)
    return [(prompt_text(row, n, tokenizer, error), answer_text(row["completion"], "completion", n, error))
            for n, row in enumerate(rows, 1)]


class Ranking(NamedTuple):
    """A prompt's completions, best first."""

    prompt: str
    completions: list[str]


def rankings(path: str, key: str, tokenizer: PreTrainedTokenizerBase) -> list[Ranking]:
    """Pairwise rows (chosen before rejected) or K-wise rows ordered by their ``ranking``."""
    rows, error = read_rows(path, key), RowError(key, path)
    if "completions" in rows[0] or "ranking" in rows[0]:
        require_columns(rows, ["prompt", "completions", "ranking"], error)
        return [ranked_row(row, n, tokenizer, error) for n, row in enumerate(rows, 1)]
    require_columns(rows, ["prompt", "chosen", "rejected"], error)
    return [Ranking(prompt_text(row, n, tokenizer, error),
                    [answer_text(row["chosen"], "chosen", n, error), answer_text(row["rejected"], "rejected", n, error)])
            for n, row in enumerate(rows, 1)]


def ranked_row(row: dict, number: int, tokenizer: PreTrainedTokenizerBase, error: RowError) -> Ranking:
    completions, ranking = row["completions"], row["ranking"]
    if not isinstance(completions, list) or len(completions) < 2:
        count = len(completions) if isinstance(completions, list) else type(completions).__name__
        raise error(number, "completions", f"holds {count}; a ranking needs K >= 2 completions")
    texts = [answer_text(c, f"completions[{j}]", number, error) for j, c in enumerate(completions)]
    if not isinstance(ranking, list) or sorted(ranking) != list(range(len(texts))) or \
            any(isinstance(i, bool) or not isinstance(i, int) for i in ranking):
        raise error(number, "ranking", f"is {ranking!r}; expected a permutation of 0..{len(texts) - 1} "
                    "(indices into completions, best first)")
    return Ranking(prompt_text(row, number, tokenizer, error), [texts[i] for i in ranking])


class PromptRows(NamedTuple):
    texts: list[str]
    columns: dict[str, list[Any]]
    """Every other column, one value per prompt, for reward functions."""


def prompt_rows(path: str, key: str, tokenizer: PreTrainedTokenizerBase) -> PromptRows:
    """The prompts of ``prompt`` or ``messages`` rows, and the rows' other columns."""
    rows, error = read_rows(path, key), RowError(key, path)
    column = "prompt" if "prompt" in rows[0] or "messages" not in rows[0] else "messages"
    require_columns(rows, [column], error)
    if column == "prompt":
        texts = [prompt_text(row, n, tokenizer, error) for n, row in enumerate(rows, 1)]
    else:
        texts = [split_messages(row, n, tokenizer, error, answer=False)[0] for n, row in enumerate(rows, 1)]
    others = [name for name in rows[0] if name != column]
    return PromptRows(texts, {name: [row.get(name) for row in rows] for name in others})


def refuse_overflow(source: str, key: str, pairs: Sequence[tuple[str, str]], tokenizer: PreTrainedTokenizerBase,
                    max_prompt_tokens: int, max_completion_tokens: int) -> None:
    """A ConfigError naming the first (prompt, completion) row longer than its limit (the completion
    counted with the EOS it is trained to end with)."""
    for number, (prompt, completion) in enumerate(pairs, 1):
        for column, value, limit, extra in (("prompt", prompt, max_prompt_tokens, 0),
                                            ("completion", completion, max_completion_tokens, 1)):
            length = len(tokenizer(value, add_special_tokens=column == "prompt")["input_ids"]) + extra
            if length > limit:
                raise ConfigError(f"{key}={source!r}: row {number} column {column!r} has {length} tokens, more than "
                                  f"the {limit} allowed; shorten it, raise the limit, or set overflow=truncate")
