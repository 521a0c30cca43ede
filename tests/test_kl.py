import math

import pytest
import torch
from torch.distributions import Categorical, kl_divergence

from ppo_core.errors import NonFiniteError
from ppo_core.kl import check_kl_treatment, exact_kl_from_logits, kl_estimate
from ppo_core.kl_control import AdaptiveKLController, FixedKLController, PPOKLPenaltyController
from ppo_core.masked import masked_mean, masked_sum, masked_var


@pytest.fixture
def qp() -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probs of two categorical distributions over 5 categories, float64."""
    gen = torch.Generator().manual_seed(0)
    log_q = torch.log_softmax(torch.randn(5, generator=gen, dtype=torch.float64), dim=0)
    log_p = torch.log_softmax(torch.randn(5, generator=gen, dtype=torch.float64), dim=0)
    return log_q, log_p


def direct_kl(log_a: torch.Tensor, log_b: torch.Tensor) -> float:
    """KL(a‖b) = Σ a (log a - log b), summed by hand."""
    return sum(math.exp(la) * (la - lb) for la, lb in zip(log_a.tolist(), log_b.tolist()))


def exact_expectation(log_q: torch.Tensor, log_p: torch.Tensor, estimator: str) -> float:
    """E_{x~q}[k(x)] summed over every category, weighted by q."""
    return float((log_q.exp() * kl_estimate(log_q, log_p, estimator)).sum())


def test_k1_and_k3_unbiased_k2_biased_exactly(qp):
    log_q, log_p = qp
    kl = direct_kl(log_q, log_p)
    assert exact_expectation(log_q, log_p, "k1") == pytest.approx(kl, abs=1e-12)
    assert exact_expectation(log_q, log_p, "k3") == pytest.approx(kl, abs=1e-12)
    assert abs(exact_expectation(log_q, log_p, "k2") - kl) > 1e-3


def test_both_directions_match_their_formula_and_differ(qp):
    log_q, log_p = qp
    kl_qp = exact_expectation(log_q, log_p, "k3")  # samples from q
    kl_pq = exact_expectation(log_p, log_q, "k3")  # samples from p
    assert kl_qp == pytest.approx(direct_kl(log_q, log_p), abs=1e-12)
    assert kl_pq == pytest.approx(direct_kl(log_p, log_q), abs=1e-12)
    assert kl_qp == pytest.approx(float(kl_divergence(Categorical(logits=log_q), Categorical(logits=log_p))))
    assert abs(kl_qp - kl_pq) > 1e-3


def test_monte_carlo_estimates(qp):
    log_q, log_p = qp
    kl = direct_kl(log_q, log_p)
    gen = torch.Generator().manual_seed(1)
    x = torch.multinomial(log_q.exp(), 200_000, replacement=True, generator=gen)  # (N,)
    lq, lp = log_q[x], log_p[x]
    for name in ("k1", "k3"):
        k = kl_estimate(lq, lp, name)
        stderr = float(k.std()) / math.sqrt(k.numel())
        assert abs(float(k.mean()) - kl) < 4 * stderr, name
    k2 = kl_estimate(lq, lp, "k2")
    k2_stderr = float(k2.std()) / math.sqrt(k2.numel())
    assert abs(float(k2.mean()) - exact_expectation(log_q, log_p, "k2")) < 4 * k2_stderr
    assert (kl_estimate(lq, lp, "k3") >= 0).all()
    assert (kl_estimate(lq, lp, "k1") < 0).any()


def test_k3_accurate_when_distributions_are_close():
    log_q = torch.zeros(4)
    log_p = torch.tensor([0.0, 1e-4, -1e-4, 3e-3])
    d = (log_p - log_q).double()
    reference = (d.exp() - 1 - d).float()  # float64 reference for the float32 result
    assert torch.allclose(kl_estimate(log_q, log_p, "k3"), reference, rtol=1e-3, atol=0)
    assert kl_estimate(log_q, log_p, "k3")[0] == 0


def reward_gradient(logits: torch.Tensor, log_ref: torch.Tensor, estimator: str) -> torch.Tensor:
    """E_{y~π}[k(y) ∇log π(y)]: the policy gradient of the reward k, k held constant (as a reward is),
    summed exactly over the support; the exact KL of one decision is the same constant for every y."""
    logits = logits.detach().clone().requires_grad_(True)
    log_pi = torch.log_softmax(logits, -1)
    with torch.no_grad():
        k = (log_pi.exp() * (log_pi - log_ref)).sum().expand(5) if estimator == "exact" else \
            kl_estimate(log_pi, log_ref, estimator)
    (grad,) = torch.autograd.grad((log_pi.exp().detach() * k * log_pi).sum(), logits)
    return grad


def test_only_k1_as_a_reward_follows_the_gradient_of_the_kl(qp):
    """Why a reward placement takes k1 alone: the score-function gradient of each estimator as a
    reward, exactly over 5 categories, against ∇KL(π‖π_ref) by autograd."""
    log_q, log_p = qp
    logits = log_q.clone().requires_grad_(True)
    log_pi = torch.log_softmax(logits, -1)
    (kl_grad,) = torch.autograd.grad((log_pi.exp() * (log_pi - log_p)).sum(), logits)
    torch.testing.assert_close(reward_gradient(log_q, log_p, "k1"), kl_grad)
    for estimator in ("k2", "k3", "exact"):
        assert (reward_gradient(log_q, log_p, estimator) - kl_grad).abs().max() > 1e-3, estimator


@pytest.mark.parametrize("estimator, direction, reason", [
    ("k2", "reverse", "E\\[k2\\] is not the KL"), ("k3", "reverse", "E\\[∇k3\\] = ∇KL\\(π_ref‖π\\) is not 0"),
    ("exact", "reverse", "depends on the prefix, not on the sampled token"),
    ("exact", "forward", "forward KL\\(π_ref‖π\\) has no unbiased per-sample reward"),
    ("k1", "forward", "forward KL\\(π_ref‖π\\) has no unbiased per-sample reward"),
])
def test_a_biased_kl_reward_is_refused_with_what_to_use_instead(estimator, direction, reason):
    instead = "use estimator k1 in the reward, or placement=loss with estimator k2 or exact" \
        if direction == "reverse" else "use placement=loss with estimator k3 or exact"
    with pytest.raises(ValueError, match=f"{reason}.*{instead}"):
        check_kl_treatment(estimator, direction, "reward")
    check_kl_treatment("k1", "reverse", "reward")  # InstructGPT's, the default


def test_unknown_estimator_names_choices():
    with pytest.raises(ValueError, match=r"'k4'.*k1, k2, k3"):
        kl_estimate(torch.zeros(2), torch.zeros(2), "k4")


def loop_kl(logits_q: torch.Tensor, logits_p: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    B, T, V = logits_q.shape
    out = torch.zeros(B, T, dtype=logits_q.dtype)
    for b in range(B):
        for t in range(T):
            if not mask[b, t]:
                continue
            zq = sum(math.exp(v) for v in logits_q[b, t].tolist())
            zp = sum(math.exp(v) for v in logits_p[b, t].tolist())
            for v in range(V):
                q = math.exp(logits_q[b, t, v]) / zq
                p = math.exp(logits_p[b, t, v]) / zp
                out[b, t] += q * math.log(q / p)
    return out


def test_exact_kl_from_logits_matches_loop():
    gen = torch.Generator().manual_seed(2)
    logits_q = torch.randn(2, 3, 7, generator=gen, dtype=torch.float64)
    logits_p = torch.randn(2, 3, 7, generator=gen, dtype=torch.float64)
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    kl = exact_kl_from_logits(logits_q, logits_p, mask)  # (B, T)
    assert kl.shape == (2, 3)
    assert torch.allclose(kl, loop_kl(logits_q, logits_p, mask), atol=1e-12)
    unmasked = loop_kl(logits_q, logits_p, torch.ones(2, 3))
    assert torch.allclose(exact_kl_from_logits(logits_q, logits_p), unmasked)
    assert torch.equal(exact_kl_from_logits(logits_q, logits_q), torch.zeros(2, 3, dtype=torch.float64))


def test_exact_kl_with_impossible_tokens_is_finite():
    logits_q = torch.tensor([[0.0, 1.0, -math.inf]], requires_grad=True)
    logits_p = torch.tensor([[0.5, 0.0, 2.0]], requires_grad=True)
    kl = exact_kl_from_logits(logits_q, logits_p)
    # q lives on the first two tokens: KL to p restricted there, plus the mass p puts on the third.
    restricted = kl_divergence(Categorical(logits=logits_q[:, :2]), Categorical(logits=logits_p[:, :2]))
    reference = restricted + torch.logsumexp(logits_p, -1) - torch.logsumexp(logits_p[:, :2], -1)
    assert torch.allclose(kl, reference)
    kl.sum().backward()
    assert torch.isfinite(logits_q.grad).all() and torch.isfinite(logits_p.grad).all()


@pytest.fixture
def masked_data() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(4, 6, generator=gen, dtype=torch.float64)
    mask = torch.tensor(
        [[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 1], [1, 0, 0, 0, 0, 0], [0, 1, 1, 0, 1, 0]], dtype=torch.float64
    )
    return x, mask


def test_masked_reductions_match_selection(masked_data):
    x, mask = masked_data
    valid = x[mask.bool()]
    assert torch.allclose(masked_sum(x, mask), valid.sum())
    assert torch.allclose(masked_mean(x, mask), valid.mean())
    assert torch.allclose(masked_var(x, mask), valid.var())
    assert torch.allclose(masked_var(x, mask, correction=0), valid.var(correction=0))
    rows = [x[i][mask[i].bool()] for i in range(4)]
    assert torch.allclose(masked_mean(x, mask, dim=1), torch.stack([r.mean() for r in rows]))
    assert torch.allclose(masked_sum(x, mask, dim=-1), torch.stack([r.sum() for r in rows]))
    expected_var = torch.stack([r.var() if r.numel() > 1 else torch.zeros((), dtype=r.dtype) for r in rows])
    assert torch.allclose(masked_var(x, mask, dim=1), expected_var)
    cols = [x[:, j][mask[:, j].bool()] for j in range(6) if mask[:, j].any()]
    kept = mask.any(0)
    assert torch.allclose(masked_mean(x, mask, dim=0)[kept], torch.stack([c.mean() for c in cols]))
    assert masked_mean(x, mask, dim=1, keepdim=True).shape == (4, 1)
    assert masked_var(x, mask, dim=1, keepdim=True).shape == (4, 1)


def test_masked_reductions_mask_types_and_padding(masked_data):
    x, mask = masked_data
    assert torch.equal(masked_mean(x, mask.bool()), masked_mean(x, mask))
    assert torch.equal(masked_mean(x), x.mean())
    torch.testing.assert_close(masked_var(x, dim=0), x.var(dim=0))
    torch.testing.assert_close(masked_var(x, correction=0), x.var(correction=0))
    poisoned = x.masked_fill(~mask.bool(), math.nan)
    assert torch.equal(masked_mean(poisoned, mask), masked_mean(x, mask))
    assert torch.equal(masked_var(poisoned, mask), masked_var(x, mask))
    assert masked_mean(x, torch.zeros_like(mask)) == 0
    row_mask = torch.tensor([1.0, 0, 1, 0]).unsqueeze(1)  # (4, 1) broadcasts over columns
    assert torch.allclose(masked_mean(x, row_mask), x[[0, 2]].mean())


@pytest.mark.parametrize("shape", [(64, 1), (2048, 1), (7, 13)])
@pytest.mark.parametrize("dim", [None, 0, 1])
def test_no_mask_and_a_full_mask_agree_to_the_bit(shape, dim):
    """The algorithms drop a mask that is all True; that must not change a single number."""
    x = torch.randn(*shape, dtype=torch.float32) * 7 + 3
    full = torch.ones(shape, dtype=torch.bool)
    assert torch.equal(masked_mean(x, dim=dim), masked_mean(x, full, dim=dim))
    assert torch.equal(masked_var(x, dim=dim), masked_var(x, full, dim=dim))
    assert torch.equal(masked_var(x, dim=dim, correction=0, keepdim=True),
                       masked_var(x, full, dim=dim, correction=0, keepdim=True))
    leaf = x.clone().requires_grad_()
    (masked_mean(leaf ** 2, dim=dim).sum() + masked_var(leaf, dim=dim).sum()).backward()
    expected, leaf.grad = leaf.grad, None
    (masked_mean(leaf ** 2, full, dim=dim).sum() + masked_var(leaf, full, dim=dim).sum()).backward()
    assert torch.equal(leaf.grad, expected)


def test_masked_gradients_ignore_padding(masked_data):
    x, mask = masked_data
    x = x.masked_fill(~mask.bool(), math.nan).requires_grad_()
    (masked_mean(x, mask) + masked_var(x, mask, dim=1).sum()).backward()
    assert torch.isfinite(x.grad).all()
    assert (x.grad[~mask.bool()] == 0).all()


def test_adaptive_controller_sequence():
    ctl = AdaptiveKLController(init_coef=0.2, target=6.0, horizon=10_000)
    expected = 0.2
    steps = [
        (6.0, 1.0),  # on target
        (12.0, 1 + 0.2 * 256 / 10_000),  # error 1.0 clipped to 0.2
        (0.0, 1 - 0.2 * 256 / 10_000),  # error -1.0 clipped to -0.2
        (6.6, 1 + 0.1 * 256 / 10_000),  # error 0.1 within the clip
    ]
    for kl, factor in steps:
        expected *= factor
        assert ctl.update(kl, n_steps=256) == pytest.approx(expected, rel=1e-12)
        assert ctl.coef == pytest.approx(expected, rel=1e-12)
    assert ctl.update(torch.tensor(3.0), n_steps=100) == pytest.approx(expected * (1 - 0.2 * 100 / 10_000))


def test_ppo_penalty_controller_sequence():
    ctl = PPOKLPenaltyController(init_coef=1.0, target=0.01)
    # Thresholds: target / 1.5 ≈ 0.00667 halves, target · 1.5 = 0.015 doubles.
    steps = [(0.001, 0.5), (0.01, 0.5), (0.02, 1.0), (0.05, 2.0), (0.012, 2.0), (0.008, 2.0), (0.006, 1.0)]
    for kl, beta in steps:
        assert ctl.update(kl) == beta


def test_fixed_controller_and_bad_kl():
    ctl = FixedKLController(0.05)
    assert ctl.update(10.0, n_steps=64) == 0.05
    with pytest.raises(NonFiniteError, match="finite"):
        AdaptiveKLController(0.1, 6.0, 10_000).update(math.nan)


@pytest.mark.parametrize(
    "make",
    [
        lambda: AdaptiveKLController(0.2, 6.0, 10_000),
        lambda: PPOKLPenaltyController(0.2, 0.01),
        lambda: FixedKLController(0.2),
    ],
)
def test_controller_state_dict_round_trip(make, tmp_path):
    ctl = make()
    for kl in (0.5, 20.0, 0.001):
        ctl.update(kl, n_steps=512)
    path = tmp_path / "ctl.pt"
    torch.save(ctl.state_dict(), path)
    restored = make()
    restored.load_state_dict(torch.load(path))
    assert restored.coef == ctl.coef
    assert restored.update(9.0, n_steps=512) == ctl.update(9.0, n_steps=512)
