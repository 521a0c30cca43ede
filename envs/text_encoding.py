"""Token ids of prompts as a language model is prompted with them, and their padding into batches.

Shared by the text bandit and the alignment stages, so the prompt tokens SFT trains on are exactly
the ones RL later samples from.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import PreTrainedTokenizerBase


def encode_prompt(tokenizer: PreTrainedTokenizerBase, text: str, max_tokens: int) -> tuple[list[int], bool]:
    """Token ids of a prompt, truncated from the LEFT to `max_tokens`; returns (ids, truncated).

    The instruction usually sits at the end of a prompt, so the start is what gets dropped. Special
    tokens the tokenizer prepends (e.g. Llama's BOS) are kept.
    """
    ids = tokenizer(text)["input_ids"]
    if len(ids) <= max_tokens:
        return ids, False
    n_prefix = len(tokenizer("")["input_ids"])
    return ids[:n_prefix] + ids[len(ids) - (max_tokens - n_prefix) :], True


def pad_sequences(
    sequences: Sequence[Sequence[int]], pad_id: int, side: str = "right"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad token lists to one length: (input_ids, attention_mask), both (B, T_max)."""
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for i, s in enumerate(sequences):
        span = slice(0, len(s)) if side == "right" else slice(width - len(s), width)
        ids[i, span] = torch.tensor(s, dtype=torch.long)
        mask[i, span] = 1
    return ids, mask
