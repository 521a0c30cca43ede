"""Reward model: a transformer trunk with a scalar head (InstructGPT Sec. 3.5), held as a Hugging Face
``AutoModelForSequenceClassification`` with one label, the format TRL and OpenRLHF train and read.

The head reads the hidden state of the LAST NON-PAD token of each sequence (prompt followed by
completion, the completion's EOS included when it has one). The last non-pad position is taken from the
attention mask, so left and right padding give the same score: positions are recomputed from the mask,
which keeps left padding from shifting them. On a right-padded batch this is exactly the classifier's own
``.logits`` (which reads the rightmost non-pad token at positions 0, 1, ...); a classifier whose pad
token is its EOS is read, as transformers reads it, at the last token before the EOS.

Saved layout (everything loads without pickle):
    <dir>/config.json, model.safetensors   ``save_pretrained`` of the classifier (``num_labels=1``):
                                           ``AutoModelForSequenceClassification.from_pretrained(dir)``
                                           loads it and its ``.logits`` are ``forward``'s rewards
    <dir>/reward_config.json               ``offset`` (added by ``score``), ``scale`` (multiplied after it)
                                           and metadata
    <dir>/tokenizer*.json                  the tokenizer, when one is passed to ``save_pretrained``
A directory of the earlier layout (a base model's ``save_pretrained`` with ``reward_head.safetensors``)
still loads: its head bias joins the offset, so ``score`` is unchanged.
"""

from __future__ import annotations

import json
import os

import torch
from safetensors.torch import load_file
from torch import nn
from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification, PreTrainedModel
from transformers import PreTrainedTokenizerBase
from transformers.utils import logging as hf_logging

from agents.packing import PACKING_TOLERANCE, pack, packing_error, position_ids

CONFIG_FILE = "reward_config.json"
LEGACY_HEAD_FILE = "reward_head.safetensors"
"""The head of the earlier layout, beside a trunk saved as a base model."""


def last_token_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """Index of the last position whose mask is 1, for left or right padding: (B, T) -> (B,)."""
    positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)  # (T,)
    return (attention_mask.long() * positions).argmax(dim=1)


def scalar_classifier(config) -> PreTrainedModel:
    """A randomly initialised one-label ``AutoModelForSequenceClassification`` of ``config``'s architecture."""
    config.num_labels = 1
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the "newly initialised score" notice: the head is trained next
    try:
        return AutoModelForSequenceClassification.from_config(config)
    finally:
        hf_logging.set_verbosity(verbosity)


class RewardModel(nn.Module):
    """r(x, y) = scale · (w · h_last(x, y) + offset), where h_last is the trunk's final hidden state at the
    last non-pad token and w the classifier's ``score`` head.

    `offset` is set after training so that SFT samples score 0 on average (InstructGPT Sec. 3.5
    normalises the RM so that demonstrations score 0 before RL); it cancels in the ranking loss, and it
    lives beside the classifier (``reward_config.json``) because a one-label classifier's head has no bias.
    `scale` (1 unless the RM stage was asked for unit spread) makes those samples' scores' standard
    deviation 1, so that the KL coefficient β weighs the KL against the same spread of reward for any
    reward model.

    The trunk runs on packed sequences (agents/packing.py: no padding reaches it) when its packed
    forward matches its padded one, as for GPT-2 and Llama; otherwise on the padded batch.
    """

    def __init__(self, classifier: PreTrainedModel, offset: float = 0.0, scale: float = 1.0):
        super().__init__()
        if getattr(classifier.config, "num_labels", None) != 1:
            raise ValueError(f"a reward model has one label; this {type(classifier).__name__} has "
                             f"num_labels={classifier.config.num_labels}")
        if not isinstance(getattr(classifier, "score", None), nn.Linear):
            raise ValueError(f"{type(classifier).__name__} has no linear `score` head on its last token; a reward "
                             "model here is a decoder's *ForSequenceClassification (GPT-2, Llama, Qwen2, Mistral, ...)")
        self.classifier = classifier
        self.offset = float(offset)
        self.scale = float(scale)
        pad, eos = classifier.config.pad_token_id, classifier.config.eos_token_id
        # a classifier that pads with its EOS (TRL's usual GPT-2 and Llama set-up) is read, as transformers
        # reads it, at the last token that is not EOS
        self.pad_token_id = pad if pad is not None and pad == eos else None
        self.fill_id = 1 if pad == 0 else 0  # any token but pad fills unused packed slots
        self.packed = packing_error(self.trunk, self.fill_id) <= PACKING_TOLERANCE

    @property
    def trunk(self) -> nn.Module:
        """The transformer without its head (shared with the classifier, not a copy)."""
        return self.classifier.base_model

    @property
    def head(self) -> nn.Linear:
        return self.classifier.score

    @classmethod
    def from_causal_lm(cls, lm: PreTrainedModel) -> "RewardModel":
        """A reward model whose trunk is `lm`'s transformer (the same modules, no unembedding) and whose
        head is new, drawn with std 1/sqrt(H + 1)."""
        classifier = scalar_classifier(lm.config.__class__.from_dict(lm.config.to_dict()))
        setattr(classifier, classifier.base_model_prefix, lm.base_model)
        hidden = classifier.score.in_features
        nn.init.normal_(classifier.score.weight, std=1.0 / (hidden + 1) ** 0.5)
        return cls(classifier.to(device=lm.device, dtype=lm.dtype))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Unnormalised rewards (B,) of sequences `input_ids` (B, T) with `attention_mask` (B, T), each
        sequence's tokens one contiguous run (left or right padding)."""
        read = attention_mask if self.pad_token_id is None else attention_mask.bool() & (input_ids != self.pad_token_id)
        last = last_token_index(read)  # (B,)
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
        """Normalised rewards (B,): `forward` plus the stored offset, times the stored scale."""
        shifted = self(input_ids, attention_mask) + self.offset
        return shifted if self.scale == 1.0 else shifted * self.scale

    def save_pretrained(self, path: str, tokenizer: PreTrainedTokenizerBase | None = None, **metadata) -> None:
        """Write the classifier, the offset (and `tokenizer`, extra JSON `metadata`) to directory `path`."""
        os.makedirs(path, exist_ok=True)
        if tokenizer is not None:
            self.classifier.config.pad_token_id = tokenizer.pad_token_id  # the classifier finds the last token by it
        self.classifier.save_pretrained(path)
        with open(os.path.join(path, CONFIG_FILE), "w") as f:
            json.dump({"offset": self.offset, "scale": self.scale, "read_position": "last_non_pad", **metadata}, f,
                      indent=2)
        if tokenizer is not None:
            tokenizer.save_pretrained(path)

    @classmethod
    def from_pretrained(cls, path: str, device: str | torch.device = "cpu") -> "RewardModel":
        """Load a one-label sequence classifier (ours, TRL's, OpenRLHF's; offset 0 and scale 1 unless
        ``reward_config.json`` gives them) or the earlier trunk + head layout. Local files only, no
        remote code; a ValueError says what the directory holds instead."""
        if not os.path.isfile(os.path.join(path, "config.json")):
            raise FileNotFoundError(f"{path!r} is not a saved model: config.json is missing")
        offset, scale = 0.0, 1.0
        if os.path.isfile(os.path.join(path, CONFIG_FILE)):
            with open(os.path.join(path, CONFIG_FILE)) as f:
                saved = json.load(f)
            offset, scale = float(saved["offset"]), float(saved.get("scale", 1.0))
        if os.path.isfile(os.path.join(path, LEGACY_HEAD_FILE)):
            rm = cls._from_legacy(path, offset)
            rm.scale = scale
            return rm.to(device).eval()
        config = AutoConfig.from_pretrained(path, local_files_only=True, trust_remote_code=False)
        architectures = getattr(config, "architectures", None) or []
        if not any(name.endswith("ForSequenceClassification") for name in architectures):
            raise ValueError(f"{path!r} holds a {', '.join(architectures) or config.model_type} model, not a reward "
                             "model: expected an AutoModelForSequenceClassification with num_labels=1 (or "
                             f"{LEGACY_HEAD_FILE} beside a trunk)")
        if config.num_labels != 1:
            raise ValueError(f"{path!r} is a classifier with num_labels={config.num_labels}; a reward model has one")
        classifier = AutoModelForSequenceClassification.from_pretrained(
            path, local_files_only=True, trust_remote_code=False, dtype=torch.float32)
        return cls(classifier, offset, scale).to(device).eval()

    @classmethod
    def _from_legacy(cls, path: str, offset: float) -> "RewardModel":
        """The trunk + ``reward_head.safetensors`` layout: its head bias folds into the offset."""
        trunk = AutoModel.from_pretrained(path, local_files_only=True, trust_remote_code=False, dtype=torch.float32)
        classifier = scalar_classifier(trunk.config.__class__.from_dict(trunk.config.to_dict()))
        setattr(classifier, classifier.base_model_prefix, trunk)
        head = load_file(os.path.join(path, LEGACY_HEAD_FILE))
        with torch.no_grad():
            classifier.score.weight.copy_(head["weight"])
        return cls(classifier, offset + float(head.get("bias", torch.zeros(1))[0]))
