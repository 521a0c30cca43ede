"""Generalized state-dependent exploration (gSDE): the action noise is φ(s)·W with W_ij ~ N(0, σ_ij²),
held for ``sde_sample_freq`` steps, and log-probs are those of its Gaussian marginal."""

import gymnasium as gym
import numpy as np
import pytest
import torch

from agents.base import UnsupportedSpaceError
from agents.mlp import GSDE_EPSILON, MLPActorCritic
from ppo_core.build import run_training
from tests.conftest import make_config

OBS = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
ACTIONS = gym.spaces.Box(-2.0, 2.0, (2,), np.float32)


def policy(**kwargs) -> MLPActorCritic:
    torch.manual_seed(0)
    pi = MLPActorCritic(OBS, ACTIONS, hidden_sizes=(8, 5), gsde=True, **kwargs)
    torch.nn.init.normal_(pi.log_std, -0.5, 0.3)  # σ_ij all different
    return pi


def actor_features(pi: MLPActorCritic, obs: torch.Tensor) -> torch.Tensor:
    """φ(s): the actor's last hidden layer, computed layer by layer."""
    first, second, _ = pi.actor.layers
    return torch.tanh(second(torch.tanh(first(obs))))


def test_log_prob_is_that_of_the_marginal_gaussian():
    pi, obs = policy(), torch.randn(6, 3)
    action = torch.randn(6, 2)
    phi = actor_features(pi, obs)
    variance = torch.stack([(phi.square() * pi.log_std[:, j].exp().square()).sum(-1) for j in range(2)], -1)
    expected = torch.distributions.Normal(pi.actor(obs), (variance + GSDE_EPSILON).sqrt())
    evaluation = pi.evaluate(obs, action)
    torch.testing.assert_close(evaluation.log_prob.squeeze(-1), expected.log_prob(action).sum(-1))
    torch.testing.assert_close(evaluation.entropy.squeeze(-1), expected.entropy().sum(-1))


def test_noise_variance_matches_the_marginal():
    pi, obs = policy(sde_sample_freq=1), torch.randn(1, 3).expand(20000, 3)
    with torch.no_grad():
        step = pi.act(obs)  # 20,000 envs in the same state: 20,000 independent noise matrices
        dist, _ = pi._distribution(obs)
    noise = step.action - dist.mean
    torch.testing.assert_close(noise.mean(0), torch.zeros(2), atol=0.03, rtol=0)
    torch.testing.assert_close(noise.var(0), dist.log_std[0].exp().square(), rtol=0.05, atol=0)


def test_noise_is_held_for_sde_sample_freq_steps_and_differs_between_envs():
    pi, obs = policy(sde_sample_freq=3), torch.randn(1, 3).expand(2, 3)
    with torch.no_grad():
        actions = [pi.act(obs).action for _ in range(4)]
    assert torch.equal(actions[0], actions[1]) and torch.equal(actions[1], actions[2])
    assert not torch.equal(actions[2], actions[3])
    assert not torch.equal(actions[0][0], actions[0][1])


def test_deterministic_action_is_the_mean_and_discrete_actions_are_refused():
    pi, obs = policy(), torch.randn(4, 3)
    with torch.no_grad():
        torch.testing.assert_close(pi.act(obs, deterministic=True).action, pi.actor(obs))
    with pytest.raises(UnsupportedSpaceError, match="gsde"):
        MLPActorCritic(OBS, gym.spaces.Discrete(3), gsde=True)


@pytest.mark.parametrize("algo", ["ppo", "trpo"])
def test_gsde_trains_through_the_trainer(tmp_path, algo):
    config = make_config(f"algo={algo}", "env=pendulum", "agent.gsde=true", "env.num_envs=2", "algo.num_steps=64",
                         "total_timesteps=256", "eval_every=0", "checkpoint_every=0", "seed=0")
    assert run_training(config, tmp_path)["env_steps"] == 256
    log_std = torch.load(tmp_path / "checkpoint.pt", weights_only=True)["model"]["log_std"]
    assert log_std.shape == (64, 1) and torch.isfinite(log_std).all()
    assert not torch.equal(log_std, torch.zeros(64, 1))  # σ_ij start at exp(0) and are trained
