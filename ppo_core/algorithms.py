"""Update rules. Each algorithm owns its optimiser(s) and turns one rollout batch into new
parameters: ``update(batch) -> stats``. The trainer does everything else."""

from __future__ import annotations

from collections import defaultdict

import torch
from torch import Tensor, nn

from agents.base import ActorCritic
from ppo_core.advantages import explained_variance, whiten
from ppo_core.buffer import RolloutBatch
from ppo_core.config import AlgoConfig, PPOConfig
from ppo_core.errors import ConfigError
from ppo_core.kl import PPOKLPenaltyController, masked_mean
from ppo_core.losses import clipped_surrogate_loss, kl_penalty_surrogate_loss, value_loss

Stats = dict[str, Tensor]


class StatsMeter:
    """Running means of tensor statistics without host syncs."""

    def __init__(self) -> None:
        self.sums: dict[str, Tensor] = defaultdict(lambda: torch.zeros(()))
        self.counts: dict[str, int] = defaultdict(int)

    def add(self, stats: Stats) -> None:
        for key, value in stats.items():
            self.sums[key] = self.sums[key].to(value.device) + value.detach()
            self.counts[key] += 1

    def means(self) -> Stats:
        return {key: total / self.counts[key] for key, total in self.sums.items()}


class Algorithm:
    """Shared pieces: one Adam over the policy, linear LR annealing, clipped gradient steps."""

    def __init__(self, policy: ActorCritic, config: AlgoConfig, parameters: list[nn.Parameter] | None = None):
        self.policy = policy
        self.config = config
        self.parameters = list(parameters if parameters is not None else policy.parameters())
        self.optimizer = torch.optim.Adam(self.parameters, lr=config.learning_rate, eps=config.adam_eps)
        self.progress_remaining = 1.0

    def set_progress(self, remaining: float) -> None:
        """``remaining`` goes from 1 at the start of training to 0 at its end."""
        self.progress_remaining = remaining
        if self.config.anneal_lr:
            for group in self.optimizer.param_groups:
                group["lr"] = remaining * self.config.learning_rate

    def gradient_step(self, loss: Tensor) -> Tensor:
        """Backpropagate, clip the global gradient norm, step; returns the pre-clip norm."""
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        max_norm = self.config.max_grad_norm if self.config.max_grad_norm > 0 else float("inf")
        grad_norm = nn.utils.clip_grad_norm_(self.parameters, max_norm, foreach=True)
        self.optimizer.step()
        return grad_norm

    def update(self, batch: RolloutBatch) -> Stats:
        raise NotImplementedError

    def state_dict(self) -> dict:
        return {"optimizer": self.optimizer.state_dict(), "progress_remaining": self.progress_remaining}

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.set_progress(state["progress_remaining"])


def batch_stats(batch: RolloutBatch) -> Stats:
    """Diagnostics of the rollout itself, logged beside the losses."""
    return {"explained_variance": explained_variance(batch.values, batch.returns, batch.mask)}


class PPO(Algorithm):
    """Proximal Policy Optimization (Schulman et al. 2017): epochs of minibatch steps on a
    clipped (§3) or adaptive-KL-penalised (§4) surrogate, plus value loss and entropy bonus."""

    config: PPOConfig

    def __init__(self, policy: ActorCritic, config: PPOConfig):
        if config.objective not in ("clip", "kl_penalty"):
            raise ConfigError(f"algo.objective={config.objective!r} is unknown; expected 'clip' or 'kl_penalty'")
        super().__init__(policy, config)
        self.kl_controller = PPOKLPenaltyController(config.kl_beta_init, config.kl_target)

    @property
    def clip_eps(self) -> float:
        return self.config.clip_eps * (self.progress_remaining if self.config.anneal_clip else 1.0)

    def _policy_loss(self, log_prob: Tensor, batch: RolloutBatch, advantages: Tensor) -> tuple[Tensor, Stats]:
        if self.config.objective == "clip":
            return clipped_surrogate_loss(log_prob, batch.log_probs, advantages, self.clip_eps, batch.mask)
        return kl_penalty_surrogate_loss(log_prob, batch.log_probs, advantages, self.kl_controller.beta, batch.mask)

    def update(self, batch: RolloutBatch) -> Stats:
        cfg = self.config
        meter = StatsMeter()
        minibatch_size = max(1, len(batch) // cfg.num_minibatches)
        clip_value = self.clip_eps if cfg.clip_value_loss else None
        epoch_kl = torch.zeros(())
        for _ in range(cfg.update_epochs):
            epoch_meter = StatsMeter()
            for indices in torch.randperm(len(batch), device=batch.mask.device).split(minibatch_size):
                minibatch = batch.select(indices)
                evaluation = self.policy.evaluate(minibatch.obs, minibatch.actions)
                advantages = minibatch.advantages
                if cfg.normalize_advantages:
                    advantages = whiten(advantages, minibatch.mask)
                pg_loss, pg_stats = self._policy_loss(evaluation.log_prob, minibatch, advantages)
                v_loss, _ = value_loss(evaluation.value, minibatch.returns, minibatch.values, clip_value, minibatch.mask)
                entropy = masked_mean(evaluation.entropy, minibatch.mask)
                loss = pg_loss + cfg.vf_coef * v_loss - cfg.ent_coef * entropy
                grad_norm = self.gradient_step(loss)
                step_stats = {"policy_loss": pg_loss, "value_loss": v_loss, "entropy": entropy,
                              "loss": loss, "grad_norm": grad_norm, **pg_stats}
                meter.add(step_stats)
                epoch_meter.add({"approx_kl": pg_stats["approx_kl"]})
            epoch_kl = epoch_meter.means()["approx_kl"]
            if cfg.target_kl is not None and epoch_kl.item() > cfg.target_kl:
                break
        stats = {**meter.means(), **batch_stats(batch), "learning_rate": torch.tensor(self.optimizer.param_groups[0]["lr"])}
        if cfg.objective == "kl_penalty":
            stats["beta"] = torch.tensor(self.kl_controller.beta)
            self.kl_controller.update(epoch_kl.item())
        else:
            stats["clip_eps"] = torch.tensor(self.clip_eps)
        return stats

    def state_dict(self) -> dict:
        return {**super().state_dict(), "kl_controller": self.kl_controller.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.kl_controller.load_state_dict(state["kl_controller"])


ALGORITHMS = {"ppo": PPO}


def make_algorithm(policy: ActorCritic, config: AlgoConfig) -> Algorithm:
    if config.name not in ALGORITHMS:
        raise ConfigError(f"algo.name={config.name!r} is unknown; expected one of {sorted(ALGORITHMS)}")
    return ALGORITHMS[config.name](policy, config)
