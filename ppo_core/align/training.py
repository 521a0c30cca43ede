"""Shared pieces of the supervised training loops: seeding, device, optimizer, schedule, logging."""

from __future__ import annotations

import math
import os
import random
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

import torch
from torch.utils.tensorboard import SummaryWriter

T = TypeVar("T")


def shuffled_batches(
    items: Sequence[T],
    batch_size: int,
    rng: random.Random,
    length: Callable[[T], int] | None = None,
    group: int = 32,
) -> Iterator[tuple[list[T], bool]]:
    """One epoch of shuffled batches, each with a flag that says whether it is the epoch's last.

    With `length`, batches hold items of similar length (as transformers' `group_by_length`): the
    shuffled items are cut into runs of `group` batches, each run is sorted by length and cut into
    batches, and the batches are shuffled. Padding to the longest item of a batch then wastes little,
    while batches stay random draws from the data.
    """
    order = list(range(len(items)))
    rng.shuffle(order)
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    if length is not None:
        run = group * batch_size
        batches = []
        for start in range(0, len(order), run):
            chunk = sorted(order[start : start + run], key=lambda j: length(items[j]))
            batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
        rng.shuffle(batches)
    for n, batch in enumerate(batches):
        yield [items[j] for j in batch], n == len(batches) - 1


def cosine_lr(step: int, total_steps: int, warmup_steps: int = 0, min_ratio: float = 0.1) -> float:
    """Learning-rate multiplier: linear warm-up, then cosine decay from 1 to `min_ratio` at `total_steps`.

    SFT and the reward model use no warm-up and `min_ratio=0.1` (InstructGPT Appendix C.1, C.2).
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def make_optimizer(
    model: torch.nn.Module, lr: float, weight_decay: float, total_steps: int, warmup_steps: int, min_ratio: float
) -> tuple[torch.optim.AdamW, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW with weight decay on matrices only, and the `cosine_lr` schedule."""
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=lr,
        betas=(0.9, 0.95),
    )
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: cosine_lr(s, total_steps, warmup_steps, min_ratio)
    )
    return optimizer, schedule


def optimizer_step(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    schedule: torch.optim.lr_scheduler.LRScheduler,
    grad_clip: float,
) -> float:
    """Clip (when `grad_clip > 0`), step, advance the schedule, zero grads; returns the gradient norm."""
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip if grad_clip > 0 else float("inf"))
    optimizer.step()
    schedule.step()
    optimizer.zero_grad(set_to_none=True)
    return float(norm)


def tensorboard_writer(out_dir: str) -> SummaryWriter:
    """A TensorBoard writer logging under `<out_dir>/tb`."""
    return SummaryWriter(os.path.join(out_dir, "tb"))


def snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A detached CPU copy of `model`'s state, for keeping the best checkpoint in memory."""
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def token_nll(model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
              labels: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Summed next-token negative log-likelihood over labelled positions, and their count.

    `labels` (B, T) marks positions to predict (`-100` elsewhere); position t is predicted from
    tokens < t.
    """
    logits = model(input_ids=input_ids, attention_mask=attention_mask).logits  # (B, T, V)
    targets = labels[:, 1:]  # (B, T-1)
    nll = torch.nn.functional.cross_entropy(
        logits[:, :-1].flatten(0, 1).float(), targets.flatten(), ignore_index=-100, reduction="sum"
    )
    return nll, int((targets != -100).sum())
