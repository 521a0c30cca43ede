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


class RunEvaluator:
    """A run's evaluations: episodes of ``eval_env`` (one per copy) with the training env's current
    normaliser statistics, from new start states at every evaluation, as SB3's EvalCallback draws them
    (with one fixed set, a run is judged again and again on the same, possibly unlucky, episodes; an
    env with a fixed list of start states, such as a prompt set, serves it in order).

    ``prepare`` and ``report`` are the two halves around the episodes, so that a seed batch can play
    the episodes of all its runs at once (ppo_core/batched_trainer.py)."""

    def __init__(self, policy: ActorCritic, env: VecEnv, eval_env: VecEnv, base_seed: int):
        self.policy, self.env, self.eval_env, self.base_seed = policy, env, eval_env, base_seed

    def prepare(self, number: int) -> int:
        """Ready ``eval_env`` for evaluation ``number``; returns the seed of its start states."""
        self.eval_env.load_state_dict(self.env.state_dict(), restore_episodes=False)
        return self.base_seed + number * self.eval_env.num_envs

    def report(self, result: EvalResult) -> dict[str, float]:
        """The evaluation's figures, with the env's own metrics of its episodes."""
        return {**result.as_dict(), **self.eval_env.pop_metrics()}

    def __call__(self, number: int) -> dict[str, float]:
        seed = self.prepare(number)
        self.policy.eval()
        try:
            result = evaluate_policy(self.policy, self.eval_env, seed=seed)
        finally:
            self.policy.train()
        return self.report(result)
