"""Observation and reward normalisation on the env's device, for envs that step as torch tensors.

The same statistics and arithmetic as envs/normalize.py (float64 running moments, Chan et al.'s
parallel update, the same clipping and epsilons), kept as tensors so that no step waits for the host;
the state dicts have the same keys and dtypes, so either kind of env reads the other's statistics.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ppo_core.distributed import combine_equal_moments


class RunningMeanStd:
    """Mean and variance of a stream of batches (Chan et al. 1979 parallel update), float64; in a
    data-parallel run a batch is the union of every rank's batch of that step."""

    def __init__(self, shape: tuple[int, ...], device: torch.device, epsilon: float = 1e-4):
        self.mean = torch.zeros(shape, dtype=torch.float64, device=device)
        self.var = torch.ones(shape, dtype=torch.float64, device=device)
        self.count = torch.tensor(float(epsilon), dtype=torch.float64, device=device)  # a tensor: no sync

    def update(self, batch: Tensor) -> None:  # batch: (B, *shape)
        batch = batch.double()
        batch_count = batch.shape[0]
        batch_mean = batch.sum(0) / batch_count
        centered = batch - batch_mean
        batch_var = (centered * centered).sum(0) / batch_count
        batch_count, batch_mean, batch_var = combine_equal_moments(batch_count, batch_mean, batch_var)  # all ranks'
        delta = batch_mean - self.mean
        total = self.count + batch_count
        self.mean = self.mean + delta * batch_count / total
        m2 = self.var * self.count + batch_var * batch_count + delta.square() * self.count * batch_count / total
        self.var = m2 / total
        self.count = total

    def state_dict(self) -> dict[str, Tensor]:
        return {"mean": self.mean.cpu().clone(), "var": self.var.cpu().clone(), "count": self.count.cpu().clone()}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        device = self.mean.device
        self.mean = torch.as_tensor(state["mean"], dtype=torch.float64).to(device)
        self.var = torch.as_tensor(state["var"], dtype=torch.float64).to(device)
        self.count = torch.as_tensor(state["count"], dtype=torch.float64).to(device)


class ObservationNormalizer:
    """(obs − μ) / σ, clipped; statistics update only while ``training``."""

    def __init__(self, shape: tuple[int, ...], device: torch.device, clip: float = 10.0, epsilon: float = 1e-8):
        self.stats = RunningMeanStd(shape, device)
        self.clip = clip
        self.epsilon = epsilon
        self.training = True

    def __call__(self, obs: Tensor, update: bool = True) -> Tensor:  # (N, *shape) -> same shape and dtype
        if self.training and update:
            self.stats.update(obs)
        normalized = (obs.double() - self.stats.mean) / torch.sqrt(self.stats.var + self.epsilon)
        return normalized.clamp(-self.clip, self.clip).to(obs.dtype)

    def state_dict(self) -> dict[str, Tensor]:
        return self.stats.state_dict()

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        self.stats.load_state_dict(state)


class RewardScaler:
    """Divide rewards by the running std of the discounted return (as SB3's VecNormalize does)."""

    def __init__(self, num_envs: int, gamma: float, device: torch.device, clip: float = 10.0, epsilon: float = 1e-8):
        self.stats = RunningMeanStd((), device)
        self.discounted_return = torch.zeros(num_envs, dtype=torch.float64, device=device)
        self.gamma = gamma
        self.clip = clip
        self.epsilon = epsilon
        self.training = True

    def __call__(self, reward: Tensor, episode_ends: Tensor) -> Tensor:  # (N,), (N,) bool -> (N,) float32
        reward = reward.double()
        if self.training:
            self.discounted_return = self.discounted_return * self.gamma + reward
            self.stats.update(self.discounted_return)
            self.discounted_return = self.discounted_return * ~episode_ends
        scaled = reward / torch.sqrt(self.stats.var + self.epsilon)
        return scaled.clamp(-self.clip, self.clip).float()

    def state_dict(self) -> dict[str, Tensor]:
        return {**self.stats.state_dict(), "discounted_return": self.discounted_return.cpu().clone()}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        self.stats.load_state_dict(state)
        self.discounted_return = torch.as_tensor(state["discounted_return"], dtype=torch.float64).to(
            self.discounted_return.device)
