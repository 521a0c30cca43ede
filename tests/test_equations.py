"""The named equations against naive references: loops over plain Python numbers, NumPy, or a
hand-computed value on a tiny case."""

from __future__ import annotations

import math

import numpy as np
import torch

from ppo_core.advantages import explained_variance
from ppo_core.losses import entropy_bonus


def test_entropy_bonus_is_minus_the_coefficient_times_the_mean_valid_entropy():
    entropy = torch.tensor([[0.5, 1.0, 7.0], [2.0, 9.0, 9.0]])
    mask = torch.tensor([[True, True, False], [True, False, False]])
    loss, mean = entropy_bonus(entropy, 0.1, mask)
    valid = [0.5, 1.0, 2.0]  # by hand: the masked-out 7 and 9s never count
    assert math.isclose(mean.item(), sum(valid) / 3, rel_tol=1e-7)
    assert math.isclose(loss.item(), -0.1 * sum(valid) / 3, rel_tol=1e-7)
    loss, mean = entropy_bonus(entropy, 0.01)  # no mask: every decision
    assert math.isclose(mean.item(), 28.5 / 6, rel_tol=1e-7) and math.isclose(loss.item(), -0.285 / 6, rel_tol=1e-6)


def test_entropy_bonus_gradient_raises_the_entropy():
    logits = torch.tensor([[2.0, 0.0, -1.0]], requires_grad=True)
    entropy = torch.distributions.Categorical(logits=logits).entropy().unsqueeze(-1)  # (1, 1)
    loss, _ = entropy_bonus(entropy, 0.5)
    loss.backward()
    stepped = torch.distributions.Categorical(logits=logits.detach() - 0.1 * logits.grad).entropy()
    assert stepped.item() > entropy.item()


def naive_explained_variance(predictions: list[float], targets: list[float]) -> float:
    n = len(targets)
    mean_t = sum(targets) / n
    residuals = [t - p for t, p in zip(targets, predictions)]
    mean_r = sum(residuals) / n
    var_t = sum((t - mean_t) ** 2 for t in targets) / (n - 1)
    var_r = sum((r - mean_r) ** 2 for r in residuals) / (n - 1)
    return 1 - var_r / var_t


def test_explained_variance_matches_a_loop_over_the_valid_entries():
    generator = torch.Generator().manual_seed(0)
    targets = torch.randn(6, 4, generator=generator, dtype=torch.float64)
    predictions = targets + 0.3 * torch.randn(6, 4, generator=generator, dtype=torch.float64)
    mask = torch.rand(6, 4, generator=generator) < 0.7
    expected = naive_explained_variance(predictions[mask].tolist(), targets[mask].tolist())
    assert math.isclose(explained_variance(predictions, targets, mask).item(), expected, rel_tol=1e-12)
    full = naive_explained_variance(predictions.flatten().tolist(), targets.flatten().tolist())
    assert math.isclose(explained_variance(predictions, targets).item(), full, rel_tol=1e-12)


def test_explained_variance_at_its_landmarks():
    targets = torch.tensor([1.0, 2.0, 4.0, 8.0])
    assert explained_variance(targets, targets).item() == 1.0  # a perfect critic
    assert abs(explained_variance(torch.full((4,), 3.75), targets).item()) < 1e-7  # a constant: 0
    assert explained_variance(-targets, targets).item() < 0  # worse than a constant
    assert math.isnan(explained_variance(torch.zeros(3), torch.ones(3)).item())  # no variance to explain
    assert np.isclose(explained_variance(targets + 1.0, targets).item(), 1.0)  # a shift is no error


def test_instructgpt_reward_is_score_less_penalties_less_beta_times_the_summed_kl():
    from envs.text_bandit import instructgpt_reward

    scores = torch.tensor([0.8, -0.2, 1.5])
    penalty = torch.tensor([0.0, 1.0, 0.5])
    per_token_kl = torch.tensor([[0.1, 0.2, 0.0], [0.3, -0.1, 0.4], [0.0, 0.0, 0.0]])  # zero off the completion
    kl_coef = 0.05
    expected = [s - p - kl_coef * sum(kl) for s, p, kl in zip(scores.tolist(), penalty.tolist(), per_token_kl.tolist())]
    torch.testing.assert_close(instructgpt_reward(scores, penalty, per_token_kl, kl_coef), torch.tensor(expected))
    torch.testing.assert_close(instructgpt_reward(scores, penalty, per_token_kl, 0.0), scores - penalty)


def test_ptx_loss_is_the_mean_next_token_nll_of_a_log_softmax_loop():
    from ppo_core.align.objective_terms import ptx_loss

    generator = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 5, 7, generator=generator)
    blocks = torch.randint(0, 7, (2, 5), generator=generator)
    nll = []
    for b in range(2):
        for t in range(4):  # position t predicts token t + 1; the last position predicts nothing
            row = logits[b, t].tolist()
            log_normaliser = math.log(sum(math.exp(v) for v in row))
            nll.append(log_normaliser - row[int(blocks[b, t + 1])])
    assert math.isclose(ptx_loss(logits, blocks).item(), sum(nll) / len(nll), rel_tol=1e-6)
