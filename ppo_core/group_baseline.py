"""A group baseline in place of V (RLOO, GRPO): the env's copies that start each episode from the same
state, checked once against the settings, and the advantages of a rollout from their returns.

The env reports its groups as ``start_groups`` (N,), an optional attribute of a vector env (e.g. K
samples of one prompt); the core knows only that copies with equal ids start alike.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ppo_core.advantages import GROUP_BASELINES, group_advantages
from ppo_core.config import AlgoConfig
from ppo_core.errors import ConfigError


def start_groups(algo: AlgoConfig, env: Any) -> Tensor | None:
    """The env's group id of each copy (N,) when ``algo.advantage`` is a group baseline, else None;
    a ConfigError names a setting that cannot work."""
    if algo.group_std and algo.advantage != "group_mean":
        raise ConfigError(f"algo.group_std=true divides group_mean advantages by the group's std (GRPO); it needs "
                          f"algo.advantage=group_mean, not {algo.advantage}")
    if algo.advantage not in GROUP_BASELINES:
        return None
    groups = getattr(env, "start_groups", None)
    if groups is None:
        raise ConfigError(f"algo.advantage={algo.advantage} compares episodes that start from the same state, and "
                          f"this env reports no such copies (no start_groups); use algo.advantage=gae")
    groups = torch.as_tensor(groups)
    if groups.shape != (env.num_envs,):
        raise ValueError(f"the env's start_groups has shape {tuple(groups.shape)}; expected ({env.num_envs},), "
                         "one group id per copy")
    smallest = int(torch.unique(groups, return_counts=True)[1].min())
    if smallest < 2:
        raise ConfigError(f"algo.advantage={algo.advantage} needs at least 2 copies per start state; the env's "
                          f"smallest group has {smallest}")
    return groups


def rollout_group_advantages(algo: AlgoConfig, groups: Tensor, rewards: Tensor, episode_ends: Tensor,
                             mask: Tensor) -> Tensor:
    """Advantages (T, N, L) of a rollout of single-step episodes: each episode's return, the sum of its
    decisions' ``rewards`` (T, N, L), minus its group's baseline, on every valid decision of ``mask``."""
    if not bool(episode_ends.all()):  # one host sync per rollout
        raise ConfigError(f"algo.advantage={algo.advantage} compares the returns of single-step episodes; this "
                          "env's episodes last more than one step (use algo.advantage=gae)")
    advantages = group_advantages(rewards.sum(-1), groups.to(rewards.device), algo.advantage, algo.group_std)
    return advantages.unsqueeze(-1) * mask  # (T, N) -> (T, N, L)
