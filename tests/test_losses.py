"""Losses against hand computations on tiny tensors."""

import math

import torch

from ppo_core.losses import approx_kl, clipped_surrogate_loss, kl_penalty_surrogate_loss, policy_gradient_loss, value_loss


def test_clipped_surrogate_matches_hand_computation():
    eps = 0.2
    # ratios 1.1 (inside), 1.5 (above), 0.5 (below), 0.9 (inside) against advantages of both signs
    ratios = [1.1, 1.5, 0.5, 0.9, 1.5, 0.5]
    advantages = [2.0, 2.0, 2.0, -1.0, -1.0, -1.0]
    old = torch.zeros(6, 1)
    new = torch.log(torch.tensor(ratios)).unsqueeze(-1)
    adv = torch.tensor(advantages).unsqueeze(-1)
    loss, stats = clipped_surrogate_loss(new, old, adv, eps)
    # min(r·A, clip(r)·A) by hand:
    # A>0: 1.1·2=2.2 ; min(3.0, 2.4)=2.4 ; min(1.0, 1.6)=1.0
    # A<0: min(-0.9, -0.9)=-0.9 ; min(-1.5, -1.2)=-1.5 ; min(-0.5, -0.8)=-0.8
    objective = [2.2, 2.4, 1.0, -0.9, -1.5, -0.8]
    assert math.isclose(loss.item(), -sum(objective) / 6, rel_tol=1e-6)
    # |r - 1| > eps for 1.5, 0.5, 1.5, 0.5
    assert math.isclose(stats["clipfrac"].item(), 4 / 6, rel_tol=1e-6)


def test_clipped_surrogate_gradient_vanishes_where_clipped():
    new = torch.log(torch.tensor([[1.5], [1.1]])).requires_grad_()
    loss, _ = clipped_surrogate_loss(new, torch.zeros(2, 1), torch.tensor([[1.0], [1.0]]), 0.2)
    loss.backward()
    assert new.grad[0].item() == 0.0  # above 1 + eps with A > 0: no incentive to move further
    assert new.grad[1].item() != 0.0


def test_mask_excludes_padding():
    new = torch.tensor([[0.1, 5.0], [0.2, 7.0]])
    adv = torch.tensor([[1.0, 100.0], [-1.0, 100.0]])
    mask = torch.tensor([[True, False], [True, False]])
    masked, _ = clipped_surrogate_loss(new, torch.zeros(2, 2), adv, 0.2, mask)
    plain, _ = clipped_surrogate_loss(new[:, :1], torch.zeros(2, 1), adv[:, :1], 0.2)
    torch.testing.assert_close(masked, plain)


def test_identical_policies_give_ratio_one_and_zero_kl():
    log_prob = torch.randn(5, 3)
    _, stats = clipped_surrogate_loss(log_prob, log_prob.clone(), torch.randn(5, 3), 0.2)
    assert stats["ratio"].item() == 1.0
    assert stats["approx_kl"].item() == 0.0
    assert stats["clipfrac"].item() == 0.0


def test_approx_kl_is_the_k3_estimator():
    log_ratio = torch.tensor([0.1, -0.3, 0.0])
    r = log_ratio.exp()
    torch.testing.assert_close(approx_kl(log_ratio), ((r - 1) - log_ratio).mean())


def test_kl_penalty_objective_by_hand():
    new = torch.log(torch.tensor([[1.2], [0.7]]))
    adv = torch.tensor([[1.0], [-2.0]])
    loss, stats = kl_penalty_surrogate_loss(new, torch.zeros(2, 1), adv, penalty_coef=0.5)
    kl = ((0.2 - math.log(1.2)) + (-0.3 - math.log(0.7))) / 2
    surrogate = (1.2 * 1.0 + 0.7 * -2.0) / 2
    assert math.isclose(loss.item(), -surrogate + 0.5 * kl, rel_tol=1e-5)
    assert math.isclose(stats["approx_kl"].item(), kl, rel_tol=1e-5)


def test_value_loss_plain_and_clipped():
    values = torch.tensor([[1.0], [3.0]])
    returns = torch.tensor([[2.0], [0.0]])
    old = torch.tensor([[1.5], [1.0]])
    plain, _ = value_loss(values, returns)
    assert math.isclose(plain.item(), 0.5 * (1.0 + 9.0) / 2)
    clipped, _ = value_loss(values, returns, old, clip_eps=0.2)
    # clipped predictions: 1.5 + clamp(-0.5) = 1.3 ; 1.0 + clamp(2.0) = 1.2
    # max((1-2)², (1.3-2)²) = 1.0 ; max((3-0)², (1.2-0)²) = 9.0
    assert math.isclose(clipped.item(), 0.5 * (1.0 + 9.0) / 2)
    values = torch.tensor([[2.5]])
    clipped, _ = value_loss(values, torch.tensor([[3.0]]), torch.tensor([[1.0]]), clip_eps=0.2)
    # prediction 2.5 error 0.25 ; clipped 1.2 error 3.24 -> pessimistic max
    assert math.isclose(clipped.item(), 0.5 * 3.24, rel_tol=1e-6)


def test_policy_gradient_loss():
    log_prob = torch.tensor([[-0.5], [-1.0]])
    adv = torch.tensor([[2.0], [-1.0]])
    loss, _ = policy_gradient_loss(log_prob, adv)
    assert math.isclose(loss.item(), -((-0.5 * 2.0) + (-1.0 * -1.0)) / 2)
