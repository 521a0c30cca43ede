"""Policy and value losses. Each takes per-decision tensors (B, L) with an optional mask and
returns ``(loss, stats)``; means run over valid decisions only, so an action of many decisions and a
single CartPole action go through the same code. ``dim`` keeps leading dimensions apart: the
stacked runs of a seed batch (S, B, L) take ``dim=(1, 2)`` and get one loss per run (S,).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ppo_core.kl import k3
from ppo_core.masked import Dim, masked_mean

Stats = dict[str, Tensor]


def approx_kl(log_ratio: Tensor, mask: Tensor | None = None, dim: Dim = None) -> Tensor:
    """KL(π_old‖π_new) estimated as E[(r − 1) − log r] over rollout actions (k3: unbiased, ≥ 0)."""
    return masked_mean(k3(torch.zeros_like(log_ratio), log_ratio), mask, dim)


def clipped_surrogate_loss(
    log_prob: Tensor,  # (B, L) under the current policy
    old_log_prob: Tensor,  # (B, L) at rollout time
    advantages: Tensor,  # (B, L)
    clip_eps: float,
    mask: Tensor | None = None,
    dim: Dim = None,
) -> tuple[Tensor, Stats]:
    """PPO's clipped objective L^CLIP (Schulman et al. 2017, eq. 7), negated for minimisation."""
    log_ratio = log_prob - old_log_prob
    ratio = log_ratio.exp()
    unclipped = -advantages * ratio
    clipped = -advantages * ratio.clamp(1.0 - clip_eps, 1.0 + clip_eps)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask, dim)
    with torch.no_grad():
        stats = {
            "approx_kl": approx_kl(log_ratio, mask, dim),
            "clipfrac": masked_mean(((ratio - 1.0).abs() > clip_eps).to(ratio.dtype), mask, dim),
            "ratio": masked_mean(ratio, mask, dim),
        }
    return loss, stats


def kl_penalty_surrogate_loss(
    log_prob: Tensor,
    old_log_prob: Tensor,
    advantages: Tensor,
    penalty_coef: float | Tensor,
    mask: Tensor | None = None,
    dim: Dim = None,
) -> tuple[Tensor, Stats]:
    """PPO's adaptive-KL objective (Schulman et al. 2017, eq. 8): −(r·A − β·KL(π_old‖π)), β = ``penalty_coef``.

    The KL is the sample estimate E_old[(r − 1) − log r] over the rollout's own actions, the
    direction the PPO paper penalises.
    """
    log_ratio = log_prob - old_log_prob
    ratio = log_ratio.exp()
    kl = approx_kl(log_ratio, mask, dim)
    loss = masked_mean(-advantages * ratio, mask, dim) + penalty_coef * kl
    with torch.no_grad():
        stats = {"approx_kl": kl.detach(), "ratio": masked_mean(ratio, mask, dim)}
    return loss, stats


def policy_gradient_loss(
    log_prob: Tensor, advantages: Tensor, mask: Tensor | None = None, dim: Dim = None
) -> tuple[Tensor, Stats]:
    """REINFORCE (Williams 1992): −E[log π(a|s) · A], with A a return or a return minus a baseline."""
    loss = -masked_mean(log_prob * advantages, mask, dim)
    return loss, {}


def entropy_bonus(entropy: Tensor, ent_coef: float, mask: Tensor | None = None, dim: Dim = None
                  ) -> tuple[Tensor, Tensor]:
    """PPO's entropy term (Schulman et al. 2017, eq. 9: + c₂·S[π_θ]) as a loss to add: −c₂·H̄, with H̄
    the mean entropy (B, L) over valid decisions; returns (loss term, H̄)."""
    mean_entropy = masked_mean(entropy, mask, dim)
    return -(ent_coef * mean_entropy), mean_entropy


def value_loss(
    values: Tensor,  # (B, L) current critic
    returns: Tensor,  # (B, L) targets
    old_values: Tensor | None = None,  # (B, L) critic at rollout time, for clipping
    clip_eps: float | None = None,
    mask: Tensor | None = None,
    dim: Dim = None,
) -> tuple[Tensor, Stats]:
    """½·(V − R)², optionally clipped around the rollout-time value as in the PPO2 baselines."""
    squared_error = (values - returns) ** 2
    if clip_eps is not None and old_values is not None:
        clipped_values = old_values + (values - old_values).clamp(-clip_eps, clip_eps)
        squared_error = torch.maximum(squared_error, (clipped_values - returns) ** 2)
    loss = 0.5 * masked_mean(squared_error, mask, dim)
    return loss, {}
