"""Batched sampling from a causal LM with left padding and the KV cache."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ppo_core.align.data import pad_sequences


def strip_after_eos(ids: Sequence[int], eos_id: int) -> list[int]:
    """Tokens up to and including the first EOS (all of them when there is none)."""
    ids = list(ids)
    return ids[: ids.index(eos_id) + 1] if eos_id in ids else ids


@torch.no_grad()
def generate_completions(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[Sequence[int]],
    num_samples: int = 1,
    max_new_tokens: int = 28,
    temperature: float = 1.0,
    batch_size: int = 64,
) -> list[list[list[int]]]:
    """Completion token ids, `num_samples` per prompt: result[i][j] is sample j of prompt i.

    `temperature=0` decodes greedily; otherwise sampling is pure ancestral sampling at `temperature`
    (top-k and top-p off). Each completion stops after its first EOS, which it keeps.
    """
    model.eval()
    device = next(model.parameters()).device
    flat = [list(p) for p in prompts for _ in range(num_samples)]
    sampling = dict(do_sample=True, temperature=temperature, top_k=0, top_p=1.0) if temperature > 0 else dict(do_sample=False)
    out: list[list[int]] = []
    for i in range(0, len(flat), batch_size):
        ids, mask = pad_sequences(flat[i : i + batch_size], tokenizer.pad_token_id, side="left")  # (B, T)
        seqs = model.generate(
            input_ids=ids.to(device),
            attention_mask=mask.to(device),
            max_new_tokens=max_new_tokens,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
            **sampling,
        )  # (B, T + new)
        out.extend(strip_after_eos(row, tokenizer.eos_token_id) for row in seqs[:, ids.shape[1] :].tolist())
    return [out[i * num_samples : (i + 1) * num_samples] for i in range(len(prompts))]

