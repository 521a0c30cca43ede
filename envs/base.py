"""The vector-environment interface the trainer talks to: torch in, torch out, on its device."""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol

import gymnasium as gym
import torch
from torch import Tensor

Observation = Any  # a tensor (N, *obs_shape) or a dict of tensors with leading N


class StepResult(NamedTuple):
    obs: Observation  # what the policy sees next (already reset where an episode ended)
    reward: Tensor  # (N,) float32, possibly normalised, for training
    terminated: Tensor  # (N,) bool
    truncated: Tensor  # (N,) bool
    valid: Tensor  # (N,) bool: False where the step only reset the env (next-step autoreset)
    final_obs: Observation | None  # (N, ...) real last observations where truncated, else None
    info: dict[str, Any]


class VecEnv(Protocol):
    num_envs: int
    single_observation_space: gym.Space
    single_action_space: gym.Space

    def reset(self, seed: int | None = None) -> Observation: ...

    def step(self, action: Tensor) -> StepResult: ...

    def pop_episode_stats(self) -> "EpisodeStats": ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


class EpisodeStats(NamedTuple):
    """Sums over the episodes that ended since the last pop (device tensors: no host sync)."""

    return_sum: Tensor
    length_sum: Tensor
    count: Tensor


class EpisodeTracker:
    """Raw (un-normalised) episode returns and lengths, accumulated without host syncs."""

    def __init__(self, num_envs: int, device: torch.device):
        self.returns = torch.zeros(num_envs, dtype=torch.float64, device=device)
        self.lengths = torch.zeros(num_envs, dtype=torch.int64, device=device)
        self._zero = torch.zeros((), dtype=torch.float64, device=device)
        self._reset_sums()

    def _reset_sums(self) -> None:
        self.return_sum, self.length_sum, self.count = self._zero.clone(), self._zero.clone(), self._zero.clone()

    def update(self, reward: Tensor, valid: Tensor, episode_ends: Tensor) -> None:
        self.returns += reward * valid
        self.lengths += valid.long()
        ended = episode_ends & valid
        self.return_sum += (self.returns * ended).sum()
        self.length_sum += (self.lengths * ended).sum()
        self.count += ended.sum()
        self.returns.masked_fill_(ended, 0.0)
        self.lengths.masked_fill_(ended, 0)

    def pop(self) -> EpisodeStats:
        stats = EpisodeStats(self.return_sum, self.length_sum, self.count)
        self._reset_sums()
        return stats

    def state_dict(self) -> dict[str, Tensor]:
        return {"returns": self.returns, "lengths": self.lengths}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        self.returns.copy_(state["returns"])
        self.lengths.copy_(state["lengths"])
