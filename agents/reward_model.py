"""Reward model: a causal LM's transformer trunk with a scalar head (InstructGPT Sec. 3.5).

The trunk is the SFT model with its unembedding removed; the head reads the hidden state of the LAST
NON-PAD token of each sequence (prompt followed by completion, the completion's EOS included when it
has one). The last non-pad position is taken from the attention mask, so left and right padding give
the same score: positions are recomputed from the mask, which keeps left padding from shifting them.

Saved layout (everything loads without pickle):
    <dir>/config.json, model.safetensors   the trunk, `save_pretrained` of a transformers base model
    <dir>/reward_head.safetensors          head `weight` (1, H) and `bias` (1,)
    <dir>/reward_config.json               `offset` and metadata
    <dir>/tokenizer*.json                  the tokenizer, when one is passed to `save_pretrained`
"""

from __future__ import annotations

import json
import os

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoModel, PreTrainedModel, PreTrainedTokenizerBase

from agents.packing import PACKING_TOLERANCE, pack, packing_error, position_ids

HEAD_FILE = "reward_head.safetensors"
CONFIG_FILE = "reward_config.json"


def last_token_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """Index of the last position whose mask is 1, for left or right padding: (B, T) -> (B,)."""
    positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)  # (T,)
    return (attention_mask.long() * positions).argmax(dim=1)


class RewardModel(nn.Module):
    """r(x, y) = w · h_last(x, y) + b + offset, where h_last is the trunk's final hidden state at the
    last non-pad token.

    `offset` is set after training so that SFT samples score 0 on average (InstructGPT Sec. 3.5
    normalises the RM so that demonstrations score 0 before RL); it cancels in the ranking loss.

    The trunk runs on packed sequences (agents/packing.py: no padding reaches it) when its packed
    forward matches its padded one, as for GPT-2 and Llama; otherwise on the padded batch.
    """

    def __init__(self, trunk: PreTrainedModel, offset: float = 0.0):
        super().__init__()
        self.trunk = trunk
        hidden = trunk.config.get_text_config().hidden_size
        self.head = nn.Linear(hidden, 1)
        nn.init.normal_(self.head.weight, std=1.0 / (hidden + 1) ** 0.5)
        nn.init.zeros_(self.head.bias)
        self.offset = float(offset)
        self.fill_id = 1 if trunk.config.pad_token_id == 0 else 0  # any token but pad fills unused packed slots
        self.packed = packing_error(trunk, self.fill_id) <= PACKING_TOLERANCE

    @classmethod
    def from_causal_lm(cls, lm: PreTrainedModel) -> "RewardModel":
        """A reward model whose trunk is `lm`'s transformer (shared modules, no unembedding)."""
        return cls(lm.base_model)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Unnormalised rewards (B,) of sequences `input_ids` (B, T) with `attention_mask` (B, T), each
        sequence's tokens one contiguous run (left or right padding)."""
        last = last_token_index(attention_mask)  # (B,)
        rows = torch.arange(input_ids.shape[0], device=input_ids.device)
        if self.packed:
            packed = pack(input_ids, attention_mask, self.fill_id)
            hidden = packed.hidden_states(self.trunk)  # (R, W, H)
            h_last = hidden[packed.rows[rows, last], packed.cols[rows, last]]  # (B, H)
        else:
            hidden = self.trunk(
                input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids(attention_mask)
            ).last_hidden_state  # (B, T, H)
            h_last = hidden[rows, last]  # (B, H)
        return self.head(h_last).squeeze(-1)  # (B,)

    def score(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Normalised rewards (B,): `forward` plus the stored offset."""
        return self(input_ids, attention_mask) + self.offset

    def save_pretrained(self, path: str, tokenizer: PreTrainedTokenizerBase | None = None, **metadata) -> None:
        """Write trunk, head, offset (and `tokenizer`, extra JSON `metadata`) to directory `path`."""
        os.makedirs(path, exist_ok=True)
        self.trunk.save_pretrained(path)
        head = {k: v.detach().cpu().contiguous() for k, v in self.head.state_dict().items()}
        save_file(head, os.path.join(path, HEAD_FILE))
        with open(os.path.join(path, CONFIG_FILE), "w") as f:
            json.dump({"offset": self.offset, "read_position": "last_non_pad", **metadata}, f, indent=2)
        if tokenizer is not None:
            tokenizer.save_pretrained(path)

    @classmethod
    def from_pretrained(cls, path: str, device: str | torch.device = "cpu") -> "RewardModel":
        """Load a reward model written by `save_pretrained` (local files only, no remote code)."""
        for name in ("config.json", HEAD_FILE, CONFIG_FILE):
            if not os.path.isfile(os.path.join(path, name)):
                raise FileNotFoundError(f"{path!r} is not a saved reward model: {name} is missing")
        trunk = AutoModel.from_pretrained(path, local_files_only=True, trust_remote_code=False, dtype=torch.float32)
        with open(os.path.join(path, CONFIG_FILE)) as f:
            meta = json.load(f)
        model = cls(trunk, offset=float(meta["offset"]))
        model.head.load_state_dict(load_file(os.path.join(path, HEAD_FILE)))
        return model.to(device).eval()
