"""Stage 2: supervised fine-tuning on labeler demonstrations (InstructGPT Sec. 3.5, Appendix C.1).

Loss on completion tokens only; cosine decay to 10% of the initial learning rate with no warm-up;
residual dropout 0.2 (set when the model is loaded); the checkpoint with the lowest validation loss is
kept.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ppo_core.align.config import SFTConfig
from ppo_core.align.data import Example, collate_examples, encode_examples
from ppo_core.align.errors import AlignError
from ppo_core.align.models import context_length
from ppo_core.align.training import (
    make_optimizer,
    optimizer_step,
    shuffled_batches,
    snapshot,
    tensorboard_writer,
    token_nll,
)

log = logging.getLogger(__name__)


@dataclass
class SFTResult:
    """Summary of an SFT run."""

    out_dir: str
    steps: int
    best_step: int
    best_val_loss: float
    final_train_loss: float
    seconds: float


@torch.no_grad()
def example_length(example: Example) -> int:
    return len(example.prompt_ids) + len(example.completion_ids)


@torch.no_grad()
def completion_loss(model: PreTrainedModel, examples: Sequence[Example], pad_id: int, batch_size: int) -> float:
    """Mean per-token loss on the completion tokens of `examples` (batched by length: the sum is the same)."""
    examples = sorted(examples, key=example_length)
    model.eval()
    device = next(model.parameters()).device
    total, count = 0.0, 0
    for i in range(0, len(examples), batch_size):
        batch = {k: v.to(device) for k, v in collate_examples(examples[i : i + batch_size], pad_id).items()}
        nll, n = token_nll(model, **batch)
        total, count = total + float(nll), count + n
    model.train()
    return total / max(count, 1)


def sft(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    train_pairs: Sequence[tuple[str, str]],
    val_pairs: Sequence[tuple[str, str]],
    cfg: SFTConfig,
    out_dir: str,
    seed: int = 0,
) -> SFTResult:
    """Fine-tune `model` on (prompt text, demonstration text) pairs and save the best checkpoint.

    Each demonstration is followed by EOS so the model learns to stop. Prompts longer than
    `cfg.max_prompt_tokens` are truncated from the left, demonstrations longer than
    `cfg.max_completion_tokens` from the right (both logged).
    """
    if not train_pairs or not val_pairs:
        raise AlignError(f"SFT needs train and validation demonstrations; got {len(train_pairs)} and {len(val_pairs)}")
    if cfg.max_prompt_tokens + cfg.max_completion_tokens > context_length(model):
        raise AlignError(
            f"sft.max_prompt_tokens + sft.max_completion_tokens = {cfg.max_prompt_tokens + cfg.max_completion_tokens}"
            f" exceeds the model context {context_length(model)}"
        )
    train = encode_examples(tokenizer, train_pairs, cfg.max_prompt_tokens, cfg.max_completion_tokens)
    val = encode_examples(tokenizer, val_pairs, cfg.max_prompt_tokens, cfg.max_completion_tokens)
    pad_id, device = tokenizer.pad_token_id, next(model.parameters()).device
    steps_per_epoch = math.ceil(len(train) / cfg.batch_size)
    total_steps = cfg.epochs * steps_per_epoch
    optimizer, schedule = make_optimizer(model, cfg.lr, cfg.weight_decay, total_steps, 0, cfg.min_lr_ratio)
    writer = tensorboard_writer(out_dir)
    rng = random.Random(seed)
    best_loss, best_step, best_state = completion_loss(model, val, pad_id, 4 * cfg.batch_size), 0, snapshot(model)
    log.info("SFT: %d train / %d val demonstrations, %d steps; initial val loss %.3f",
             len(train), len(val), total_steps, best_loss)
    writer.add_scalar("val/loss", best_loss, 0)
    start, step, train_loss = time.time(), 0, math.nan
    model.train()
    for epoch in range(cfg.epochs):
        for examples, last in shuffled_batches(train, cfg.batch_size, rng, length=example_length):
            batch = collate_examples(examples, pad_id)
            nll, n = token_nll(model, **{k: v.to(device) for k, v in batch.items()})
            loss = nll / max(n, 1)
            loss.backward()
            grad_norm = optimizer_step(model, optimizer, schedule, cfg.grad_clip)
            step, train_loss = step + 1, loss.item()
            writer.add_scalar("train/loss", train_loss, step)
            writer.add_scalar("train/grad_norm", grad_norm, step)
            writer.add_scalar("charts/learning_rate", schedule.get_last_lr()[0], step)
            if step % cfg.eval_every == 0 or last:
                val_loss = completion_loss(model, val, pad_id, 4 * cfg.batch_size)
                writer.add_scalar("val/loss", val_loss, step)
                log.info("epoch %d step %d: train loss %.3f, val loss %.3f", epoch + 1, step, train_loss, val_loss)
                if val_loss < best_loss:
                    best_loss, best_step, best_state = val_loss, step, snapshot(model)
    writer.close()
    model.load_state_dict(best_state)
    model.eval()
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    log.info("SFT kept step %d (val loss %.3f)", best_step, best_loss)
    return SFTResult(out_dir, step, best_step, best_loss, train_loss, time.time() - start)
