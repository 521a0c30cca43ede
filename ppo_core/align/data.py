"""Token-level data handling: packing a corpus into blocks, encoding prompt/completion pairs, padding.

Prompts and completions are tokenized separately and concatenated, so the prompt tokens a model is
trained on are exactly the tokens it is later prompted with at generation time.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import PreTrainedTokenizerBase

from envs.text_encoding import encode_prompt, pad_sequences
from ppo_core.align.errors import AlignError

log = logging.getLogger(__name__)

IGNORE_INDEX = -100
"""Label value that `torch.nn.functional.cross_entropy` skips (prompt and pad positions)."""


@dataclass
class Example:
    """One tokenized prompt with its completion (completion ends with EOS unless truncated)."""

    prompt_ids: list[int]
    completion_ids: list[int]


def pack_blocks(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], block_size: int) -> torch.Tensor:
    """Concatenate `texts`, each followed by EOS, and cut into full blocks: (N, block_size).

    The ragged tail shorter than one block is dropped.
    """
    ids: list[int] = []
    for encoded in tokenizer(list(texts), add_special_tokens=False)["input_ids"]:
        ids.extend(encoded)
        ids.append(tokenizer.eos_token_id)
    n_blocks = len(ids) // block_size
    if n_blocks == 0:
        raise AlignError(f"corpus has {len(ids)} tokens, fewer than one block of {block_size}")
    return torch.tensor(ids[: n_blocks * block_size]).view(n_blocks, block_size)


def encode_completion(tokenizer: PreTrainedTokenizerBase, text: str, max_tokens: int) -> tuple[list[int], bool]:
    """Token ids of a completion followed by EOS, truncated from the right (then without EOS)."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    if len(ids) <= max_tokens:
        return ids, False
    return ids[:max_tokens], True


def encode_examples(
    tokenizer: PreTrainedTokenizerBase,
    pairs: Sequence[tuple[str, str]],
    max_prompt_tokens: int,
    max_completion_tokens: int,
) -> list[Example]:
    """Encode (prompt text, completion text) pairs, logging how many were truncated."""
    examples, cut_prompts, cut_completions = [], 0, 0
    for prompt, completion in pairs:
        p, cut_p = encode_prompt(tokenizer, prompt, max_prompt_tokens)
        c, cut_c = encode_completion(tokenizer, completion, max_completion_tokens)
        examples.append(Example(p, c))
        cut_prompts += cut_p
        cut_completions += cut_c
    if cut_prompts or cut_completions:
        log.warning(
            "truncated %d/%d prompts (left, to %d tokens) and %d completions (right, to %d tokens)",
            cut_prompts, len(pairs), max_prompt_tokens, cut_completions, max_completion_tokens,
        )
    return examples


def collate_examples(examples: Sequence[Example], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded batch whose labels cover completion tokens only (InstructGPT SFT, Sec. 3.5).

    Returns input_ids, attention_mask and labels, each (B, T); labels are `IGNORE_INDEX` on prompt and
    pad positions and equal input_ids on completion positions.
    """
    ids, mask = pad_sequences([e.prompt_ids + e.completion_ids for e in examples], pad_id)
    labels = torch.full_like(ids, IGNORE_INDEX)
    for i, e in enumerate(examples):
        start = len(e.prompt_ids)
        labels[i, start : start + len(e.completion_ids)] = ids[i, start : start + len(e.completion_ids)]
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}

