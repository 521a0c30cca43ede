"""Tiny language-model artifacts for the text tests: a 100-token word-level tokenizer, random GPT-2s
(hidden 32, 2 layers) and a reward model, saved in the Hugging Face layout the align stages write."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

from agents.reward_model import RewardModel

PAD, EOS, UNK = 0, 1, 2
VOCAB = 100
CONTEXT = 32


def make_tokenizer() -> PreTrainedTokenizerFast:
    vocab = {"<|pad|>": PAD, "<|endoftext|>": EOS, "<unk>": UNK, **{f"w{i}": i for i in range(3, VOCAB)}}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=core, eos_token="<|endoftext|>", pad_token="<|pad|>",
                                   unk_token="<unk>", padding_side="left")


def make_lm(seed: int = 0, pad: int = PAD) -> GPT2LMHeadModel:
    torch.manual_seed(seed)
    config = GPT2Config(n_layer=2, n_head=2, n_embd=32, vocab_size=VOCAB, n_positions=CONTEXT,
                        bos_token_id=EOS, eos_token_id=EOS, pad_token_id=pad)
    return GPT2LMHeadModel(config).eval()


def prompt_text(i: int, words: int) -> str:
    return " ".join(f"w{3 + (7 * i + j) % 40}" for j in range(words))  # ids 3..42 only


def write_prompts(path: Path, count: int = 12) -> Path:
    path.write_text("".join(json.dumps({"prompt": prompt_text(i, 2 + i % 5)}) + "\n" for i in range(count)))
    return path


def write_artifacts(root: Path) -> Path:
    """``<root>/sft`` (policy and reference), ``<root>/rm`` and ``<root>/prompts.jsonl``."""
    tokenizer = make_tokenizer()
    make_lm(0).save_pretrained(root / "sft")
    tokenizer.save_pretrained(root / "sft")
    RewardModel.from_causal_lm(make_lm(1)).save_pretrained(str(root / "rm"), tokenizer)
    write_prompts(root / "prompts.jsonl")
    return root
