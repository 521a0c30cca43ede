"""The reward model's ranking loss (InstructGPT Sec. 3.5, Eq. 1).

    loss(θ) = −1/C(K,2) · E_{(x, y_w, y_l) ~ D} [ log σ(r_θ(x, y_w) − r_θ(x, y_l)) ]

All C(K,2) comparisons from one prompt form ONE batch element: each completion is forwarded once, and
the prompt's pairs are averaged together rather than shuffled apart, which InstructGPT found both
cheaper and less prone to overfitting.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F


def ranking_pairs(ranking: list[int]) -> list[tuple[int, int]]:
    """The C(K,2) ordered (winner, loser) pairs implied by a ranking listed best to worst."""
    return [(ranking[i], ranking[j]) for i, j in itertools.combinations(range(len(ranking)), 2)]


def ranking_loss(
    rewards: torch.Tensor,
    ranking: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
    tiers: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Mean over prompts of −1/C(K_b,2) · Σ_{i ranked above j} log σ(r_i − r_j).

    rewards: (B, K) scalar rewards of each prompt's completions.
    ranking: (B, K) long, optional; ranking[b, m] is the index into rewards[b] of the m-th best
        completion. Without it, rewards are already in rank order, best first.
    mask: (B, K) bool, optional, in rank order; False marks padding slots when prompts have fewer than
        K completions (valid slots must come first). A prompt needs at least two valid completions.
    tiers: (B, K) long, optional, in rank order; completions the labeler marked as tied share a tier
        and their pairs carry no preference, so they leave the loss (and C(K,2) counts only the rest).
    Returns the loss and stats: `accuracy` (fraction of pairs with r_w > r_l, ties count half) and
    `margin` (mean r_w − r_l), both over valid pairs.
    """
    if ranking is not None:
        rewards = rewards.gather(1, ranking)  # (B, K) in rank order
    b, k = rewards.shape
    valid = torch.ones_like(rewards, dtype=torch.bool) if mask is None else mask.bool()
    upper = torch.ones(k, k, dtype=torch.bool, device=rewards.device).triu(diagonal=1)  # (K, K): i above j
    pair_mask = upper & valid[:, :, None] & valid[:, None, :]  # (B, K, K)
    if tiers is not None:
        pair_mask = pair_mask & (tiers[:, :, None] != tiers[:, None, :])
    margin = rewards[:, :, None] - rewards[:, None, :]  # (B, K, K): r_i − r_j
    n_pairs = pair_mask.sum(dim=(1, 2))  # (B,) = C(K_b, 2)
    per_prompt = -(F.logsigmoid(margin) * pair_mask).sum(dim=(1, 2)) / n_pairs.clamp(min=1)  # (B,)
    loss = per_prompt.sum() / (n_pairs > 0).sum().clamp(min=1)  # mean over prompts with a comparison
    with torch.no_grad():
        total = n_pairs.sum().clamp(min=1)
        correct = ((margin > 0).float() + 0.5 * (margin == 0).float()) * pair_mask
        stats = {"accuracy": correct.sum() / total, "margin": (margin * pair_mask).sum() / total}
    return loss, stats
