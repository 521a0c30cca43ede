"""REINFORCE's update (ppo_core/algorithms.py: Reinforce.update) and the critic regression it shares
with TRPO (``Algorithm.fit_critic``), for S runs of a seed batch at once.

The actor and the critic have their own Adam each, as in the single-run algorithms, over their own
parameters of the stacked policies; whitening, clipping and minibatch permutations are each run's own.
The batch holds (S, B, ...) tensors; stats come back per run, (S,).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ppo_core.advantages import explained_variance, whiten
from ppo_core.batched_adam import BatchedAdam
from ppo_core.batched_ppo import RUN, RunMeter, StackedPolicy, gradient_step, minibatch_indices, select
from ppo_core.buffer import RolloutBatch
from ppo_core.config import ReinforceConfig
from ppo_core.losses import approx_kl, entropy_bonus, policy_gradient_loss, value_loss

Stats = dict[str, Tensor]


def fit_critic(policy: StackedPolicy, optimizer: BatchedAdam, batch: RolloutBatch, epochs: int, num_minibatches: int,
               lr: float, max_grad_norm: float, generators: Sequence[torch.Generator]) -> Stats:
    """Regress each run's V on its returns, ½(V − R)² over valid decisions, with the critic's Adam."""
    num_runs, size = batch.mask.shape[:2]
    minibatch = max(1, size // num_minibatches)
    everyone = torch.ones(num_runs, dtype=torch.bool)
    meter = RunMeter()
    for _ in range(epochs):
        splits = minibatch_indices(num_runs, size, minibatch, generators, everyone)
        for indices in [None] if splits is None else splits:
            mb = batch if indices is None else select(batch, indices)
            value = policy.decision_values(mb.obs, mb.actions)  # (S, b, L)
            loss, _ = value_loss(value, mb.returns, mask=mb.mask, dim=RUN)
            grad_norm = gradient_step(policy, optimizer, loss, lr, max_grad_norm, policy.critic_names)
            meter.add({"value_loss": loss, "vf_grad_norm": grad_norm}, everyone)
    return meter.means()


def reinforce_update(policy: StackedPolicy, actor: BatchedAdam, critic: BatchedAdam, batch: RolloutBatch,
                     cfg: ReinforceConfig, actor_lr: float, critic_lr: float,
                     generators: Sequence[torch.Generator]) -> Stats:
    """One REINFORCE update of every run: ``update_epochs`` full-batch policy-gradient steps, then the
    critic's regression."""
    num_runs = batch.mask.shape[0]
    everyone = torch.ones(num_runs, dtype=torch.bool)
    mask = batch.mask
    advantages = batch.advantages if cfg.baseline else batch.returns  # (S, B, L)
    if cfg.normalize_advantages:
        advantages = whiten(advantages, mask, dim=RUN)
    meter = RunMeter()
    for _ in range(cfg.update_epochs):
        evaluation = policy.evaluate(batch.obs, batch.actions)
        pg_loss, _ = policy_gradient_loss(evaluation.log_prob, advantages, mask, RUN)
        entropy_loss, entropy = entropy_bonus(evaluation.entropy, cfg.ent_coef, mask, RUN)
        grad_norm = gradient_step(policy, actor, pg_loss + entropy_loss, actor_lr, cfg.max_grad_norm,
                                  policy.actor_names)
        meter.add({"policy_loss": pg_loss, "entropy": entropy, "grad_norm": grad_norm}, everyone)
    with torch.no_grad():
        log_prob = policy.evaluate(batch.obs, batch.actions).log_prob
    stats = {**meter.means(), "approx_kl": approx_kl(log_prob - batch.log_probs, mask, RUN)}
    stats.update(fit_critic(policy, critic, batch, cfg.vf_iters, cfg.num_minibatches, critic_lr, cfg.max_grad_norm,
                            generators))
    stats["explained_variance"] = torch.stack([explained_variance(v, r, m) for v, r, m in
                                               zip(batch.values, batch.returns, batch.mask)])
    return stats
