"""PPO's update (ppo_core/algorithms.py: PPO.update) for S runs of a seed batch at once.

Every quantity a decision depends on is the run's own: advantage whitening per run and minibatch,
one loss per run (their sum has each run's gradient in its own parameters), gradient-norm clipping per
run, minibatch permutations from each run's generator, and the target-KL early stop per run, as a
mask: a run that stops sits out the remaining epochs (no step, no state change, no random draws)
while the others go on. The batch holds (S, B, ...) tensors; stats come back per run, (S,).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import torch
from torch import Tensor

from agents.base import PolicyEvaluation
from ppo_core.advantages import explained_variance, whiten
from ppo_core.batched_adam import BatchedAdam, clip_grad_norm_per_run
from ppo_core.buffer import RolloutBatch, tree_map
from ppo_core.config import PPOConfig
from ppo_core.losses import approx_kl, clipped_surrogate_loss, entropy_bonus, kl_penalty_surrogate_loss, value_loss

RUN = (1, 2)  # the dimensions of one run's (S, B, L) tensors that its means run over
Stats = dict[str, Tensor]


class StackedPolicy(Protocol):
    """What the batched updates need of the stacked policies (agents/stacked_mlp.py)."""

    actor_names: list[str]
    critic_names: list[str]

    def evaluate(self, obs: Tensor, action: Tensor) -> PolicyEvaluation: ...

    def decision_values(self, obs: Tensor, action: Tensor) -> Tensor: ...

    def actor_head(self, obs: Tensor) -> Tensor: ...

    def actor_linearization(self, obs: Tensor) -> Callable[[Tensor], Tensor]: ...

    def leaves_of(self, names: Sequence[str] | None = None) -> list[Tensor]: ...

    def size_of(self, names: Sequence[str] | None = None) -> int: ...

    def flat(self, tensors: Sequence[Tensor]) -> Tensor: ...

    def add_(self, update: Tensor, names: Sequence[str] | None = None) -> None: ...


def gradient_step(policy: StackedPolicy, optimizer: BatchedAdam, loss: Tensor, lr: float, max_grad_norm: float,
                  names: Sequence[str] | None = None, active: Tensor | None = None) -> Tensor:
    """Every run's gradient step on its own loss (S,) over the parameters ``names`` (None: all): its
    gradients, its norm clipped to ``max_grad_norm``, its Adam step; runs where ``active`` is False sit
    it out. Returns each run's pre-clip gradient norm (S,), as ``Algorithm.gradient_step`` does."""
    grads = torch.autograd.grad(loss.sum(), policy.leaves_of(names))  # run s's loss moves only run s
    grad_norm, grad = clip_grad_norm_per_run(policy.flat(grads), max_grad_norm)
    all_active = active is None or bool(active.all())
    policy.add_(optimizer.step(grad, lr, None if all_active else active), names)
    return grad_norm


def select(batch: RolloutBatch, indices: Tensor) -> RolloutBatch:
    """Run s's entries ``indices[s]`` (S, b) of a stacked batch (S, B, ...)."""
    rows = torch.arange(indices.shape[0], device=indices.device).unsqueeze(1)  # (S, 1)
    return RolloutBatch(*(tree_map(lambda x: x[rows, indices], field) for field in batch))


def minibatch_indices(num_runs: int, size: int, minibatch: int, generators: Sequence[torch.Generator],
                      drawing: Tensor) -> list[Tensor] | None:
    """Each run's random partition of its batch, as ``shuffled_minibatches`` draws it from the run's own
    generator: a list of (S, b) index tensors; None when one minibatch holds the whole batch. Runs where
    ``drawing`` is False draw nothing (their rows are 0..B-1, and their steps are masked)."""
    if minibatch >= size:
        return None
    perms = torch.stack([torch.randperm(size, generator=g) if draw else torch.arange(size)
                         for g, draw in zip(generators, drawing.tolist())])  # (S, B)
    return list(perms.split(minibatch, dim=1))


class RunMeter:
    """Per-run means (S,) of per-step statistics over the steps each run took."""

    def __init__(self) -> None:
        self.sums: dict[str, Tensor] = {}
        self.counts: Tensor | float = 0.0

    def add(self, stats: Stats, taken: Tensor) -> None:
        weight = taken.float()
        for key, value in stats.items():
            value = value.detach().float() * weight
            self.sums[key] = self.sums[key] + value if key in self.sums else value
        self.counts = self.counts + weight

    def means(self) -> Stats:
        counts = torch.as_tensor(self.counts).clamp(min=1)
        return {key: total / counts for key, total in self.sums.items()}


def ppo_update(policy: StackedPolicy, optimizer: BatchedAdam, batch: RolloutBatch, cfg: PPOConfig,
               lr: float, clip_eps: float, generators: Sequence[torch.Generator],
               penalty_coef: Tensor | None = None) -> Stats:
    """One PPO update of every run; ``penalty_coef`` (S,) is each run's β with surrogate=kl_penalty."""
    num_runs, size = batch.mask.shape[:2]
    minibatch = max(1, size // cfg.num_minibatches)
    clip_value = clip_eps if cfg.clip_value_loss else None
    running = torch.ones(num_runs, dtype=torch.bool)  # runs whose epochs go on
    meter = RunMeter()
    for _ in range(cfg.update_epochs):
        epoch_meter = RunMeter()
        splits = minibatch_indices(num_runs, size, minibatch, generators, running)
        for indices in [None] if splits is None else splits:
            mb = batch if indices is None else select(batch, indices)
            evaluation = policy.evaluate(mb.obs, mb.actions)
            mask = mb.mask  # (S, b, L)
            advantages = whiten(mb.advantages, mask, dim=RUN) if cfg.normalize_advantages else mb.advantages
            if cfg.surrogate == "clip":
                pg_loss, pg_stats = clipped_surrogate_loss(evaluation.log_prob, mb.log_probs, advantages, clip_eps,
                                                           mask, RUN)
            else:
                pg_loss, pg_stats = kl_penalty_surrogate_loss(evaluation.log_prob, mb.log_probs, advantages,
                                                              penalty_coef, mask, RUN)
            v_loss, _ = value_loss(evaluation.value, mb.returns, mb.values, clip_value, mask, RUN)
            entropy_loss, entropy = entropy_bonus(evaluation.entropy, cfg.ent_coef, mask, RUN)
            loss = pg_loss + cfg.vf_coef * v_loss + entropy_loss  # (S,)
            grad_norm = gradient_step(policy, optimizer, loss, lr, cfg.max_grad_norm, active=running)
            meter.add({"policy_loss": pg_loss, "value_loss": v_loss, "entropy": entropy, "loss": loss,
                       "grad_norm": grad_norm, **pg_stats}, running)
            epoch_meter.add({"approx_kl": pg_stats["approx_kl"]}, running)
        if cfg.early_stop_kl is not None:
            running = running & ~(epoch_meter.means()["approx_kl"] > cfg.early_stop_kl)
            if not bool(running.any()):
                break
    stats = meter.means()
    stats["explained_variance"] = torch.stack([explained_variance(v, r, m) for v, r, m in
                                               zip(batch.values, batch.returns, batch.mask)])
    if cfg.surrogate == "kl_penalty":
        with torch.no_grad():
            log_prob = policy.evaluate(batch.obs, batch.actions).log_prob  # (S, B, L)
            stats["kl_after_update"] = approx_kl(log_prob - batch.log_probs, batch.mask, RUN)
    return stats
