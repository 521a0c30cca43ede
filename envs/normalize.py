"""Running observation and reward normalisation whose statistics travel with checkpoints.

The arithmetic is numpy float64 on the env's own arrays, before they become tensors: a dozen torch
ops on 2-element tensors cost ~300 µs per env step, more than Acrobot's physics. Checkpoints hold
the statistics as tensors, so they load with ``weights_only=True``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from ppo_core.distributed import combine_moments


class RunningMeanStd:
    """Mean and variance of a stream of batches (Chan et al. 1979 parallel update). In a data-parallel
    run a batch is the union of every rank's batch of that step, so all ranks keep the same statistics."""

    def __init__(self, shape: tuple[int, ...], epsilon: float = 1e-4):
        self.mean = np.zeros(shape, dtype=np.float64)
        self.var = np.ones(shape, dtype=np.float64)
        self.count = float(epsilon)

    def update(self, batch: np.ndarray) -> None:  # batch: (B, *shape)
        batch = np.asarray(batch, dtype=np.float64)
        batch_count = batch.shape[0]
        batch_mean = batch.sum(0) / batch_count  # not .mean()/.var(): their wrappers cost more than the sums
        centered = batch - batch_mean
        batch_var = (centered * centered).sum(0) / batch_count
        batch_count, batch_mean, batch_var = combine_moments(batch_count, batch_mean, batch_var)
        self.mean, self.var, self.count = merge_moments(self.mean, self.var, self.count, batch_mean, batch_var,
                                                        batch_count)

    def state_dict(self) -> dict[str, Tensor]:
        return {"mean": torch.tensor(np.asarray(self.mean)), "var": torch.tensor(np.asarray(self.var)),
                "count": torch.tensor(self.count, dtype=torch.float64)}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        self.mean = state["mean"].cpu().numpy().astype(np.float64)
        self.var = state["var"].cpu().numpy().astype(np.float64)
        self.count = float(state["count"])


def merge_moments(mean, var, count, batch_mean, batch_var, batch_count):
    """(mean, population variance, count) of the stream so far merged with a batch's (Chan et al. 1979).
    ``count`` broadcasts against ``mean``: a float for one statistic, (S, 1, ...) for S of them."""
    delta = batch_mean - mean
    total = count + batch_count
    m2 = var * count + batch_var * batch_count + np.square(delta) * count * batch_count / total
    return mean + delta * batch_count / total, m2 / total, total


def update_each(stats: Sequence[RunningMeanStd], batches: np.ndarray) -> None:
    """``stats[i].update(batches[i])`` for S statistics at once, batches (S, B, *shape): the same
    arithmetic on stacked arrays, bit for bit (sums over B run in the same order), for the S runs of a
    seed batch (envs/stacked.py). Single-process only: it does not combine ranks' moments."""
    batches = np.asarray(batches, dtype=np.float64)
    batch_count = batches.shape[1]
    mean, var = np.stack([s.mean for s in stats]), np.stack([s.var for s in stats])  # (S, *shape)
    count = np.array([s.count for s in stats]).reshape(-1, *(1,) * (mean.ndim - 1))  # broadcasts on mean
    batch_mean = batches.sum(1) / batch_count
    centered = batches - batch_mean[:, None]
    batch_var = (centered * centered).sum(1) / batch_count
    mean, var, total = merge_moments(mean, var, count, batch_mean, batch_var, batch_count)
    for s, m, v, c in zip(stats, mean, var, total.reshape(-1).tolist()):
        s.mean, s.var, s.count = m, v, c


class ObservationNormalizer:
    """(obs − μ) / σ, clipped; statistics update only while ``training``."""

    def __init__(self, shape: tuple[int, ...], clip: float = 10.0, epsilon: float = 1e-8):
        self.stats = RunningMeanStd(shape)
        self.clip = clip
        self.epsilon = epsilon
        self.training = True

    def __call__(self, obs: np.ndarray, update: bool = True) -> np.ndarray:  # (N, *shape), same dtype out
        if self.training and update:
            self.stats.update(obs)
        normalized = (obs - self.stats.mean) / np.sqrt(self.stats.var + self.epsilon)
        return np.clip(normalized, -self.clip, self.clip).astype(obs.dtype, copy=False)

    @staticmethod
    def normalize_each(normalizers: Sequence[ObservationNormalizer], obs: np.ndarray) -> np.ndarray:
        """``normalizers[i](obs[i])`` for S training normalisers of one clip and epsilon at once, obs (S, N, *shape)."""
        update_each([n.stats for n in normalizers], obs)
        first = normalizers[0]
        mean = np.stack([n.stats.mean for n in normalizers])[:, None]  # (S, 1, *shape)
        var = np.stack([n.stats.var for n in normalizers])[:, None]
        normalized = (obs - mean) / np.sqrt(var + first.epsilon)
        return np.clip(normalized, -first.clip, first.clip).astype(obs.dtype, copy=False)

    def state_dict(self) -> dict[str, Tensor]:
        return self.stats.state_dict()

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        self.stats.load_state_dict(state)


class RewardScaler:
    """Divide rewards by the running std of the discounted return (as SB3's VecNormalize does).

    The reward is scaled, never shifted, so the sign of "alive" bonuses and costs is kept.
    """

    def __init__(self, num_envs: int, gamma: float, clip: float = 10.0, epsilon: float = 1e-8):
        self.stats = RunningMeanStd(())
        self.discounted_return = np.zeros(num_envs, dtype=np.float64)
        self.gamma = gamma
        self.clip = clip
        self.epsilon = epsilon
        self.training = True

    def __call__(self, reward: np.ndarray, episode_ends: np.ndarray) -> np.ndarray:  # (N,), (N,) bool
        if self.training:
            self.discounted_return = self.discounted_return * self.gamma + reward
            self.stats.update(self.discounted_return)
            self.discounted_return = self.discounted_return * ~episode_ends
        scaled = reward / np.sqrt(self.stats.var + self.epsilon)
        return np.clip(scaled, -self.clip, self.clip).astype(np.float32)

    @staticmethod
    def scale_each(scalers: Sequence[RewardScaler], reward: np.ndarray, episode_ends: np.ndarray) -> np.ndarray:
        """``scalers[i](reward[i], episode_ends[i])`` for S training scalers of one γ, clip and epsilon at
        once, reward and episode_ends (S, N)."""
        first = scalers[0]
        discounted = np.stack([s.discounted_return for s in scalers]) * first.gamma + reward  # (S, N)
        update_each([s.stats for s in scalers], discounted)
        discounted = discounted * ~episode_ends
        for scaler, row in zip(scalers, discounted):
            scaler.discounted_return = row
        var = np.array([s.stats.var for s in scalers])[:, None]  # (S, 1)
        return np.clip(reward / np.sqrt(var + first.epsilon), -first.clip, first.clip).astype(np.float32)

    def state_dict(self) -> dict[str, Tensor]:
        return {**self.stats.state_dict(), "discounted_return": torch.from_numpy(self.discounted_return.copy())}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        self.stats.load_state_dict(state)
        self.discounted_return = state["discounted_return"].cpu().numpy().astype(np.float64)
