"""GAE and group baselines against naive Python loops written straight from the definitions."""

import math

import pytest
import torch

from ppo_core.advantages import gae, group_advantages, place_at_last_decision, place_rewards, whiten
from ppo_core.config import PPOConfig
from ppo_core.errors import ConfigError
from ppo_core.group_baseline import rollout_group_advantages, start_groups


def naive_gae(rewards, values, next_values, terminated, ends, gamma, lam):
    """Per-env backward recursion over steps, one decision per step, plain floats."""
    T, N = len(rewards), len(rewards[0])
    adv = [[0.0] * N for _ in range(T)]
    for n in range(N):
        running = 0.0
        for t in reversed(range(T)):
            if ends[t][n]:
                running = 0.0
            nv = 0.0 if terminated[t][n] else float(next_values[t][n])
            delta = float(rewards[t][n]) + gamma * nv - float(values[t][n])
            running = delta + gamma * lam * running
            adv[t][n] = running
    return torch.tensor(adv)


def single_decision(rewards, values, next_values, terminated, ends, gamma, lam):
    mask = torch.ones(*rewards.shape, 1, dtype=torch.bool)
    adv, ret = gae(rewards.unsqueeze(-1), values.unsqueeze(-1), next_values, terminated, ends, mask, gamma, lam)
    return adv.squeeze(-1), ret.squeeze(-1)


def random_rollout(T=7, N=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    rewards = torch.randn(T, N, generator=g)
    values = torch.randn(T, N, generator=g)
    bootstrap = torch.randn(N, generator=g)
    terminated = torch.zeros(T, N, dtype=torch.bool)
    truncated = torch.zeros(T, N, dtype=torch.bool)
    terminated[2, 0] = True  # termination mid-rollout
    truncated[4, 1] = True  # time limit mid-rollout
    terminated[6, 2] = True  # termination on the last step
    final_value_of_truncated = torch.tensor(3.5)
    next_values = torch.cat([values[1:], bootstrap.unsqueeze(0)])
    next_values[4, 1] = final_value_of_truncated  # V of the real final observation
    return rewards, values, next_values, terminated, terminated | truncated


def test_gae_matches_naive_loop_with_termination_and_truncation():
    rewards, values, next_values, terminated, ends = random_rollout()
    adv, ret = single_decision(rewards, values, next_values, terminated, ends, 0.97, 0.9)
    expected = naive_gae(rewards.tolist(), values.tolist(), next_values.tolist(), terminated.tolist(), ends.tolist(), 0.97, 0.9)
    torch.testing.assert_close(adv, expected)
    torch.testing.assert_close(ret, expected + values)


def test_truncation_bootstraps_from_final_observation_value():
    rewards, values, next_values, terminated, ends = random_rollout()
    adv, _ = single_decision(rewards, values, next_values, terminated, ends, 0.97, 0.9)
    # the step that hit the time limit: its trace is cut, but its TD target uses V(final obs) = 3.5
    torch.testing.assert_close(adv[4, 1], rewards[4, 1] + 0.97 * 3.5 - values[4, 1])
    # a terminated step has no future value at all
    torch.testing.assert_close(adv[2, 0], rewards[2, 0] - values[2, 0])


def test_lambda_one_gives_monte_carlo_returns_minus_values():
    rewards, values, next_values, terminated, ends = random_rollout()
    gamma = 0.9
    adv, ret = single_decision(rewards, values, next_values, terminated, ends, gamma, 1.0)
    T, N = rewards.shape
    for n in range(N):
        for t in range(T):
            g, discount, k = 0.0, 1.0, t
            while True:
                g += discount * float(rewards[k, n])
                discount *= gamma
                if ends[k, n]:
                    if not terminated[k, n]:
                        g += discount * float(next_values[k, n])
                    break
                if k == T - 1:
                    g += discount * float(next_values[k, n])
                    break
                k += 1
            torch.testing.assert_close(ret[t, n], torch.tensor(g), rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(adv[t, n], torch.tensor(g) - values[t, n], rtol=1e-5, atol=1e-5)


def test_lambda_zero_gives_one_step_td_errors():
    rewards, values, next_values, terminated, ends = random_rollout()
    adv, _ = single_decision(rewards, values, next_values, terminated, ends, 0.95, 0.0)
    td = rewards + 0.95 * next_values * (~terminated) - values
    torch.testing.assert_close(adv, td)


def test_token_decisions_equal_a_flat_sequence_of_valid_decisions():
    """Tokens of one step are consecutive decisions; padding is skipped as if it were not there."""
    g = torch.Generator().manual_seed(1)
    T, N, L = 3, 2, 4
    values = torch.randn(T, N, L, generator=g)
    step_rewards = torch.randn(T, N, generator=g)
    mask = torch.tensor([[[1, 1, 1, 0], [1, 1, 0, 0]],
                         [[1, 0, 0, 0], [1, 1, 1, 1]],
                         [[1, 1, 0, 0], [1, 0, 0, 0]]], dtype=torch.bool)
    terminated = torch.tensor([[False, True], [True, False], [False, False]])
    ends = terminated.clone()
    bootstrap = torch.randn(N, generator=g)
    next_values = torch.cat([values[1:, :, 0], bootstrap.unsqueeze(0)])
    gamma, lam = 0.99, 0.8
    rewards = place_at_last_decision(step_rewards, mask)
    adv, _ = gae(rewards, values, next_values, terminated, ends, mask, gamma, lam)
    for n in range(N):
        # flatten the valid decisions of env n into one sequence
        seq = [(t, l) for t in range(T) for l in range(L) if mask[t, n, l]]
        running = 0.0
        for i in reversed(range(len(seq))):
            t, l = seq[i]
            last_of_step = i == len(seq) - 1 or seq[i + 1][0] != t
            r = float(step_rewards[t, n]) if last_of_step else 0.0
            if last_of_step:
                nv = 0.0 if terminated[t, n] else float(next_values[t, n])
                if ends[t, n]:
                    running = 0.0
            else:
                nv = float(values[seq[i + 1][0], n, seq[i + 1][1]])
            running = r + gamma * nv - float(values[t, n, l]) + gamma * lam * running
            torch.testing.assert_close(adv[t, n, l], torch.tensor(running), rtol=1e-5, atol=1e-5)
    assert (adv[~mask] == 0).all()


def test_whiten_uses_valid_entries_only():
    x = torch.tensor([[1.0, 2.0, 100.0], [3.0, 4.0, -50.0]])
    mask = torch.tensor([[True, True, False], [True, True, False]])
    out = whiten(x, mask)
    valid = torch.tensor([1.0, 2.0, 3.0, 4.0])
    expected = (valid - valid.mean()) / (valid.std() + 1e-8)
    torch.testing.assert_close(out[mask], expected)
    assert (out[~mask] == 0).all()


def naive_group_advantages(returns, groups, baseline, scale_by_std=False, eps=1e-4):
    """Each copy against the others of its group, step by step, in plain floats."""
    out = []
    for row in returns.tolist():
        advantages = []
        for i, r in enumerate(row):
            group = [row[j] for j in range(len(row)) if groups[j] == groups[i]]
            others = [row[j] for j in range(len(row)) if groups[j] == groups[i] and j != i]
            if baseline == "leave_one_out":
                advantages.append(r - sum(others) / len(others))
                continue
            mean = sum(group) / len(group)
            std = math.sqrt(sum((x - mean) ** 2 for x in group) / (len(group) - 1))
            advantages.append((r - mean) / (std + eps) if scale_by_std else r - mean)
        out.append(advantages)
    return torch.tensor(out, dtype=returns.dtype)


GROUPS = [7, 7, 3, 3, 3, 7, 0, 0]  # ids need not be 0..G-1 nor their copies adjacent; sizes 3, 3, 2


@pytest.mark.parametrize("baseline, scale", [("leave_one_out", False), ("group_mean", False), ("group_mean", True)])
def test_group_advantages_match_a_naive_loop(baseline, scale):
    returns = torch.randn(3, len(GROUPS), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    returns[2, 6:] = 1.5  # a group of equal returns: advantage 0, also when divided by its std
    got = group_advantages(returns, torch.tensor(GROUPS), baseline, scale)
    torch.testing.assert_close(got, naive_group_advantages(returns, GROUPS, baseline, scale))
    assert torch.equal(got[2, 6:], torch.zeros(2, dtype=torch.float64))


def test_group_mean_advantages_sum_to_zero_and_leave_one_out_is_the_mean_scaled_by_k_over_k_minus_1():
    """RLOO's A_i = K/(K−1)·(R_i − mean), Ahmadian et al. 2024 eq. 9, checked by hand for K = 4."""
    returns = torch.tensor([[1.0, 2.0, 4.0, 9.0]])
    groups = torch.zeros(4, dtype=torch.long)
    centred = group_advantages(returns, groups, "group_mean")
    assert centred.tolist() == [[-3.0, -2.0, 0.0, 5.0]]
    torch.testing.assert_close(group_advantages(returns, groups, "leave_one_out"), centred * 4 / 3)
    assert group_advantages(returns, groups, "leave_one_out")[0, 0] == 1.0 - (2.0 + 4.0 + 9.0) / 3


def test_a_rollout_group_advantage_sums_each_episodes_decisions_and_fills_its_valid_decisions():
    algo = PPOConfig(advantage="leave_one_out")
    rewards = torch.tensor([[[0.0, 1.0, 0.0], [0.5, 0.5, 2.0], [3.0, 0.0, 0.0], [0.0, 0.0, -1.0]]])  # (1, 4, 3)
    mask = torch.tensor([[[1, 1, 0], [1, 1, 1], [1, 0, 0], [1, 1, 1]]], dtype=torch.bool)
    groups = torch.tensor([0, 0, 1, 1])
    got = rollout_group_advantages(algo, groups, rewards, torch.ones(1, 4, dtype=torch.bool), mask)
    expected = torch.tensor([1.0 - 3.0, 3.0 - 1.0, 3.0 - (-1.0), -1.0 - 3.0])  # returns 1, 3, 3, −1
    torch.testing.assert_close(got, expected[None, :, None] * mask)
    with pytest.raises(ConfigError, match="compares the returns of single-step episodes"):
        rollout_group_advantages(algo, groups, rewards, torch.tensor([[True, False, True, True]]), mask)


class Copies:
    def __init__(self, groups):
        self.num_envs = 4
        if groups is not None:
            self.start_groups = torch.tensor(groups)


@pytest.mark.parametrize("settings, groups, message", [
    ({"advantage": "leave_one_out"}, None, "algo.advantage=leave_one_out compares episodes that start from the same "
                                           "state, and this env reports no such copies"),
    ({"advantage": "group_mean"}, [0, 0, 1, 2], "needs at least 2 copies per start state; the env's smallest group has 1"),
    ({"group_std": True}, [0, 0, 1, 1], "algo.group_std=true divides group_mean advantages .* it needs "
                                        "algo.advantage=group_mean, not gae"),
    ({"advantage": "leave_one_out", "group_std": True}, [0, 0, 1, 1], "needs algo.advantage=group_mean, not leave_one_out"),
])
def test_a_group_baseline_the_env_cannot_serve_is_a_config_error(settings, groups, message):
    with pytest.raises(ConfigError, match=message):
        start_groups(PPOConfig(**settings), Copies(groups))
    assert start_groups(PPOConfig(), Copies(None)) is None


def test_an_envs_own_per_decision_rewards_reach_gae_at_their_decisions():
    """One completion of 3 tokens (and a padded 4th), γ = 1, λ = 0.5, terminal: by hand,
    δ_2 = 0.7 − 0.2 = 0.5, δ_1 = −0.2 + 0.2 − 0.4 = −0.4, δ_0 = −0.1 + 0.4 − 0.5 = −0.2;
    A_2 = 0.5, A_1 = −0.4 + 0.5·0.5 = −0.15, A_0 = −0.2 + 0.5·(−0.15) = −0.275."""
    mask = torch.tensor([[[True, True, True, False]]])
    spread = torch.tensor([[[-0.1, -0.2, 0.7, 9.0]]])  # the padded decision's 9 is dropped
    rewards = place_rewards(torch.tensor([[0.4]]), mask, spread)
    torch.testing.assert_close(rewards, torch.tensor([[[-0.1, -0.2, 0.7, 0.0]]]))
    values = torch.tensor([[[0.5, 0.4, 0.2, 0.0]]])
    ones = torch.ones(1, 1, dtype=torch.bool)
    advantages, _ = gae(rewards, values, torch.zeros(1, 1), ones, ones, mask, gamma=1.0, gae_lambda=0.5)
    torch.testing.assert_close(advantages, torch.tensor([[[-0.275, -0.15, 0.5, 0.0]]]))
    assert torch.equal(place_rewards(torch.tensor([[0.4]]), mask), place_at_last_decision(torch.tensor([[0.4]]), mask))
