"""Deterministic evaluation of a policy: one episode per env copy, raw returns."""

from __future__ import annotations

from typing import NamedTuple

import torch

from agents.base import ActorCritic
from envs.base import VecEnv


class EvalResult(NamedTuple):
    returns: list[float]
    lengths: list[int]

    @property
    def mean(self) -> float:
        return float(torch.tensor(self.returns).mean())

    @property
    def std(self) -> float:
        return float(torch.tensor(self.returns).std(unbiased=False))

    def as_dict(self) -> dict[str, float]:
        return {"mean_reward": self.mean, "std_reward": self.std, "mean_length": sum(self.lengths) / len(self.lengths)}


@torch.no_grad()
def evaluate_policy(policy: ActorCritic, env: VecEnv, seed: int, deterministic: bool = True) -> EvalResult:
    """One episode in each of the env's copies; returns are raw (the env must not scale rewards)."""
    obs = env.reset(seed=seed)
    n = env.num_envs
    running = torch.zeros(n, dtype=torch.float64)
    lengths = torch.zeros(n, dtype=torch.int64)
    finished = torch.zeros(n, dtype=torch.bool)
    final_returns = torch.zeros(n, dtype=torch.float64)
    while not bool(finished.all()):
        step = policy.act(obs, deterministic=deterministic)
        result = env.step(policy.env_action(step))
        counting = (result.valid & ~finished).cpu()
        running += result.reward.cpu().double() * counting
        lengths += counting.long()
        ended = ((result.terminated | result.truncated).cpu() & counting)
        final_returns = torch.where(ended, running, final_returns)
        finished |= ended
        obs = result.obs
    return EvalResult(final_returns.tolist(), lengths.tolist())
