"""Loss terms that an algorithm adds to its policy loss, beside the surrogate.

InstructGPT's objective (Ouyang et al. 2022, eq. 2) is

    E_(x,y)~π [r(x, y) − β log(π(y|x) / π_SFT(y|x))] + γ E_x~D_pretrain [log π(x)].

The trainer puts the first term in the env's reward. ``ReferenceKLLoss`` moves the KL out of the
reward into the loss (outside the importance ratio, as GRPO does), and ``PretrainingLoss`` is the
γ-term of PPO-ptx. Each term is called with the policy's evaluation of a minibatch and returns
``(loss, stats)``; ``refresh`` draws the data of the next gradient step (PPO: every minibatch,
REINFORCE: every epoch, TRPO: once per update, so its line search compares one fixed objective).
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor, nn

from agents.base import PolicyEvaluation
from ppo_core.buffer import RolloutBatch
from ppo_core.kl import check_kl_treatment, masked_mean, token_kl

Stats = dict[str, Tensor]


class AuxiliaryLoss(Protocol):
    def refresh(self) -> None: ...

    def __call__(self, evaluation: PolicyEvaluation, batch: RolloutBatch) -> tuple[Tensor, Stats]: ...


class ReferenceKLLoss:
    """β · mean over valid decisions of the per-decision KL between π_θ and a frozen reference.

    The env supplies, per rollout step, ``extras["ref_log_prob"]`` (B, L) (log π_ref of the sampled
    decisions), ``extras["kl_coef"]`` (B,) (β when the step was taken, so an adaptive β applies) and,
    for the exact KL, ``extras["ref_log_probs"]`` (B, L, V). Only estimators whose expected gradient is
    the chosen direction's gradient are accepted (``ppo_core.kl.LOSS_ESTIMATORS``).
    """

    def __init__(self, estimator: str, direction: str):
        try:
            check_kl_treatment(estimator, direction, "loss")
        except ValueError as error:
            raise ValueError(f"KL in the loss: {error}") from None
        self.estimator, self.direction = estimator, direction

    def refresh(self) -> None:
        pass

    def __call__(self, evaluation: PolicyEvaluation, batch: RolloutBatch) -> tuple[Tensor, Stats]:
        extras = batch.extras
        full = evaluation.distribution.log_probs if self.estimator == "exact" else None  # (B, L, V)
        kl = token_kl(evaluation.log_prob, extras["ref_log_prob"], self.estimator, self.direction, full,
                      extras.get("ref_log_probs"))  # (B, L)
        loss = masked_mean(extras["kl_coef"].unsqueeze(-1) * kl, batch.mask)
        return loss, {"ref_kl": masked_mean(kl, batch.mask).detach(), "ref_kl_loss": loss.detach()}


class PretrainingLoss:
    """PPO-ptx: γ · mean next-token NLL of pretraining blocks under the policy's language model, i.e.
    −γ E_pretrain[log π(x)] per token. Blocks are drawn with the global torch RNG (saved in
    checkpoints, so a resumed run draws the same ones)."""

    def __init__(self, model: nn.Module, blocks: Tensor, coef: float, batch_size: int):
        if coef <= 0 or batch_size < 1 or blocks.ndim != 2 or len(blocks) == 0:
            raise ValueError(f"PPO-ptx needs coef > 0 (got {coef}), batch_size >= 1 (got {batch_size}) and a "
                             f"non-empty (M, T) tensor of pretraining blocks (got shape {tuple(blocks.shape)})")
        self.model, self.coef, self.batch_size = model, float(coef), int(batch_size)
        self.blocks = blocks.to(next(model.parameters()).device)  # (M, T)
        self.batch = self.blocks[:0]

    def refresh(self) -> None:
        picked = torch.randint(len(self.blocks), (self.batch_size,), device=self.blocks.device)
        self.batch = self.blocks[picked]  # (b, T)

    def nll(self, blocks: Tensor) -> Tensor:
        """Mean next-token negative log-likelihood of ``blocks`` (b, T)."""
        logits = self.model(input_ids=blocks, use_cache=False).logits[:, :-1]  # (b, T − 1, V)
        return nn.functional.cross_entropy(logits.flatten(0, 1).float(), blocks[:, 1:].flatten())

    def __call__(self, evaluation: PolicyEvaluation, batch: RolloutBatch) -> tuple[Tensor, Stats]:
        if len(self.batch) == 0:
            self.refresh()
        nll = self.nll(self.batch)
        return self.coef * nll, {"ptx_loss": nll.detach()}


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
