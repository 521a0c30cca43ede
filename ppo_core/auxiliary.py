"""Loss terms that an algorithm adds to its policy loss, beside the surrogate.

An objective (``objective=...``, ``ppo_core.build.OBJECTIVES``) contributes terms, e.g. the
alignment wing's KL-to-π_SFT-in-the-loss and PPO-ptx (``objective=rlhf``,
ppo_core/align/objective_terms.py). Each term
is called with the policy's evaluation of a minibatch and returns ``(loss, stats)``; ``refresh``
draws the data of the next gradient step (PPO: every minibatch, REINFORCE: every epoch, TRPO: once
per update, so its line search compares one fixed objective).
"""

from __future__ import annotations

from typing import Protocol

from torch import Tensor

from agents.base import PolicyEvaluation
from ppo_core.buffer import RolloutBatch

Stats = dict[str, Tensor]


class AuxiliaryLoss(Protocol):
    def refresh(self) -> None: ...

    def __call__(self, evaluation: PolicyEvaluation, batch: RolloutBatch) -> tuple[Tensor, Stats]: ...


def total_auxiliary_loss(
    terms: list[AuxiliaryLoss], evaluation: PolicyEvaluation, batch: RolloutBatch
) -> tuple[Tensor | float, Stats]:
    """Σ of the terms' losses (0.0 without terms) and their merged stats."""
    total: Tensor | float = 0.0
    stats: Stats = {}
    for term in terms:
        loss, term_stats = term(evaluation, batch)
        total = total + loss
        stats.update(term_stats)
    return total, stats
