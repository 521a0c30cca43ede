"""The loss terms InstructGPT's objective adds beside the surrogate (Ouyang et al. 2022, eq. 2):

    E_(x,y)~π [r(x, y) − β log(π(y|x) / π_SFT(y|x))] + γ E_x~D_pretrain [log π(x)].

The text bandit puts the first term in the env's reward. ``ReferenceKLLoss`` moves the KL out of the
reward into the loss (outside the importance ratio, as GRPO does), and ``PretrainingLoss`` is the
γ-term of PPO-ptx, ``ptx_loss`` its equation.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from agents.base import PolicyEvaluation
from ppo_core.buffer import RolloutBatch
from ppo_core.distributed import mean_over_ranks
from ppo_core.kl import check_kl_treatment, kl_estimate, token_kl
from ppo_core.masked import masked_mean

Stats = dict[str, Tensor]


def ptx_loss(logits: Tensor, blocks: Tensor) -> Tensor:
    """Mean next-token negative log-likelihood of pretraining ``blocks`` (b, T) under ``logits``
    (b, T, V): −E_pretrain[log π(x)] per predicted token, which PPO-ptx weighs by γ."""
    predicted = logits[:, :-1]  # (b, T − 1, V): position t predicts token t + 1
    return nn.functional.cross_entropy(predicted.flatten(0, 1).float(), blocks[:, 1:].flatten())


class ReferenceKLLoss:
    """β · mean over valid decisions of the per-decision KL between π_θ and a frozen reference.

    The env supplies, per rollout step, ``extras["ref_log_prob"]`` (B, L) (log π_ref of the sampled
    decisions), ``extras["kl_coef"]`` (B,) (β when the step was taken, so an adaptive β applies) and,
    for the exact KL, ``extras["ref_log_probs"]`` (B, L, V). Only estimators whose expected gradient is
    the chosen direction's gradient are accepted (``ppo_core.kl.LOSS_ESTIMATORS``); k3 for the forward
    direction is the sampled k3, whose value estimates the reverse KL but whose expected gradient is
    ∇KL(π_ref‖π), so ``ref_kl`` then logs the reverse estimate.
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
        if self.estimator == "exact":
            kl = token_kl(evaluation.log_prob, extras["ref_log_prob"], "exact", self.direction,
                          evaluation.distribution.log_probs, extras["ref_log_probs"])  # (B, L) from (B, L, V)
        else:  # k2 or k3 of the samples: the value estimates KL(π‖π_ref), the gradient is the direction's
            kl = kl_estimate(evaluation.log_prob, extras["ref_log_prob"], self.estimator)  # (B, L)
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
        """Mean next-token negative log-likelihood of ``blocks`` (b, T) under the policy's LM."""
        return ptx_loss(self.model(input_ids=blocks, use_cache=False).logits, blocks)

    def __call__(self, evaluation: PolicyEvaluation, batch: RolloutBatch) -> tuple[Tensor, Stats]:
        if len(self.batch) == 0:
            self.refresh()
        nll = mean_over_ranks(self.nll(self.batch))  # each rank's blocks are its part of the global batch
        return self.coef * nll, {"ptx_loss": nll.detach()}
