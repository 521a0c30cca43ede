import math

import pytest
import torch
from torch import nn
from torch.distributions import Categorical, Normal, kl_divergence
from torch.func import functional_call

from ppo_core.kl import exact_kl_from_logits
from ppo_core.masked import masked_mean
from ppo_core.trpo import (
    backtracking_line_search,
    conjugate_gradient,
    fisher_vector_product,
    flat_grad,
    flat_params,
    natural_step,
    set_flat_params,
    trpo_step,
)


def categorical_policy(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 3)).double()  # 31 parameters


class GaussianPolicy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.mean = nn.Linear(3, 2)
        self.log_std = nn.Parameter(torch.tensor([-0.3, 0.2]))

    def forward(self, obs: torch.Tensor) -> Normal:
        return Normal(self.mean(obs), self.log_std.exp())


def unflatten(module: nn.Module, flat: torch.Tensor) -> dict[str, torch.Tensor]:
    out, offset = {}, 0
    for name, p in module.named_parameters():
        out[name] = flat[offset : offset + p.numel()].view_as(p)
        offset += p.numel()
    return out


def explicit_hessian(module: nn.Module, kl_of_params) -> torch.Tensor:
    """Hessian of kl_of_params(param_dict) over the flat parameters, by torch.autograd.functional."""
    flat = flat_params(module.parameters())
    return torch.autograd.functional.hessian(lambda f: kl_of_params(unflatten(module, f)), flat)


def fvp_matrix(fvp, n: int, dtype: torch.dtype) -> torch.Tensor:
    return torch.stack([fvp(e) for e in torch.eye(n, dtype=dtype)], dim=1)


def test_conjugate_gradient_matches_solve():
    gen = torch.Generator().manual_seed(0)
    m = torch.randn(20, 20, generator=gen, dtype=torch.float64)
    A = m @ m.T + 0.5 * torch.eye(20, dtype=torch.float64)
    b = torch.randn(20, generator=gen, dtype=torch.float64)
    x = conjugate_gradient(lambda v: A @ v, b, iters=60, residual_tol=1e-20)
    assert torch.allclose(x, torch.linalg.solve(A, b), atol=1e-6, rtol=0)
    zero = torch.zeros(20, dtype=torch.float64)
    assert torch.equal(conjugate_gradient(lambda v: A @ v, zero), zero)


def test_conjugate_gradient_respects_iteration_budget():
    A = torch.diag(torch.arange(1.0, 11.0, dtype=torch.float64))
    calls = []
    conjugate_gradient(lambda v: calls.append(1) or A @ v, torch.ones(10, dtype=torch.float64), iters=3)
    assert len(calls) == 3


def test_flat_helpers_round_trip():
    net = categorical_policy()
    params = list(net.parameters())
    flat = flat_params(params)
    assert flat.shape == (31,) and not flat.requires_grad
    ptrs = [p.data_ptr() for p in params]
    new = torch.randn(31, dtype=torch.float64)
    set_flat_params(params, new)
    assert torch.equal(flat_params(params), new)
    assert [p.data_ptr() for p in params] == ptrs
    new.zero_()
    assert not torch.equal(flat_params(params), new)  # no aliasing with the caller's vector
    with pytest.raises(ValueError, match="entries"):
        set_flat_params(params, torch.zeros(30, dtype=torch.float64))


def test_flat_grad_matches_backward_and_zeros_unused():
    net = categorical_policy()
    unused = nn.Parameter(torch.ones(2, dtype=torch.float64))
    y = net(torch.randn(5, 3, dtype=torch.float64)).pow(2).sum()
    g = flat_grad(y, [*net.parameters(), unused], retain_graph=True)
    y.backward()
    assert torch.allclose(g[:31], torch.cat([p.grad.reshape(-1) for p in net.parameters()]))
    assert torch.equal(g[31:], torch.zeros(2, dtype=torch.float64))


def test_fvp_matches_explicit_hessian_categorical():
    net = categorical_policy()
    obs = torch.randn(8, 3, dtype=torch.float64)
    old_logits = net(obs).detach()
    calls = []

    def mean_kl() -> torch.Tensor:
        calls.append(1)
        return exact_kl_from_logits(old_logits, net(obs)).mean()

    fvp = fisher_vector_product(mean_kl, net.parameters(), damping=0.1)
    H = explicit_hessian(
        net, lambda p: exact_kl_from_logits(old_logits, functional_call(net, p, (obs,))).mean()
    )
    eye = torch.eye(31, dtype=torch.float64)
    assert torch.allclose(fvp_matrix(fvp, 31, torch.float64), H + 0.1 * eye, atol=1e-10)
    assert len(calls) == 1  # one first-order graph for all 31 products

    # Independent check that this Hessian is the Fisher information E_s Σ_a π ∇log π ∇log πᵀ.
    fisher = torch.zeros(31, 31, dtype=torch.float64)
    for s in range(8):
        log_pi = torch.log_softmax(net(obs[s]), -1)
        for a in range(3):
            grad = flat_grad(log_pi[a], net.parameters(), retain_graph=True)
            fisher += log_pi[a].exp().detach() * torch.outer(grad, grad) / 8
    assert torch.allclose(H, fisher, atol=1e-10)


def test_fvp_matches_explicit_hessian_gaussian():
    policy = GaussianPolicy().double()
    obs = torch.randn(16, 3, dtype=torch.float64)
    with torch.no_grad():
        old = policy(obs)

    def kl_of(dist: Normal) -> torch.Tensor:
        return kl_divergence(old, dist).sum(-1).mean()

    fvp = fisher_vector_product(lambda: kl_of(policy(obs)), policy.parameters(), damping=0.01)
    H = explicit_hessian(policy, lambda p: kl_of(functional_call(policy, p, (obs,))))
    n = H.shape[0]
    assert n == 10
    damped = H + 0.01 * torch.eye(n, dtype=torch.float64)
    assert torch.allclose(fvp_matrix(fvp, n, torch.float64), damped, atol=1e-10)


def test_fvp_with_token_mask_ignores_padding():
    net = categorical_policy()
    obs = torch.randn(3, 5, 3, dtype=torch.float64)  # (B, T, obs) as tokens of 3 sequences
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]])
    old_logits = net(obs).detach()  # (B, T, V)
    masked = fisher_vector_product(
        lambda: masked_mean(exact_kl_from_logits(old_logits, net(obs)), mask), net.parameters(), damping=0.0
    )
    valid = mask.bool()
    selected = fisher_vector_product(
        lambda: exact_kl_from_logits(old_logits[valid], net(obs[valid])).mean(), net.parameters(), damping=0.0
    )
    v = torch.randn(31, dtype=torch.float64)
    assert torch.allclose(masked(v), selected(v), atol=1e-12)


def test_natural_step_scales_to_kl_limit():
    gen = torch.Generator().manual_seed(4)
    m = torch.randn(6, 6, generator=gen, dtype=torch.float64)
    F = m @ m.T + torch.eye(6, dtype=torch.float64)
    g = torch.randn(6, generator=gen, dtype=torch.float64)
    step = natural_step(g, lambda v: F @ v, max_kl=0.02, cg_iters=20)
    assert float(0.5 * step.full_step @ F @ step.full_step) == pytest.approx(0.02, rel=1e-9)
    direction = torch.linalg.solve(F, g)
    assert torch.allclose(step.full_step, math.sqrt(2 * 0.02 / float(direction @ g)) * direction, atol=1e-9)
    assert step.expected_improve == pytest.approx(float(g @ step.full_step))
    zero = natural_step(torch.zeros(6, dtype=torch.float64), lambda v: F @ v, max_kl=0.02)
    assert torch.equal(zero.full_step, torch.zeros(6, dtype=torch.float64)) and zero.expected_improve == 0.0


def test_line_search_backtracks_on_accept_ratio_and_kl():
    x = torch.zeros(1, dtype=torch.float64)

    def evaluate(candidate: torch.Tensor) -> tuple[float, float]:
        assert torch.equal(candidate, x)  # the candidate is already in the parameters
        v = float(x)
        return v - v * v, v * v  # surrogate x - x², gradient 1 at 0; "KL" x²

    old, step = torch.zeros(1, dtype=torch.float64), torch.ones(1, dtype=torch.float64)
    # frac 1: gain 0; frac 0.5: gain 0.25, ratio 0.5 > 0.1.
    r = backtracking_line_search(evaluate, [x], old, step, expected_improve=1.0, max_kl=1.0)
    assert (r.accepted, r.step_fraction, r.backtracks) == (True, 0.5, 1)
    assert (r.improvement, r.kl) == (0.25, 0.25) and float(x) == 0.5
    # ratio 0.5 < 0.6 rejects frac 0.5; frac 0.25 has ratio 0.75.
    r = backtracking_line_search(evaluate, [x], old, step, 1.0, max_kl=1.0, accept_ratio=0.6)
    assert (r.accepted, r.step_fraction, r.backtracks) == (True, 0.25, 2)
    # KL x² ≤ 0.01 needs frac ≤ 0.1: the first is 0.0625.
    r = backtracking_line_search(evaluate, [x], old, step, 1.0, max_kl=0.01)
    assert (r.accepted, r.step_fraction, r.backtracks, r.kl) == (True, 0.0625, 4, 0.0625**2)


@pytest.fixture
def problem():
    net = categorical_policy(seed=5)
    gen = torch.Generator().manual_seed(6)
    obs = torch.randn(64, 3, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        old_logits = net(obs)
    actions = torch.multinomial(torch.softmax(old_logits, -1), 1, generator=gen).squeeze(1)  # (N,)
    old_log_prob = Categorical(logits=old_logits).log_prob(actions)
    advantages = torch.randn(64, generator=gen, dtype=torch.float64)

    def surrogate() -> torch.Tensor:
        log_prob = Categorical(logits=net(obs)).log_prob(actions)
        return (torch.exp(log_prob - old_log_prob) * advantages).mean()

    def mean_kl() -> torch.Tensor:
        return exact_kl_from_logits(old_logits, net(obs)).mean()

    def measured_kl() -> float:
        with torch.no_grad():
            return float(kl_divergence(Categorical(logits=old_logits), Categorical(logits=net(obs))).mean())

    return net, surrogate, mean_kl, measured_kl


def test_trpo_step_improves_within_kl_limit(problem):
    net, surrogate, mean_kl, measured_kl = problem
    with torch.no_grad():
        before = float(surrogate())
    info = trpo_step(surrogate, mean_kl, net.parameters(), max_kl=0.01, damping=0.01)
    assert info.accepted and info.expected_improve > 0
    assert 0 < measured_kl() <= 0.01
    assert info.kl == pytest.approx(measured_kl())
    with torch.no_grad():
        assert float(surrogate()) > before
        assert float(surrogate()) - before == pytest.approx(info.improvement)


def _line_search_setup(problem):
    net, surrogate, mean_kl, _ = problem
    params = list(net.parameters())
    g = flat_grad(surrogate(), params)
    step = natural_step(g, fisher_vector_product(mean_kl, params, 0.01), max_kl=0.01)

    def evaluate(_: torch.Tensor) -> tuple[float, float]:
        with torch.no_grad():
            return float(surrogate()), float(mean_kl())

    snapshot = [p.detach().clone() for p in params]
    return params, evaluate, step, snapshot


def assert_bitwise_unchanged(params, snapshot):
    assert all(torch.equal(p, s) for p, s in zip(params, snapshot))


def test_rejected_when_not_an_ascent_direction(problem):
    params, evaluate, step, snapshot = _line_search_setup(problem)
    old = flat_params(params)
    r = backtracking_line_search(evaluate, params, old, step.full_step, -step.expected_improve, max_kl=0.01)
    assert not r.accepted and r.backtracks == 0
    assert_bitwise_unchanged(params, snapshot)


def test_rejected_when_surrogate_worsens(problem):
    params, evaluate, step, snapshot = _line_search_setup(problem)
    old = flat_params(params)
    r = backtracking_line_search(evaluate, params, old, -step.full_step, step.expected_improve, max_kl=0.01)
    assert not r.accepted and r.backtracks == 10
    assert (r.step_fraction, r.kl, r.improvement) == (0.0, 0.0, 0.0)
    assert_bitwise_unchanged(params, snapshot)


def test_rejected_when_every_candidate_breaks_kl_limit(problem):
    params, evaluate, step, snapshot = _line_search_setup(problem)
    old = flat_params(params)
    r = backtracking_line_search(evaluate, params, old, step.full_step, step.expected_improve, max_kl=1e-12)
    assert not r.accepted
    assert_bitwise_unchanged(params, snapshot)


def test_trpo_step_with_zero_advantages_keeps_parameters(problem):
    net, surrogate, mean_kl, _ = problem
    snapshot = [p.detach().clone() for p in net.parameters()]
    info = trpo_step(lambda: 0.0 * surrogate(), mean_kl, net.parameters(), max_kl=0.01)
    assert not info.accepted and info.expected_improve == 0.0
    assert_bitwise_unchanged(list(net.parameters()), snapshot)
