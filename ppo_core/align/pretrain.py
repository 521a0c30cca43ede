"""Stage 1: causal-LM pretraining on plain completion-style text (the GPT-3 analogue).

Documents are packed into fixed-length blocks separated by EOS; AdamW with linear warm-up and cosine
decay; validation loss on held-out documents.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ppo_core.align.config import PretrainConfig
from ppo_core.align.data import pack_blocks
from ppo_core.align.errors import AlignError
from ppo_core.align.models import context_length
from ppo_core.align.training import make_optimizer, optimizer_step, tensorboard_writer, token_nll

log = logging.getLogger(__name__)


@dataclass
class PretrainResult:
    """Summary of a pretraining run."""

    out_dir: str
    steps: int
    train_loss: float
    val_loss: float
    train_tokens: int
    seconds: float


@torch.no_grad()
def block_loss(model: PreTrainedModel, blocks: torch.Tensor, batch_size: int) -> float:
    """Mean next-token loss over packed `blocks` (N, T)."""
    model.eval()
    total, count = 0.0, 0
    device = next(model.parameters()).device
    for i in range(0, len(blocks), batch_size):
        x = blocks[i : i + batch_size].to(device)
        nll, n = token_nll(model, x, torch.ones_like(x), x)
        total, count = total + float(nll), count + n
    model.train()
    return total / max(count, 1)


def split_documents(texts: Sequence[str], val_fraction: float) -> tuple[list[str], list[str]]:
    """Hold out the last `val_fraction` of documents (at least one) for validation."""
    if len(texts) < 2:
        raise AlignError(f"pretraining corpus has {len(texts)} documents; need at least 2")
    n_val = min(len(texts) - 1, max(1, round(len(texts) * val_fraction)))
    return list(texts[:-n_val]), list(texts[-n_val:])


def pretrain(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    cfg: PretrainConfig,
    out_dir: str,
) -> PretrainResult:
    """Train `model` on `texts` for `cfg.steps` steps and save model + tokenizer to `out_dir`."""
    if cfg.steps < 1:
        raise AlignError(f"pretrain.steps={cfg.steps}; need at least 1")
    if cfg.block_size > context_length(model):
        raise AlignError(f"pretrain.block_size={cfg.block_size} exceeds the model context {context_length(model)}")
    train_texts, val_texts = split_documents(texts, cfg.val_fraction)
    train_blocks = pack_blocks(tokenizer, train_texts, cfg.block_size)  # (N, T)
    val_blocks = pack_blocks(tokenizer, val_texts, cfg.block_size)  # (N_val, T)
    device = next(model.parameters()).device
    optimizer, schedule = make_optimizer(
        model, cfg.lr, cfg.weight_decay, cfg.steps, cfg.warmup_steps, cfg.min_lr_ratio
    )
    writer = tensorboard_writer(out_dir)
    log.info("pretraining on %d blocks x %d tokens for %d steps", len(train_blocks), cfg.block_size, cfg.steps)
    model.train()
    start, order, cursor = time.time(), torch.randperm(len(train_blocks)), 0
    train_loss = val_loss = math.nan
    for step in range(cfg.steps):
        if cursor + cfg.batch_size > len(order):
            order, cursor = torch.randperm(len(train_blocks)), 0
        x = train_blocks[order[cursor : cursor + cfg.batch_size]].to(device)  # (B, T)
        cursor += cfg.batch_size
        nll, n = token_nll(model, x, torch.ones_like(x), x)
        loss = nll / n
        loss.backward()
        grad_norm = optimizer_step(model, optimizer, schedule, cfg.grad_clip)
        train_loss = loss.item()
        writer.add_scalar("train/loss", train_loss, step)
        writer.add_scalar("train/grad_norm", grad_norm, step)
        writer.add_scalar("charts/learning_rate", schedule.get_last_lr()[0], step)
        if (step + 1) % cfg.eval_every == 0 or step + 1 == cfg.steps:
            val_loss = block_loss(model, val_blocks, 4 * cfg.batch_size)
            writer.add_scalar("val/loss", val_loss, step)
            log.info("step %d: train loss %.3f, val loss %.3f", step + 1, train_loss, val_loss)
    writer.close()
    model.eval()
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return PretrainResult(
        out_dir, cfg.steps, train_loss, val_loss, cfg.steps * cfg.batch_size * cfg.block_size, time.time() - start
    )
