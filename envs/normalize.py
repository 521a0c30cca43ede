"""Running observation and reward normalisation whose statistics travel with checkpoints."""

from __future__ import annotations

import torch
from torch import Tensor


class RunningMeanStd:
    """Mean and variance of a stream of batches (Chan et al. 1979 parallel update)."""

    def __init__(self, shape: tuple[int, ...], device: torch.device, epsilon: float = 1e-4):
        self.mean = torch.zeros(shape, dtype=torch.float64, device=device)
        self.var = torch.ones(shape, dtype=torch.float64, device=device)
        self.count = torch.tensor(epsilon, dtype=torch.float64, device=device)

    def update(self, batch: Tensor) -> None:  # batch: (B, *shape)
        batch = batch.to(torch.float64)
        batch_mean = batch.mean(0)
        batch_var = batch.var(0, unbiased=False)
        batch_count = batch.shape[0]
        delta = batch_mean - self.mean
        total = self.count + batch_count
        self.mean = self.mean + delta * batch_count / total
        m2 = self.var * self.count + batch_var * batch_count + delta.square() * self.count * batch_count / total
        self.var = m2 / total
        self.count = total

    def state_dict(self) -> dict[str, Tensor]:
        return {"mean": self.mean, "var": self.var, "count": self.count}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        self.mean, self.var, self.count = (state[k].to(self.mean.device) for k in ("mean", "var", "count"))


class ObservationNormalizer:
    """(obs − μ) / σ, clipped; statistics update only while ``training``."""

    def __init__(self, shape: tuple[int, ...], device: torch.device, clip: float = 10.0, epsilon: float = 1e-8):
        self.stats = RunningMeanStd(shape, device)
        self.clip = clip
        self.epsilon = epsilon
        self.training = True

    def __call__(self, obs: Tensor, update: bool = True) -> Tensor:
        if self.training and update:
            self.stats.update(obs)
        normalized = (obs - self.stats.mean) / torch.sqrt(self.stats.var + self.epsilon)
        return normalized.clamp(-self.clip, self.clip).to(obs.dtype)

    def state_dict(self) -> dict[str, Tensor]:
        return self.stats.state_dict()

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        self.stats.load_state_dict(state)


class RewardScaler:
    """Divide rewards by the running std of the discounted return (as SB3's VecNormalize does).

    The reward is scaled, never shifted, so the sign of "alive" bonuses and costs is kept.
    """

    def __init__(self, num_envs: int, gamma: float, device: torch.device, clip: float = 10.0, epsilon: float = 1e-8):
        self.stats = RunningMeanStd((), device)
        self.discounted_return = torch.zeros(num_envs, dtype=torch.float64, device=device)
        self.gamma = gamma
        self.clip = clip
        self.epsilon = epsilon
        self.training = True

    def __call__(self, reward: Tensor, episode_ends: Tensor) -> Tensor:  # (N,), (N,) bool
        if self.training:
            self.discounted_return = self.discounted_return * self.gamma + reward
            self.stats.update(self.discounted_return)
            self.discounted_return = self.discounted_return * (~episode_ends)
        scaled = reward / torch.sqrt(self.stats.var + self.epsilon)
        return scaled.clamp(-self.clip, self.clip).to(reward.dtype)

    def state_dict(self) -> dict[str, Tensor]:
        return {**self.stats.state_dict(), "discounted_return": self.discounted_return}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        self.stats.load_state_dict(state)
        self.discounted_return = state["discounted_return"].to(self.discounted_return.device)
