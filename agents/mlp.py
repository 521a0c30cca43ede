"""MLP actor-critic for vector observations: Categorical head for Discrete actions, diagonal
Gaussian for Box actions, with a state-independent log-std or generalized state-dependent
exploration (gSDE, Raffin et al. 2022, "Smooth Exploration for Robotic Reinforcement Learning")."""

from __future__ import annotations

import math
from collections.abc import Sequence

import gymnasium as gym
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from agents.base import PolicyEvaluation, PolicyStep, UnsupportedSpaceError
from agents.distributions import Categorical, DiagGaussian

GSDE_EPSILON = 1e-6  # added to gSDE's variance, as in SB3, so a dead feature vector cannot give log(0)
ACTIVATIONS = {"tanh": torch.tanh, "relu": torch.relu, "elu": F.elu}


class MLP(nn.Module):
    """Linear layers with an activation between them, called functionally: at CartPole sizes the
    per-module dispatch of ``nn.Sequential`` costs as much as the arithmetic."""

    def __init__(self, sizes: Sequence[int], activation: str, out_gain: float, ortho: bool):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(i, o) for i, o in zip(sizes[:-1], sizes[1:]))
        self.activation = ACTIVATIONS[activation]
        if ortho:  # orthogonal init (Engstrom et al. 2020, "Implementation Matters", §3)
            for i, layer in enumerate(self.layers):
                nn.init.orthogonal_(layer.weight, out_gain if i == len(self.layers) - 1 else math.sqrt(2))
                nn.init.zeros_(layer.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.output_and_latent(x)[0]

    def output_and_latent(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The output and the input of the last layer (the features gSDE's noise is linear in)."""
        *hidden, last = self.layers
        for layer in hidden:
            x = self.activation(F.linear(x, layer.weight, layer.bias))
        return F.linear(x, last.weight, last.bias), x


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
        gsde: bool = False,
        sde_sample_freq: int = 4,
    ):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"agent.activation={activation!r} is unknown; expected one of {sorted(ACTIVATIONS)}")
        obs_size = _observation_size(observation_space)
        self.discrete = isinstance(action_space, gym.spaces.Discrete)
        if self.discrete:
            head_size = int(action_space.n)
            self.register_buffer("action_offset", torch.tensor(int(action_space.start)))
        elif isinstance(action_space, gym.spaces.Box) and len(action_space.shape) == 1:
            head_size = action_space.shape[0]
            std_shape = (list(hidden_sizes)[-1], head_size) if gsde else (head_size,)  # gSDE: σ_ij per feature i
            self.log_std = nn.Parameter(torch.full(std_shape, float(log_std_init)))
            self.register_buffer("action_low", torch.as_tensor(action_space.low, dtype=torch.float32))
            self.register_buffer("action_high", torch.as_tensor(action_space.high, dtype=torch.float32))
        else:
            raise UnsupportedSpaceError(
                f"action space {action_space} is not supported by agent=mlp; expected Discrete or a 1-D Box"
            )
        if gsde and self.discrete:
            raise UnsupportedSpaceError(f"agent.gsde=true needs a Box action space, got {action_space}")
        if sde_sample_freq < 1:
            raise ValueError(f"agent.sde_sample_freq={sde_sample_freq} must be >= 1 (steps between noise draws)")
        self.gsde, self.sde_sample_freq = gsde, int(sde_sample_freq)
        self.exploration: Tensor | None = None  # gSDE: (N, H, A) noise matrices, one per env
        self.acts_since_draw = 0
        hidden = list(hidden_sizes)
        self.shared_trunk = shared_trunk
        if shared_trunk:
            self.shared = MLP([obs_size, *hidden], activation, math.sqrt(2), ortho_init)
            self.actor = MLP([hidden[-1], head_size], activation, 0.01, ortho_init)
            self.critic = MLP([hidden[-1], 1], activation, 1.0, ortho_init)
        else:
            self.actor = MLP([obs_size, *hidden, head_size], activation, 0.01, ortho_init)
            self.critic = MLP([obs_size, *hidden, 1], activation, 1.0, ortho_init)

    def _features(self, obs: Tensor) -> Tensor:
        return self.shared.activation(self.shared(obs)) if self.shared_trunk else obs

    def _distribution(self, features: Tensor) -> tuple[Categorical | DiagGaussian, Tensor]:
        """The action distribution and the actor's last features (N, H)."""
        head, latent = self.actor.output_and_latent(features)
        if self.discrete:
            return Categorical.from_logits(head), latent
        if self.gsde:
            # noise ε = φ(s)·W with W_ij ~ N(0, σ_ij²): a Gaussian of variance Σ_i φ_i² σ_ij² per action dim.
            # As in SB3 (learn_features=False), the features carry no gradient from the noise scale.
            latent = latent.detach()
            variance = latent.square() @ torch.exp(2 * self.log_std)  # (N, A)
            return DiagGaussian(head, 0.5 * torch.log(variance + GSDE_EPSILON)), latent
        return DiagGaussian(head, self.log_std), latent

    def _gsde_noise(self, latent: Tensor) -> Tensor:
        """φ(s)·W_n for each env n, with new matrices W every ``sde_sample_freq`` steps: (N, A)."""
        n = latent.shape[0]
        if self.exploration is None or self.exploration.shape[0] != n or self.acts_since_draw % self.sde_sample_freq == 0:
            std = self.log_std.detach().exp()  # (H, A)
            self.exploration = std * torch.randn(n, *std.shape, device=std.device)  # (N, H, A)
            self.acts_since_draw = 0
        self.acts_since_draw += 1
        return (latent.unsqueeze(1) @ self.exploration).squeeze(1)

    def get_extra_state(self) -> dict:
        """gSDE's noise matrices and the steps since their draw, saved with the weights so that a resumed
        run goes on with the noise an uninterrupted one would use."""
        return {"exploration": self.exploration, "acts_since_draw": self.acts_since_draw}

    def set_extra_state(self, state: dict) -> None:
        exploration = state["exploration"]
        device = next(self.parameters()).device
        self.exploration = None if exploration is None else exploration.to(device)
        self.acts_since_draw = int(state["acts_since_draw"])

    def act(self, obs: Tensor, deterministic: bool = False) -> PolicyStep:
        features = self._features(obs)  # (N, H)
        dist, latent = self._distribution(features)
        if deterministic:
            action = dist.mode()
        elif self.gsde:
            action = dist.mean + self._gsde_noise(latent)
        else:
            action = dist.sample()
        log_prob = dist.log_prob(action).unsqueeze(-1)  # (N, 1)
        value = self.critic(features)  # (N, 1)
        return PolicyStep(action, log_prob, value, torch.ones_like(log_prob, dtype=torch.bool))

    def evaluate(self, obs: Tensor, action: Tensor) -> PolicyEvaluation:
        features = self._features(obs)
        dist, _ = self._distribution(features)
        return PolicyEvaluation(
            dist.log_prob(action).unsqueeze(-1), dist.entropy().unsqueeze(-1), self.critic(features), dist
        )

    def value(self, obs: Tensor) -> Tensor:
        return self.critic(self._features(obs)).squeeze(-1)

    def decision_values(self, obs: Tensor, action: Tensor) -> Tensor:
        return self.critic(self._features(obs))  # (B, 1)

    def env_action(self, step: PolicyStep) -> Tensor:
        if self.discrete:
            return step.action + self.action_offset
        return torch.maximum(torch.minimum(step.action, self.action_high), self.action_low)

    def actor_parameters(self) -> list[nn.Parameter]:
        extra = [self.log_std] if not self.discrete else []
        shared = list(self.shared.parameters()) if self.shared_trunk else []
        return [*shared, *self.actor.parameters(), *extra]

    def critic_parameters(self) -> list[nn.Parameter]:
        if self.shared_trunk:
            raise ValueError("agent.shared_trunk=true has no separate critic; TRPO needs shared_trunk=false")
        return list(self.critic.parameters())

