"""TRPO's update (ppo_core/algorithms.py: TRPO.update, ppo_core/trpo.py) for S runs of a seed batch.

The runs' parameters do not interact, so the Hessian of the sum of their KLs is block-diagonal and one
Fisher-vector product of the stacked parameters is every run's own. Conjugate gradient, the step scaled
to ``max_kl`` and the backtracking line search then run per run with masks instead of branches: a run
whose residual is small stops its CG, a run whose candidate is accepted keeps it while the others
backtrack on, and a run with no acceptable candidate gets its old parameters back, bit for bit.
Vectors are (S, P) over the actor's parameters; stats come back per run, (S,).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from agents.distributions import DiagGaussian, Distribution
from ppo_core.advantages import explained_variance, whiten
from ppo_core.batched_adam import BatchedAdam
from ppo_core.batched_ppo import RUN, StackedPolicy
from ppo_core.batched_reinforce import fit_critic
from ppo_core.buffer import RolloutBatch
from ppo_core.config import TRPOConfig
from ppo_core.losses import entropy_bonus
from ppo_core.masked import masked_mean

Stats = dict[str, Tensor]
RESIDUAL_TOL = 1e-10  # ppo_core/trpo.py's conjugate_gradient default


def per_run_dot(a: Tensor, b: Tensor) -> Tensor:
    return (a * b).sum(1)  # (S,)


def conjugate_gradient(fvp: Callable[[Tensor], Tensor], b: Tensor, iters: int) -> Tensor:
    """Each run's x ≈ A⁻¹ b (S, P), ``trpo.conjugate_gradient`` run by run: a run stops once its squared
    residual is below the tolerance, the others go on."""
    x = torch.zeros_like(b)
    r, p = b.clone(), b.clone()
    r_dot_r = per_run_dot(r, r)
    for _ in range(iters):
        going = r_dot_r >= RESIDUAL_TOL  # (S,)
        if not bool(going.any()):
            break
        Ap = fvp(p)
        alpha = torch.where(going, r_dot_r / per_run_dot(p, Ap), 0.0).unsqueeze(1)
        x = x + alpha * p
        r = r - alpha * Ap
        new_r_dot_r = per_run_dot(r, r)
        p = torch.where(going.unsqueeze(1), r + (new_r_dot_r / r_dot_r).unsqueeze(1) * p, p)
        r_dot_r = torch.where(going, new_r_dot_r, r_dot_r)
    return x


class Objectives:
    """Surrogate (with the entropy bonus), mean KL(π_old‖π_θ) and mean entropy of every run (S,) at the
    current parameters, as ``TRPO.objectives``."""

    def __init__(self, policy: StackedPolicy, batch: RolloutBatch, advantages: Tensor, old: Distribution,
                 ent_coef: float):
        self.policy, self.batch, self.advantages, self.old, self.ent_coef = policy, batch, advantages, old, ent_coef

    def __call__(self) -> tuple[Tensor, Tensor, Tensor]:
        batch, mask = self.batch, self.batch.mask
        evaluation = self.policy.evaluate(batch.obs, batch.actions)
        ratio = torch.exp(evaluation.log_prob - batch.log_probs)  # (S, B, L)
        entropy_loss, entropy = entropy_bonus(evaluation.entropy, self.ent_coef, mask, RUN)
        surrogate = masked_mean(ratio * self.advantages, mask, RUN) - entropy_loss
        kl = self.old.kl(evaluation.distribution).reshape(mask.shape)  # (S, B, L): one KL per decision
        return surrogate, masked_mean(kl, mask, RUN), entropy


def trpo_update(policy: StackedPolicy, critic: BatchedAdam, batch: RolloutBatch, cfg: TRPOConfig, critic_lr: float,
                generators: Sequence[torch.Generator]) -> Stats:
    """One TRPO update of every run: its natural-gradient step within ``max_kl``, then its critic's regression."""
    names = policy.actor_names
    leaves = policy.leaves_of(names)
    advantages = whiten(batch.advantages, batch.mask, dim=RUN) if cfg.normalize_advantages else batch.advantages
    with torch.no_grad():
        old = policy.evaluate(batch.obs, batch.actions).distribution.detach()  # a snapshot
    objectives = Objectives(policy, batch, advantages, old, cfg.ent_coef)
    old_flat = policy.flat([leaf.detach() for leaf in leaves]).clone()  # (S, P)
    surrogate = objectives()[0]
    g = policy.flat(torch.autograd.grad(surrogate.sum(), leaves))  # (S, P)
    kl_hessian = kl_hessian_product(policy, batch, old)

    def fvp(v: Tensor) -> Tensor:  # (F + damping·I) v, run by run
        return kl_hessian(v) + cfg.damping * v

    s = conjugate_gradient(fvp, g, cfg.cg_iters)
    sFs = per_run_dot(s, fvp(s)).double()  # (S,)
    curved = (sFs > 0) & torch.isfinite(sFs)
    scale = torch.where(curved, torch.sqrt(2.0 * cfg.max_kl / torch.where(curved, sFs, 1.0)), 0.0)
    full_step = scale.to(s.dtype).unsqueeze(1) * s  # (S, P)
    expected = torch.where(curved, per_run_dot(g, full_step).double(), 0.0)
    info = line_search(policy, names, objectives, old_flat, full_step, expected, surrogate.detach().double(), cfg)
    with torch.no_grad():
        surrogate, kl, entropy = objectives()
    stats = {"policy_loss": -surrogate, "entropy": entropy, "approx_kl": kl, **info, "expected_improve": expected}
    stats.update(fit_critic(policy, critic, batch, cfg.vf_iters, cfg.num_minibatches, critic_lr, cfg.max_grad_norm,
                            generators))
    stats["explained_variance"] = torch.stack([explained_variance(v, r, m) for v, r, m in
                                               zip(batch.values, batch.returns, batch.mask)])
    return stats


def kl_hessian_product(policy: StackedPolicy, batch: RolloutBatch, old: Distribution) -> Callable[[Tensor], Tensor]:
    """v ↦ H v (S, P), H the Hessian of each run's mean KL(π_old‖π_θ) in its actor's parameters at θ_old,
    as the Gauss-Newton product Jᵀ F J (Martens 2014, "New insights and perspectives on the natural
    gradient method", §9): J the Jacobian of the actor's head (logits or means), F the Hessian of the
    KL in the head. At θ_old the KL's gradient in the head is zero, so the Hessian's other term, which
    carries the head's second derivative, vanishes and Jᵀ F J is the Hessian itself. Each product is
    one forward-mode pass (two batched matmuls a layer) and one backward, instead of the double backward
    of a Hessian-vector product (tests/test_seed_batch.py checks it against the explicit Hessian)."""
    names = policy.actor_names
    mask = batch.mask.float()  # (S, B, 1): one decision per step
    weights = mask / mask.sum(RUN, keepdim=True).clamp(min=1)  # each decision's share of its run's mean KL
    jvp = policy.actor_linearization(batch.obs)
    head = policy.actor_head(batch.obs)  # (S, B, K), its graph kept for the backward of every product
    head_names = [name for name in names if name != "log_std"]
    head_leaves = policy.leaves_of(head_names)
    sizes = [leaf[0].numel() for leaf in policy.leaves_of(names)]
    gaussian = isinstance(old, DiagGaussian)
    log_std_shape = policy.leaves_of(["log_std"])[0].shape if gaussian else None  # (S, 1, A)

    def product(v: Tensor) -> Tensor:
        v = v.detach()
        tangent = jvp(v)  # J v (S, B, K)
        if gaussian:
            log_std = v.split(sizes, dim=1)[names.index("log_std")].view(log_std_shape)
            f_head, f_log_std = old.fisher_product(tangent, log_std)
            by_name = {"log_std": f_log_std * weights.sum(1, keepdim=True)}  # (S, 1, A): shared by every decision
        else:
            f_head, by_name = old.fisher_product(tangent), {}
        grads = torch.autograd.grad(head, head_leaves, grad_outputs=weights * f_head, retain_graph=True)
        by_name.update(zip(head_names, grads))
        return policy.flat([by_name[name] for name in names])

    return product


@torch.no_grad()
def line_search(policy: StackedPolicy, names: Sequence[str], objectives: Objectives, old_flat: Tensor,
                full_step: Tensor, expected: Tensor, old_surrogate: Tensor, cfg: TRPOConfig) -> Stats:
    """``trpo.backtracking_line_search`` for every run: candidates old + ratioᵏ·step, each run accepting
    its first one that gains more than ``accept_ratio`` of the predicted gain within ``max_kl``."""
    num_runs = old_flat.shape[0]
    accepted = torch.zeros(num_runs, dtype=torch.bool)
    fraction, improvement_at = (torch.zeros(num_runs, dtype=torch.float64) for _ in range(2))
    backtracks = torch.zeros(num_runs)
    searching = expected > 0  # not an ascent direction: no candidate is tried
    current = old_flat
    for k in range(cfg.max_backtracks):
        if not bool(searching.any()):
            break
        frac = cfg.backtrack_ratio ** k
        current = torch.where(searching.unsqueeze(1), old_flat + frac * full_step, current)  # (S, P)
        set_flat(policy, names, current)
        surrogate, kl, _ = objectives()
        improvement, kl = surrogate.double() - old_surrogate, kl.double()
        backtracks += searching.float()
        ok = searching & (improvement > 0) & (improvement > cfg.accept_ratio * frac * expected) & (kl <= cfg.max_kl)
        accepted |= ok
        fraction = torch.where(ok, frac, fraction)
        improvement_at = torch.where(ok, improvement, improvement_at)
        backtracks = torch.where(ok, float(k), backtracks)  # candidates rejected before it; the rejected: all tried
        searching &= ~ok
    set_flat(policy, names, torch.where(accepted.unsqueeze(1), current, old_flat))  # the rest: old, bit for bit
    return {"accepted": accepted.float(), "step_fraction": fraction, "backtracks": backtracks,
            "improvement": improvement_at}


def set_flat(policy: StackedPolicy, names: Sequence[str], flat: Tensor) -> None:
    """Write (S, P) into the stacked parameters ``names``."""
    leaves = policy.leaves_of(names)
    pieces = flat.split([leaf[0].numel() for leaf in leaves], dim=1)
    with torch.no_grad():
        for leaf, piece in zip(leaves, pieces):
            leaf.copy_(piece.view_as(leaf))
