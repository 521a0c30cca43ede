"""N copies of one classic-control task stepped as torch tensors on the training device.

This implements ``envs.base.VecEnv`` directly: actions come in as tensors and everything goes out as
tensors on ``device``, with no host-device copy per step. Copy i is seeded with ``seed + i`` and draws
its start states from its own NumPy generator exactly as Gymnasium's ``SyncVectorEnv`` of the same task
would (envs/torch_classic/starts.py); ended copies reset in the same step (SAME_STEP autoreset), and
``final_obs`` holds every copy's real last observation (the reset one where nothing ended). Episode
statistics, normalisation and the non-finite guard stay on the device too; the state is simulated in
``dtype`` (float64 by default: Gymnasium's numbers to float rounding; float32 is faster on GPUs whose
float64 throughput is low).
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import Tensor

from envs.base import EpisodeStats, StepResult
from envs.torch_classic.episodes import DeviceEpisodeTracker
from envs.torch_classic.starts import StartQueue
from envs.torch_classic.tasks import ClassicTask
from envs.torch_normalize import ObservationNormalizer, RewardScaler
from ppo_core.errors import NonFiniteError

logger = logging.getLogger(__name__)

NEVER = 1 << 40
"""The first non-finite step of a copy that has returned none."""
DEFAULT_QUEUE = 128
"""Pre-drawn start states per copy: one host-device sync every 128 steps."""


class TorchClassicVecEnv:
    def __init__(
        self,
        task: ClassicTask,
        num_envs: int,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float64,
        max_episode_steps: int | None = None,
        normalize_obs: bool = False,
        normalize_reward: bool = False,
        gamma: float = 0.99,
        clip_obs: float = 10.0,
        clip_reward: float = 10.0,
        queue_size: int = DEFAULT_QUEUE,
        name: str | None = None,
    ):
        if max_episode_steps is not None and (not isinstance(max_episode_steps, int) or max_episode_steps <= 0):
            raise ValueError(f"max_episode_steps={max_episode_steps!r}: expected a positive int, or None for no limit")
        if dtype not in (torch.float32, torch.float64):
            raise ValueError(f"dtype={dtype}: expected torch.float32 or torch.float64")
        self.task = task
        self.num_envs = num_envs
        self.device = torch.device(device)
        self.dtype = dtype
        self.max_episode_steps = max_episode_steps
        self.single_observation_space = task.observation_space
        self.single_action_space = task.action_space
        self.name = name or type(task).__name__
        self.starts = StartQueue(task.draw_starts, num_envs, task.state_dim, queue_size, self.device, dtype)
        self.state = torch.zeros(task.state_dim, num_envs, dtype=dtype, device=self.device)  # (D, N)
        self.elapsed_steps = torch.zeros(num_envs, dtype=torch.long, device=self.device)  # (N,)
        obs_shape = self.single_observation_space.shape
        self.obs_normalizer = ObservationNormalizer(obs_shape, self.device, clip_obs) if normalize_obs else None
        self.reward_scaler = RewardScaler(num_envs, gamma, self.device, clip_reward) if normalize_reward else None
        self.episodes = DeviceEpisodeTracker(num_envs, self.device)
        self._all_valid = torch.ones(num_envs, dtype=torch.bool, device=self.device)
        self.steps = 0  # vector steps since construction, named when the env misbehaves
        self._first_nonfinite = torch.full((num_envs,), NEVER, dtype=torch.long, device=self.device)  # (N,) steps

    # ------------------------------------------------------------------ VecEnv
    def set_training(self, training: bool) -> None:
        """Freeze normalisation statistics (evaluation) or let them update (training)."""
        for normalizer in (self.obs_normalizer, self.reward_scaler):
            if normalizer is not None:
                normalizer.training = training

    def reset(self, seed: int | list[int | None] | None = None) -> Tensor:
        """Restart every copy; seed ``s`` seeds copy i with ``s + i``, None continues its generator."""
        if seed is None or isinstance(seed, int):
            seeds = [None if seed is None else seed + i for i in range(self.num_envs)]
        else:
            seeds = list(seed)
            if len(seeds) != self.num_envs:
                raise ValueError(f"reset(seed=...) got {len(seeds)} seeds for {self.num_envs} envs")
        self.state = self.starts.reseed(seeds)
        self.elapsed_steps.zero_()
        return self._normalize_obs(self.task.observe(self.state))

    def step(self, action: Tensor) -> StepResult:
        """(N,) or (N, 1) actions -> the next observations (already reset where an episode ended)."""
        if not self.starts.seeded:
            raise RuntimeError("call reset() before step()")
        action = torch.as_tensor(action, device=self.device)
        state, reward, terminated = self.task.dynamics(self.state, action)
        self.elapsed_steps += 1
        if self.max_episode_steps is None:
            truncated = torch.zeros_like(terminated)
        else:
            truncated = self.elapsed_steps >= self.max_episode_steps
        ended = terminated | truncated
        final = self.task.observe(state)  # (N, obs_dim) float32, the real last observations
        self.state = torch.where(ended, self.starts.take(ended), state)
        self.elapsed_steps.masked_fill_(ended, 0)
        obs = self.task.observe(self.state)
        self.steps += 1
        self._watch_finite(final, reward)
        self.episodes.update(reward, ended)
        final_obs = self._normalize_obs(final, update=False)  # before this step's update, as GymVecEnv
        if self.reward_scaler is not None:
            reward = self.reward_scaler(reward, ended)
        return StepResult(self._normalize_obs(obs), reward.float(), terminated, truncated, self._all_valid, final_obs, {})

    def pop_episode_stats(self) -> EpisodeStats:
        """The episodes ended since the last pop (read from the device once per rollout); a copy that
        returned NaN or ±inf since the last pop is a NonFiniteError naming it (checked here, not per step)."""
        key = int((self._first_nonfinite * self.num_envs + self.starts.rows).min())
        if key < NEVER * self.num_envs:
            raise NonFiniteError(f"{self.name}: env copy {key % self.num_envs} returned a non-finite observation "
                                 f"or reward at vector step {key // self.num_envs}")
        return self.episodes.pop()

    def pop_metrics(self) -> dict[str, float]:
        return {}

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"episodes": self.episodes.state_dict(), "vector_env": type(self.task).__name__,
                                 "env": {"state": self.state.cpu().clone(), "elapsed_steps": self.elapsed_steps.cpu().clone(),
                                         "starts": self.starts.state_dict()}}
        if self.obs_normalizer is not None:
            state["obs_normalizer"] = self.obs_normalizer.state_dict()
        if self.reward_scaler is not None:
            state["reward_scaler"] = self.reward_scaler.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any], restore_episodes: bool = True) -> bool:
        """Restore normalisation statistics and, when ``restore_episodes``, the running episodes;
        False when those could not be (another kind of env, another count of copies), so that the
        caller starts new ones with ``reset``."""
        if self.obs_normalizer is not None:
            self.obs_normalizer.load_state_dict(state["obs_normalizer"])
        if self.reward_scaler is not None:
            self.reward_scaler.load_state_dict(state["reward_scaler"])
        if not restore_episodes:
            return True
        saved, current = state.get("vector_env"), type(self.task).__name__
        env = state.get("env")
        if saved != current or not isinstance(env, dict) or not self.starts.fits(env["starts"]):
            logger.warning("the checkpoint's episodes ran in %s, this run steps %d torch %s copies: starting new "
                           "episodes", saved or "another kind of vector env", self.num_envs, current)
            return False
        self.state = env["state"].to(self.device, self.dtype)
        self.elapsed_steps = env["elapsed_steps"].to(self.device).clone()
        self.starts.load_state_dict(env["starts"])
        self.episodes.load_state_dict(state["episodes"])
        return True

    def close(self) -> None:
        pass

    # ------------------------------------------------------------------ normalisation and the guard
    def _normalize_obs(self, obs: Tensor, update: bool = True) -> Tensor:
        return obs if self.obs_normalizer is None else self.obs_normalizer(obs, update)

    def _watch_finite(self, obs: Tensor, reward: Tensor) -> None:
        """Remember each copy's first step with a non-finite output without reading it back (NaN and
        ±inf survive the sum)."""
        finite = torch.isfinite(reward + obs.sum(1))
        self._first_nonfinite = torch.minimum(self._first_nonfinite, torch.where(finite, NEVER, self.steps))
