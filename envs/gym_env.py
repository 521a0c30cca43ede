"""A Gymnasium vector env behind the torch interface of ``envs.base.VecEnv``."""

from __future__ import annotations

import logging
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode
from torch import Tensor

from envs import snapshot
from envs.base import EpisodeStats, EpisodeTracker, StepResult
from envs.normalize import ObservationNormalizer, RewardScaler
from ppo_core.errors import NonFiniteError

logger = logging.getLogger(__name__)


def check_finite(name: str, step: int, **arrays: np.ndarray) -> None:
    """A NonFiniteError naming the env, the copy and the step where an env returns NaN or ±inf: caught
    where it enters, before it becomes a non-finite loss. A few microseconds per step on the host."""
    for what, array in arrays.items():
        array = np.asarray(array)
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            bad = np.argwhere(~np.isfinite(array.reshape(len(array), -1)))[0]
            raise NonFiniteError(f"{name}: env copy {bad[0]} returned a non-finite {what} "
                                 f"({array.reshape(len(array), -1)[tuple(bad)]}) at vector step {step}")


class GymVecEnv:
    """Converts to and from torch, normalises, tracks episodes, and hides the autoreset mode.

    Both autoreset modes are supported because Gymnasium's own vectorised CartPole only offers
    NEXT_STEP, while sync and async envs are built with SAME_STEP (no wasted reset steps):
    - SAME_STEP: an ended env returns its reset observation; the real final one comes in
      ``final_obs`` (needed only where truncated, to bootstrap).
    - NEXT_STEP: an ended env returns its real final observation; the following step only resets
      it, with reward 0, and is reported ``valid=False`` so it is never trained on.
    """

    def __init__(
        self,
        env: gym.vector.VectorEnv,
        device: torch.device,
        normalize_obs: bool = False,
        normalize_reward: bool = False,
        gamma: float = 0.99,
        clip_obs: float = 10.0,
        clip_reward: float = 10.0,
    ):
        self.env = env
        self.device = device
        self.num_envs = env.num_envs
        self.single_observation_space = env.single_observation_space
        self.single_action_space = env.single_action_space
        self.autoreset_mode = env.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP)
        if self.autoreset_mode not in (AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP):
            raise ValueError(f"autoreset mode {self.autoreset_mode} is not supported; expected NEXT_STEP or SAME_STEP")
        obs_shape = self.single_observation_space.shape
        self.obs_normalizer = ObservationNormalizer(obs_shape, clip_obs) if normalize_obs else None
        self.reward_scaler = RewardScaler(self.num_envs, gamma, clip_reward) if normalize_reward else None
        self.episodes = EpisodeTracker(self.num_envs)
        self._resetting = np.zeros(self.num_envs, dtype=bool)  # NEXT_STEP only: stays False in SAME_STEP
        self._all_valid = torch.ones(self.num_envs, dtype=torch.bool, device=device)
        self.name = env.spec.id if env.spec is not None else type(env).__name__
        self.steps = 0  # vector steps since construction, named when the env misbehaves

    def _to_tensor(self, array: np.ndarray, dtype: torch.dtype) -> Tensor:
        return torch.as_tensor(array, dtype=dtype).to(self.device, non_blocking=True)

    def _observe(self, obs: np.ndarray, update: bool = True) -> Tensor:
        obs = np.asarray(obs, dtype=np.float32)
        if self.obs_normalizer is not None:
            obs = self.obs_normalizer(obs, update)
        return self._to_tensor(obs, torch.float32)

    def set_training(self, training: bool) -> None:
        """Freeze normalisation statistics (evaluation) or let them update (training)."""
        for normalizer in (self.obs_normalizer, self.reward_scaler):
            if normalizer is not None:
                normalizer.training = training

    def reset(self, seed: int | None = None) -> Tensor:
        obs, _ = self.env.reset(seed=seed)
        self._resetting[:] = False
        return self._observe(obs)

    def step(self, action: Tensor) -> StepResult:
        return self.after_step(*self.env.step(action.cpu().numpy()))

    def after_step(self, obs: np.ndarray, reward: np.ndarray, terminated: np.ndarray, truncated: np.ndarray,
                   info: dict[str, Any]) -> StepResult:
        """The wrapped env's step results as a ``StepResult``: checked, tracked, normalised (a seed batch
        steps several runs' envs at once and hands each its own results, envs/stacked.py)."""
        self.steps += 1
        check_finite(self.name, self.steps, reward=reward, observation=obs)
        valid = ~self._resetting
        episode_ends = terminated | truncated
        self.episodes.update(reward, valid, episode_ends)
        if self.autoreset_mode == AutoresetMode.NEXT_STEP:
            self._resetting = episode_ends
        if self.reward_scaler is not None:
            reward = self.reward_scaler(reward, episode_ends)
        reward_t = self._to_tensor(reward, torch.float32)
        terminated_t = self._to_tensor(terminated, torch.bool)
        truncated_t = self._to_tensor(truncated, torch.bool)
        final_obs = None
        if self.autoreset_mode == AutoresetMode.SAME_STEP and truncated.any():
            final = np.array(obs, copy=True)
            for i in np.flatnonzero(truncated):
                final[i] = info["final_obs"][i]
            final_obs = self._observe(final, update=False)
        same_step = self.autoreset_mode == AutoresetMode.SAME_STEP
        valid_t = self._all_valid if same_step else self._to_tensor(valid, torch.bool)
        return StepResult(self._observe(obs), reward_t, terminated_t, truncated_t, valid_t, final_obs, info)

    def pop_episode_stats(self) -> EpisodeStats:
        return self.episodes.pop()

    def pop_metrics(self) -> dict[str, float]:
        return {}

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"episodes": self.episodes.state_dict(), "resetting": torch.from_numpy(self._resetting.copy())}
        if self.obs_normalizer is not None:
            state["obs_normalizer"] = self.obs_normalizer.state_dict()
        if self.reward_scaler is not None:
            state["reward_scaler"] = self.reward_scaler.state_dict()
        if snapshot.can_snapshot(self.env):
            state["env"] = snapshot.capture(self.env)
            state["vector_env"] = type(self.env).__name__
        return state

    def load_state_dict(self, state: dict[str, Any], restore_episodes: bool = True) -> bool:
        """Restore normalisation statistics and, when ``restore_episodes``, the running episodes;
        False when those could not be restored and the caller must start new ones with ``reset``."""
        if self.obs_normalizer is not None:
            self.obs_normalizer.load_state_dict(state["obs_normalizer"])
        if self.reward_scaler is not None:
            self.reward_scaler.load_state_dict(state["reward_scaler"])
        if not restore_episodes:
            return True
        saved, current = state.get("vector_env"), type(self.env).__name__  # None: checkpoints older than the key
        if "env" not in state:  # sub-envs in other processes (async) are not captured
            return False
        if saved not in (None, current) or not snapshot.fits(self.env, state["env"]):
            logger.warning("the checkpoint's episodes ran in a %s, this run steps a %s: starting new episodes",
                           saved or "vector env of another layout", current)
            return False
        self.episodes.load_state_dict(state["episodes"])
        self._resetting = state["resetting"].numpy().copy()
        snapshot.restore(self.env, state["env"])
        return True

    def close(self) -> None:
        self.env.close()
