"""The evaluations of a seed batch's runs played as one: the stacked policies act on every run's
evaluation episodes at once, and each run's eval env steps on its own row of the actions.

Each run's figures are those ``evaluate_policy`` gives its own policy (float rounding aside, as for
the rest of a batch): the same start states, the same greedy actions, and a run's env stops stepping
once its episodes have all ended, as it would alone (tests/test_seed_batch.py)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from envs.base import VecEnv
from ppo_core.evaluation import EvalResult


@torch.no_grad()
def evaluate_runs(policy, envs: Sequence[VecEnv], seeds: Sequence[int], step_envs: Callable) -> list[EvalResult]:
    """One deterministic episode in each copy of each run's env (run s's from ``seeds[s]``).

    ``policy``: the stacked policies (agents/stacked_mlp.py); ``step_envs(envs, actions)`` steps the
    given envs on their rows of ``actions`` (ppo_core/batched_trainer.py: EnvStepper)."""
    obs = torch.stack([env.reset(seed=seed) for env, seed in zip(envs, seeds)])  # (S, N, D)
    num_runs, num_envs = obs.shape[:2]
    running = torch.zeros(num_runs, num_envs, dtype=torch.float64)
    lengths = torch.zeros(num_runs, num_envs, dtype=torch.int64)
    finished = torch.zeros(num_runs, num_envs, dtype=torch.bool)
    final_returns = torch.zeros(num_runs, num_envs, dtype=torch.float64)
    live = list(range(num_runs))  # the runs with an episode still going
    while live:
        actions: Tensor = policy.greedy_env_action(obs)  # (S, N, ...)
        rows = torch.tensor(live)
        result = step_envs([envs[run] for run in live], actions[rows])
        counting = result.valid.cpu() & ~finished[rows]  # (R, N)
        running[rows] += result.reward.cpu().double() * counting
        lengths[rows] += counting.long()
        ended = (result.terminated | result.truncated).cpu() & counting
        final_returns[rows] = torch.where(ended, running[rows], final_returns[rows])
        finished[rows] |= ended
        obs[rows.to(obs.device)] = result.obs
        live = [run for run in live if not bool(finished[run].all())]
    return [EvalResult(final_returns[run].tolist(), lengths[run].tolist()) for run in range(num_runs)]
