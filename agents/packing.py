"""Padding-free forwards: the sequences of a batch laid end to end in a few rows.

Prompts arrive left-padded to the longest of their set and completions right-padded after EOS, so
when prompt lengths vary most of a batch is padding: in the embedded world 85% of the training
prompts have 10-30 tokens and 13% have 40-62 (a passage to answer from), so a batch scored at its
longest row spends most of its matrix products on pad columns. Packing moves each sequence's real
tokens into rows as long as the batch's longest sequence (first-fit decreasing), with position ids
that restart at 0 for every sequence. Transformers reads the restarts as packed sequences and gives
each one its own causal block of the attention mask (``masking_utils.find_packed_sequence_indices``;
needs ``attention_mask=None`` and no KV cache), so no token sees another sequence and every output is
the same function of the same tokens as in the padded batch, up to float summation order (~1e-6).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

PACKING_TOLERANCE = 1e-3  # largest difference between a packed and a padded forward that counts as the same function


def position_ids(attention_mask: Tensor) -> Tensor:
    """Positions counted over real tokens only, so left padding does not shift them: (B, T)."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


class Packed(NamedTuple):
    """A packed batch, and where each kept column of the padded batch went."""

    input_ids: Tensor  # (R, W)
    position_ids: Tensor  # (R, W): 0, 1, ... within each sequence; 0 in unused slots
    rows: Tensor  # (N, T) row of each column of the padded batch; 0 where it was not kept
    cols: Tensor  # (N, T) its column in that row; 0 where it was not kept

    def hidden_states(self, trunk: nn.Module) -> Tensor:
        """Final hidden states of a transformers base model on the packed rows: (R, W, H). The mask
        must be None (and no KV cache) for transformers to read the packed position ids."""
        return trunk(input_ids=self.input_ids, position_ids=self.position_ids, attention_mask=None,
                     use_cache=False).last_hidden_state

    def unpack(self, hidden: Tensor, columns: slice = slice(None)) -> Tensor:
        """Per-token outputs of the packed forward (R, W, ...) back at ``columns`` of the padded batch:
        (N, T', ...). Columns that were not kept read an arbitrary packed position."""
        return hidden[self.rows[:, columns], self.cols[:, columns]]


def first_fit_decreasing(lengths: list[int], capacity: int) -> tuple[list[int], list[int]]:
    """Row and offset of each sequence when the longest are placed first, each in the first row with
    room: at most 11/9 of the optimal row count plus 6/9 (Johnson 1973; Dósa 2007 for the constant)."""
    rows, offsets, free = [0] * len(lengths), [0] * len(lengths), []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        row = next((r for r, room in enumerate(free) if room >= lengths[i]), len(free))
        if row == len(free):
            free.append(capacity)
        rows[i], offsets[i] = row, capacity - free[row]
        free[row] -= lengths[i]
    return rows, offsets


def pack(input_ids: Tensor, keep: Tensor, fill_id: int, required_column: int | None = None) -> Packed:
    """Pack the kept tokens of each row of ``input_ids`` (N, T); ``keep`` (N, T) must be one contiguous
    run per row (a left-padded prompt followed by a right-padded completion is) that includes
    ``required_column`` when one is given. Unused slots hold ``fill_id`` at position 0, each a one-token
    sequence of its own. Reads the lengths on the host once; boolean indexing syncs a few times more."""
    keep = keep.bool()
    n, t = keep.shape
    columns = torch.arange(t, device=keep.device)  # (T,)
    lengths, starts = keep.sum(1), keep.long().argmax(1)  # (N,)
    contiguous = (columns >= starts[:, None]) & (columns < (starts + lengths)[:, None])  # (N, T)
    missing = ~keep[:, required_column] if required_column is not None else keep.new_zeros(n)  # (N,)
    flags = torch.stack([(contiguous != keep).any(), missing.any()]).long()
    *host_lengths, broken, lacks = torch.cat([lengths, flags]).tolist()
    if broken:
        raise ValueError("pack needs the kept tokens of each row in one contiguous run (left-padded prompt, "
                         "right-padded completion)")
    if lacks:
        rows_without = missing.nonzero().flatten().tolist()
        raise ValueError(f"pack needs column {required_column} in every row; rows {rows_without} lack it (an empty "
                         "prompt has no token to predict the completion's first from)")
    width = max(max(host_lengths), 1)
    rows, offsets = first_fit_decreasing(host_lengths, width)
    row = torch.tensor(rows, device=keep.device)[:, None].expand(n, t)  # (N, T)
    position = columns - starts[:, None]  # (N, T): position of each column within its sequence
    col = torch.tensor(offsets, device=keep.device)[:, None] + position  # (N, T)
    packed_ids = input_ids.new_full((max(rows) + 1, width), fill_id)  # (R, W)
    packed_positions = torch.zeros_like(packed_ids)
    packed_ids[row[keep], col[keep]] = input_ids[keep]
    packed_positions[row[keep], col[keep]] = position[keep]
    return Packed(packed_ids, packed_positions, torch.where(keep, row, 0), torch.where(keep, col, 0))


def packing_error(trunk: nn.Module, fill_id: int) -> float:
    """Largest |difference| between the final hidden states of a packed and a padded forward of
    ``trunk`` (a transformers base model) on three short sequences, two of which share a packed row:
    float rounding when its attention reads packed position ids, large when the two see each other."""
    device, vocab = next(trunk.parameters()).device, trunk.config.get_text_config().vocab_size
    ids = torch.tensor([[2, 3, 4, 5], [6, 7, 0, 0], [8, 9, 0, 0]], device=device) % vocab
    keep = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [1, 1, 0, 0]], device=device)
    training = trunk.training
    trunk.eval()
    with torch.no_grad():
        padded = trunk(input_ids=ids, attention_mask=keep, position_ids=position_ids(keep),
                       use_cache=False).last_hidden_state
        packed = pack(ids, keep, fill_id)
        hidden = packed.hidden_states(trunk)
    trunk.train(training)
    kept = keep.bool()
    return (packed.unpack(hidden)[kept] - padded[kept]).abs().max().item()
