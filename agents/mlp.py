"""MLP actor-critic for vector observations: Categorical head for Discrete actions, diagonal
Gaussian with a state-independent log-std for Box actions."""

from __future__ import annotations

import math
from collections.abc import Sequence

import gymnasium as gym
import torch
from torch import Tensor, nn

from agents.base import PolicyEvaluation, PolicyStep, UnsupportedSpaceError
from agents.distributions import Categorical, DiagGaussian

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU}


def _mlp(sizes: Sequence[int], activation: type[nn.Module], out_gain: float, ortho: bool) -> nn.Sequential:
    """Linear layers with ``activation`` between them; orthogonal init (Engstrom et al. 2020, §3)."""
    layers: list[nn.Module] = []
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        linear = nn.Linear(fan_in, fan_out)
        if ortho:
            is_last = i == len(sizes) - 2
            nn.init.orthogonal_(linear.weight, out_gain if is_last else math.sqrt(2))
            nn.init.zeros_(linear.bias)
        layers.append(linear)
        if i < len(sizes) - 2:
            layers.append(activation())
    return nn.Sequential(*layers)


def _observation_size(space: gym.Space) -> int:
    if not isinstance(space, gym.spaces.Box) or len(space.shape) != 1:
        raise UnsupportedSpaceError(
            f"observation space {space} is not supported by agent=mlp; "
            "expected a 1-D Box (flatten other observations with a gymnasium wrapper)"
        )
    return space.shape[0]


class MLPActorCritic(nn.Module):
    """Separate (default) or shared-trunk actor and critic MLPs."""

    def __init__(
        self,
        observation_space: gym.Space,
        action_space: gym.Space,
        hidden_sizes: Sequence[int] = (64, 64),
        activation: str = "tanh",
        shared_trunk: bool = False,
        log_std_init: float = 0.0,
        ortho_init: bool = True,
    ):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"agent.activation={activation!r} is unknown; expected one of {sorted(ACTIVATIONS)}")
        obs_size = _observation_size(observation_space)
        act = ACTIVATIONS[activation]
        self.discrete = isinstance(action_space, gym.spaces.Discrete)
        if self.discrete:
            head_size = int(action_space.n)
            self.register_buffer("action_offset", torch.tensor(int(action_space.start)))
        elif isinstance(action_space, gym.spaces.Box) and len(action_space.shape) == 1:
            head_size = action_space.shape[0]
            self.log_std = nn.Parameter(torch.full((head_size,), float(log_std_init)))
            self.register_buffer("action_low", torch.as_tensor(action_space.low, dtype=torch.float32))
            self.register_buffer("action_high", torch.as_tensor(action_space.high, dtype=torch.float32))
        else:
            raise UnsupportedSpaceError(
                f"action space {action_space} is not supported by agent=mlp; expected Discrete or a 1-D Box"
            )
        hidden = list(hidden_sizes)
        self.shared_trunk = shared_trunk
        if shared_trunk:
            self.trunk = nn.Sequential(_mlp([obs_size, *hidden], act, math.sqrt(2), ortho_init), act())
            self.actor = _mlp([hidden[-1], head_size], act, 0.01, ortho_init)
            self.critic = _mlp([hidden[-1], 1], act, 1.0, ortho_init)
        else:
            self.trunk = nn.Identity()
            self.actor = _mlp([obs_size, *hidden, head_size], act, 0.01, ortho_init)
            self.critic = _mlp([obs_size, *hidden, 1], act, 1.0, ortho_init)

    def _distribution(self, features: Tensor) -> Categorical | DiagGaussian:
        head = self.actor(features)
        if self.discrete:
            return Categorical.from_logits(head)
        return DiagGaussian(head, self.log_std)

    def act(self, obs: Tensor, deterministic: bool = False) -> PolicyStep:
        features = self.trunk(obs)  # (N, H)
        dist = self._distribution(features)
        action = dist.mode() if deterministic else dist.sample()
        log_prob = dist.log_prob(action).unsqueeze(-1)  # (N, 1)
        value = self.critic(features)  # (N, 1)
        return PolicyStep(action, log_prob, value, torch.ones_like(log_prob, dtype=torch.bool))

    def evaluate(self, obs: Tensor, action: Tensor) -> PolicyEvaluation:
        features = self.trunk(obs)
        dist = self._distribution(features)
        return PolicyEvaluation(
            dist.log_prob(action).unsqueeze(-1), dist.entropy().unsqueeze(-1), self.critic(features), dist
        )

    def value(self, obs: Tensor) -> Tensor:
        return self.critic(self.trunk(obs)).squeeze(-1)

    def env_action(self, action: Tensor) -> Tensor:
        if self.discrete:
            return action + self.action_offset
        return torch.maximum(torch.minimum(action, self.action_high), self.action_low)

    def actor_parameters(self) -> list[nn.Parameter]:
        extra = [self.log_std] if not self.discrete else []
        return [*self.trunk.parameters(), *self.actor.parameters(), *extra]

    def critic_parameters(self) -> list[nn.Parameter]:
        if self.shared_trunk:
            raise ValueError("agent.shared_trunk=true has no separate critic; TRPO needs shared_trunk=false")
        return list(self.critic.parameters())

