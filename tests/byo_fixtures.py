"""What a user of TRL or OpenRLHF brings, in miniature: tiny random GPT-2 and Llama causal LMs and
one-label sequence classifiers saved to disk with two different byte-level tokenizers (one with a chat
template), and 20-row data files in the documented formats."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from transformers import (
    AutoModelForSequenceClassification,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
)

from ppo_core.align.tokenizer import train_tokenizer

CONTEXT = 96
WORDS = ["red", "blue", "green", "cat", "dog", "bird", "runs", "sleeps", "sings", "fast", "slow", "today"]
CHAT_TEMPLATE = ("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
                 "{% if add_generation_prompt %}assistant:{% endif %}")


def sentence(i: int, n: int) -> str:
    return " ".join(WORDS[(5 * i + 3 * j) % len(WORDS)] for j in range(n))


def prompt(i: int) -> str:
    return f"User: say {sentence(i, 1 + i % 3)}\nAssistant:"


def completion(i: int, good: bool = True) -> str:
    return " " + (sentence(i, 1 + i % 3) if good else sentence(i + 1, 4))


def corpus() -> list[str]:
    return [prompt(i) + completion(i) + completion(i, False) for i in range(60)] + [
        "user: assistant: system:" for _ in range(3)]


def make_tokenizer(vocab_size: int, chat: bool = False):
    tokenizer = train_tokenizer(corpus(), vocab_size, min_frequency=1)
    if chat:
        tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def gpt2(vocab: int, seed: int) -> GPT2LMHeadModel:
    torch.manual_seed(seed)
    return GPT2LMHeadModel(GPT2Config(n_layer=2, n_head=2, n_embd=32, vocab_size=vocab, n_positions=CONTEXT,
                                      bos_token_id=1, eos_token_id=1, pad_token_id=0)).eval()


def llama(vocab: int, seed: int) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    return LlamaForCausalLM(LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                        num_attention_heads=2, num_key_value_heads=2, vocab_size=vocab,
                                        max_position_embeddings=CONTEXT, bos_token_id=1, eos_token_id=1,
                                        pad_token_id=0)).eval()


def classifier(lm, seed: int):
    """A one-label sequence classifier of ``lm``'s architecture, as TRL's reward trainer saves one."""
    config = lm.config
    config.num_labels = 1
    torch.manual_seed(seed)
    return AutoModelForSequenceClassification.from_config(config).eval()


def save(model, tokenizer, path: Path) -> Path:
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def write_models(root: Path) -> dict[str, Path]:
    """Policies (GPT-2 and Llama, the chat tokenizer) and reward classifiers: a GPT-2 one with the
    policy's tokenizer and a Llama one with a tokenizer of its own."""
    own, other = make_tokenizer(300, chat=True), make_tokenizer(360)
    assert own.get_vocab() != other.get_vocab()
    return {
        "gpt2": save(gpt2(len(own), 0), own, root / "gpt2_policy"),
        "llama": save(llama(len(own), 1), own, root / "llama_policy"),
        "rm_same": save(classifier(gpt2(len(own), 2), 3), own, root / "gpt2_rm"),
        "rm_other": save(classifier(llama(len(other), 4), 5), other, root / "llama_rm_other_vocab"),
    }


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def write_parquet(path: Path, rows: list[dict]) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def write_csv(path: Path, rows: list[dict]) -> Path:
    import csv

    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


ROWS = 20


def sft_rows(kind: str) -> list[dict]:
    if kind == "messages":
        return [{"messages": [{"role": "user", "content": f"say {sentence(i, 1 + i % 3)}"},
                              {"role": "assistant", "content": sentence(i, 1 + i % 3)}]} for i in range(ROWS)]
    return [{"prompt": prompt(i), "completion": completion(i)} for i in range(ROWS)]


def rm_rows(kind: str) -> list[dict]:
    if kind == "kwise":
        return [{"prompt": prompt(i), "completions": [completion(i, False), completion(i), completion(i + 2, False)],
                 "ranking": [1, 0, 2]} for i in range(ROWS)]
    return [{"prompt": prompt(i), "chosen": completion(i), "rejected": completion(i, False)} for i in range(ROWS)]


def prompt_rows() -> list[dict]:
    return [{"prompt": prompt(i), "topic": WORDS[(5 * i) % len(WORDS)], "level": i % 3} for i in range(ROWS)]
