"""Policy heads against torch.distributions."""

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch.distributions import Categorical as TorchCategorical
from torch.distributions import Independent, Normal, kl_divergence

from agents.base import UnsupportedSpaceError
from agents.distributions import Categorical, DiagGaussian
from agents.mlp import MLPActorCritic


def test_categorical_matches_torch():
    logits = torch.randn(6, 4)
    ours, ref = Categorical.from_logits(logits), TorchCategorical(logits=logits)
    action = torch.randint(0, 4, (6,))
    torch.testing.assert_close(ours.log_prob(action), ref.log_prob(action))
    torch.testing.assert_close(ours.entropy(), ref.entropy())
    other = torch.randn(6, 4)
    torch.testing.assert_close(ours.kl(Categorical.from_logits(other)), kl_divergence(ref, TorchCategorical(logits=other)))


def test_token_categorical_handles_extra_dims():
    logits = torch.randn(2, 5, 11)  # (B, L, V)
    tokens = torch.randint(0, 11, (2, 5))
    torch.testing.assert_close(Categorical.from_logits(logits).log_prob(tokens), TorchCategorical(logits=logits).log_prob(tokens))


@pytest.mark.parametrize("shape", [(1, 2), (16, 3), (5, 7, 50)])
def test_categorical_sample_draws_what_torch_multinomial_draws(shape):
    """The same actions from the same generator state, and the generator left in the same state."""
    logits = torch.randn(shape, generator=torch.Generator().manual_seed(1)) * 3
    dist = Categorical.from_logits(logits)
    for seed in range(20):
        torch.manual_seed(seed)
        ours, after = dist.sample(), torch.rand(())
        torch.manual_seed(seed)
        flat = dist.log_probs.exp().reshape(-1, shape[-1])
        theirs = torch.multinomial(flat, 1).reshape(shape[:-1])
        assert torch.equal(ours, theirs) and torch.equal(after, torch.rand(()))
    torch.manual_seed(0)  # and the frequencies are the probabilities
    pair = logits.reshape(-1, shape[-1])[0, :2]
    draws = Categorical.from_logits(pair.expand(20000, 2)).sample()
    probabilities = torch.softmax(pair, -1)
    assert abs(float((draws == 1).float().mean()) - float(probabilities[1])) < 0.015


def test_categorical_sample_wide_inverts_the_cumulative_distribution_on_cpu():
    """Each draw is the first category whose cumulative probability exceeds the row's uniform (a loop in
    float64 from the same uniforms), zero-probability categories never come up, and the frequencies of
    many draws are the probabilities."""
    logits = torch.randn(6, 50, generator=torch.Generator().manual_seed(2)) * 2
    logits[:, ::3] = -float("inf")  # probability 0, as top-k / top-p filtering leaves them
    dist = Categorical.from_logits(logits)
    probs = dist.log_probs.exp().double()
    for seed in range(20):
        torch.manual_seed(seed)
        drawn = dist.sample_wide()
        torch.manual_seed(seed)
        uniforms = torch.rand(6, 1).double().squeeze(-1) * probs.sum(-1)
        for row in range(6):
            total, expected = 0.0, None
            for category in range(50):
                total += float(probs[row, category])
                if total > uniforms[row]:
                    expected = category
                    break
            assert int(drawn[row]) == expected and expected % 3 != 0
    torch.manual_seed(0)
    draws = Categorical(dist.log_probs[0].expand(200_000, 50)).sample_wide()
    frequencies = torch.bincount(draws, minlength=50).double() / 200_000
    assert (frequencies[::3] == 0).all()
    assert (frequencies - probs[0]).abs().max() < 4 * (probs[0] * (1 - probs[0]) / 200_000).sqrt().max()


def test_diag_gaussian_matches_torch():
    mean, log_std = torch.randn(5, 3), torch.randn(3)
    ours = DiagGaussian(mean, log_std)
    ref = Independent(Normal(mean, log_std.exp()), 1)
    action = torch.randn(5, 3)
    torch.testing.assert_close(ours.log_prob(action), ref.log_prob(action))
    torch.testing.assert_close(ours.entropy(), ref.entropy())
    other_mean, other_log_std = torch.randn(5, 3), torch.randn(3)
    other_ref = Independent(Normal(other_mean, other_log_std.exp()), 1)
    torch.testing.assert_close(ours.kl(DiagGaussian(other_mean, other_log_std)), kl_divergence(ref, other_ref))


def test_gaussian_sampling_statistics():
    torch.manual_seed(0)
    dist = DiagGaussian(torch.full((20000, 2), 1.5), torch.tensor([0.0, -1.0]))
    samples = dist.sample()
    torch.testing.assert_close(samples.mean(0), torch.tensor([1.5, 1.5]), atol=0.03, rtol=0)
    torch.testing.assert_close(samples.std(0), torch.tensor([1.0, np.exp(-1.0)], dtype=torch.float32), atol=0.02, rtol=0)


def test_box_policy_stores_unclipped_sample_and_clips_for_env():
    space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    policy = MLPActorCritic(gym.spaces.Box(-1, 1, (3,), np.float32), space, log_std_init=2.0)
    torch.manual_seed(0)
    step = policy.act(torch.zeros(256, 3))
    assert step.action.abs().max() > 1.0  # wide Gaussian: samples leave the bounds
    env_action = policy.env_action(step)
    assert env_action.abs().max() <= 1.0
    # the stored action is the one scored: evaluate reproduces the rollout log-prob
    torch.testing.assert_close(policy.evaluate(torch.zeros(256, 3), step.action).log_prob, step.log_prob)


def test_discrete_policy_act_and_evaluate_agree_exactly():
    policy = MLPActorCritic(gym.spaces.Box(-1, 1, (4,), np.float32), gym.spaces.Discrete(3))
    obs = torch.randn(64, 4)
    step = policy.act(obs)
    evaluation = policy.evaluate(obs, step.action)
    assert torch.equal(evaluation.log_prob, step.log_prob)
    assert torch.equal(evaluation.value, step.value)
    assert step.log_prob.shape == (64, 1) and step.mask.all()


def test_unsupported_spaces_are_named():
    with pytest.raises(UnsupportedSpaceError, match="Discrete\\(16\\)"):
        MLPActorCritic(gym.spaces.Discrete(16), gym.spaces.Discrete(4))
    with pytest.raises(UnsupportedSpaceError, match="MultiBinary"):
        MLPActorCritic(gym.spaces.Box(-1, 1, (4,)), gym.spaces.MultiBinary(3))


def test_detached_gaussian_is_a_snapshot_of_a_live_log_std():
    log_std = torch.nn.Parameter(torch.zeros(2))
    frozen = DiagGaussian(torch.zeros(3, 2), log_std).detach()
    with torch.no_grad():
        log_std.add_(1.0)
    assert torch.equal(frozen.log_std, torch.zeros(2))
