"""The vector-environment interface the trainer talks to: torch in, torch out, on its device."""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol

import gymnasium as gym
import numpy as np
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
    extras: dict[str, Tensor] = {}  # for the algorithm, stored in the buffer: per step (N,) or per decision (N, L, ...)


class VecEnv(Protocol):
    """What the trainer steps. Optional: ``start_groups`` (N,) long, equal ids for copies that start every
    episode from the same state (e.g. K samples of one prompt), what a group baseline compares
    (ppo_core/group_baseline.py)."""

    num_envs: int
    single_observation_space: gym.Space
    single_action_space: gym.Space

    def reset(self, seed: int | None = None) -> Observation: ...

    def step(self, action: Tensor) -> StepResult: ...

    def pop_episode_stats(self) -> "EpisodeStats": ...

    def pop_metrics(self) -> dict[str, float]:
        """Env-specific means since the last pop, logged as ``objective/<key>`` (may be empty)."""
        ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> bool:
        """Restore; False when the running episodes could not be, so the caller resets the env."""
        ...

    def close(self) -> None: ...


class EpisodeStats(NamedTuple):
    """Sums over the episodes that ended since the last pop."""

    return_sum: float
    length_sum: int
    count: int


class EpisodeTracker:
    """Raw (un-normalised) episode returns and lengths of a numpy vector env."""

    def __init__(self, num_envs: int):
        self.returns = np.zeros(num_envs, dtype=np.float64)
        self.lengths = np.zeros(num_envs, dtype=np.int64)
        self._reset_sums()

    def _reset_sums(self) -> None:
        self.return_sum, self.length_sum, self.count = 0.0, 0, 0

    def update(self, reward: np.ndarray, valid: np.ndarray, episode_ends: np.ndarray) -> None:
        self.returns += reward * valid
        self.lengths += valid
        ended = episode_ends & valid
        if ended.any():
            self.return_sum += float(self.returns[ended].sum())
            self.length_sum += int(self.lengths[ended].sum())
            self.count += int(ended.sum())
            self.returns[ended] = 0.0
            self.lengths[ended] = 0

    def pop(self) -> EpisodeStats:
        stats = EpisodeStats(self.return_sum, self.length_sum, self.count)
        self._reset_sums()
        return stats

    def state_dict(self) -> dict[str, Tensor]:
        return {"returns": torch.from_numpy(self.returns.copy()), "lengths": torch.from_numpy(self.lengths.copy())}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        self.returns = state["returns"].numpy().copy()
        self.lengths = state["lengths"].numpy().copy()
