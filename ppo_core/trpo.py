"""Trust Region Policy Optimization step (Schulman et al. 2015, "Trust Region Policy Optimization", App. C).

The policy is seen only through callables and flat parameter vectors, so one step serves a Gaussian
control policy and a token-level LM policy whose surrogate and KL are masked means over response tokens.
The surrogate is MAXIMIZED, L(θ) = E[π_θ / π_old · A]; pass the negated loss if you hold a loss.
The KL is the mean KL(π_old ‖ π_θ) with π_old detached, the paper's average-KL constraint (§4).
"""

import math
from collections.abc import Callable, Iterable
from typing import NamedTuple

import torch
from torch import Tensor
from torch.nn.utils import parameters_to_vector

Params = Iterable[Tensor]


def conjugate_gradient(
    Avp: Callable[[Tensor], Tensor], b: Tensor, iters: int = 10, residual_tol: float = 1e-10
) -> Tensor:
    """Solve A x = b for symmetric positive definite A, given only v ↦ A v (App. C).

    Starts from x = 0; stops after `iters` products or once the squared residual
    ‖b - A x‖² < residual_tol.
    """
    b = b.detach()
    x = torch.zeros_like(b)  # (P,)
    r = b.clone()  # residual b - A x
    p = b.clone()  # search direction
    r_dot_r = r @ r
    for _ in range(iters):
        if r_dot_r < residual_tol:
            break
        Ap = Avp(p).detach()
        alpha = r_dot_r / (p @ Ap)
        x += alpha * p
        r -= alpha * Ap
        new_r_dot_r = r @ r
        p = r + (new_r_dot_r / r_dot_r) * p
        r_dot_r = new_r_dot_r
    return x


def flat_grad(y: Tensor, params: Params, retain_graph: bool = False, create_graph: bool = False) -> Tensor:
    """∂y/∂params as one flat vector (P,); parameters y does not depend on get zeros.

    create_graph implies retain_graph, as in torch.autograd.grad: the second derivative needs the graph.
    """
    params = list(params)
    grads = torch.autograd.grad(
        y, params, retain_graph=retain_graph or create_graph, create_graph=create_graph, allow_unused=True
    )
    return torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1) for g, p in zip(grads, params)])


def flat_params(params: Params) -> Tensor:
    """A detached copy of the parameters as one flat vector (P,)."""
    return parameters_to_vector(params).detach()


def set_flat_params(params: Params, flat: Tensor) -> None:
    """Copy the flat vector (P,) into the parameters, in place.

    In place rather than torch.nn.utils.vector_to_parameters, which rebinds each `param.data` to a view
    of `flat`: the parameters would then alias the caller's vector, and restoring old parameters would
    depend on nobody writing to it.
    """
    params = list(params)
    n = sum(p.numel() for p in params)
    if flat.numel() != n:
        raise ValueError(f"flat vector has {flat.numel()} entries, parameters have {n}")
    offset = 0
    with torch.no_grad():
        for p in params:
            p.copy_(flat[offset : offset + p.numel()].view_as(p))
            offset += p.numel()


def identity(v: Tensor) -> Tensor:
    return v


def fisher_vector_product(
    mean_kl_fn: Callable[[], Tensor], params: Params, damping: float, reduce: Callable[[Tensor], Tensor] = identity
) -> Callable[[Tensor], Tensor]:
    """v ↦ (∇²KL + damping · I) v, the damped Fisher-vector product of App. C.1.

    mean_kl_fn() returns the mean KL(π_old ‖ π_θ) with π_old detached and equal to π_θ, where its
    Hessian is the Fisher information (its gradient is zero there, but its graph carries the second
    derivative). The first backward pass is done once here; each product is one backward pass of g · v.
    Damping, as in the paper's reference code (modular_rl, cg_damping), keeps CG well posed where F is
    singular. ``reduce`` sums a product over the processes of a data-parallel run, whose KL graphs each
    hold one part of the batch (the Hessian of a sum is the sum of the Hessians).
    """
    params = list(params)
    grad_kl = flat_grad(mean_kl_fn(), params, create_graph=True)  # (P,)

    def fvp(v: Tensor) -> Tensor:
        v = v.detach()
        hv = reduce(flat_grad(grad_kl @ v, params, retain_graph=True))  # (P,)
        return hv + damping * v

    return fvp


class NaturalStep(NamedTuple):
    full_step: Tensor  # (P,) natural-gradient step scaled so that ½ stepᵀ F step = max_kl
    expected_improve: float  # gᵀ full_step: the surrogate gain predicted to first order


def natural_step(
    g: Tensor,
    fvp: Callable[[Tensor], Tensor],
    max_kl: float,
    cg_iters: int = 10,
    residual_tol: float = 1e-10,
) -> NaturalStep:
    """Largest step along s ≈ F⁻¹ g within the quadratic KL model: sqrt(2 δ / sᵀ F s) · s (App. C).

    A direction with no positive curvature (e.g. g = 0) gives a zero step and zero expected improvement,
    which the line search then rejects.
    """
    g = g.detach()
    s = conjugate_gradient(fvp, g, cg_iters, residual_tol)  # (P,)
    sFs = float(s @ fvp(s))
    if not (sFs > 0 and math.isfinite(sFs)):
        return NaturalStep(torch.zeros_like(g), 0.0)
    full_step = math.sqrt(2.0 * max_kl / sFs) * s  # (P,)
    return NaturalStep(full_step, float(g @ full_step))


class LineSearchResult(NamedTuple):
    accepted: bool
    step_fraction: float  # backtrack_ratio ** backtracks of the accepted step; 0.0 when rejected
    kl: float  # mean KL at the accepted parameters; 0.0 when rejected (the old policy is kept)
    improvement: float  # surrogate gain at the accepted parameters; 0.0 when rejected
    backtracks: int  # candidates rejected before the accepted one; all candidates tried when rejected


def backtracking_line_search(
    evaluate: Callable[[Tensor], tuple[float, float]],
    params: Params,
    old_flat: Tensor,
    full_step: Tensor,
    expected_improve: float,
    max_kl: float,
    max_backtracks: int = 10,
    backtrack_ratio: float = 0.5,
    accept_ratio: float = 0.1,
    old_surrogate: float | None = None,
) -> LineSearchResult:
    """Try old_flat + backtrack_ratio^k · full_step for k = 0 .. max_backtracks - 1 (App. C).

    Before each evaluate(candidate) -> (surrogate, mean_kl) the candidate is written into `params`, so
    `evaluate` may read either. A candidate is accepted when its surrogate improves (gain > 0), the gain
    is above accept_ratio times the first-order prediction frac · expected_improve (as in modular_rl;
    accept_ratio = 0 keeps only gain > 0), and its mean KL ≤ max_kl; the parameters are left there.
    If none is accepted, or expected_improve ≤ 0 (not an ascent direction, no candidate is tried), the
    parameters are restored bitwise to old_flat. old_surrogate is evaluated at old_flat when not given.
    """
    params = list(params)
    if old_surrogate is None:
        set_flat_params(params, old_flat)
        old_surrogate = float(evaluate(old_flat)[0])
    tried = 0
    if expected_improve > 0:
        for k in range(max_backtracks):
            frac = backtrack_ratio**k
            candidate = old_flat + frac * full_step  # (P,)
            set_flat_params(params, candidate)
            surrogate, kl = evaluate(candidate)
            improvement, kl = float(surrogate) - old_surrogate, float(kl)
            tried += 1
            if improvement > 0 and improvement > accept_ratio * frac * expected_improve and kl <= max_kl:
                return LineSearchResult(True, frac, kl, improvement, k)
    set_flat_params(params, old_flat)
    return LineSearchResult(False, 0.0, 0.0, 0.0, tried)


class TRPOStepInfo(NamedTuple):
    accepted: bool
    step_fraction: float
    kl: float
    improvement: float
    backtracks: int
    expected_improve: float  # first-order surrogate gain of the full natural step


def trpo_step(
    surrogate_fn: Callable[[], Tensor],
    mean_kl_fn: Callable[[], Tensor],
    params: Params,
    max_kl: float,
    damping: float = 0.1,
    cg_iters: int = 10,
    max_backtracks: int = 10,
    backtrack_ratio: float = 0.5,
    accept_ratio: float = 0.1,
    reduce: Callable[[Tensor], Tensor] = identity,
) -> TRPOStepInfo:
    """One TRPO update of `params` in place: CG natural step scaled to max_kl, then the line search.

    surrogate_fn() and mean_kl_fn() are scalar functions of the current parameters, differentiable in
    them; each call recomputes them (the line search calls both once per candidate under no_grad).
    In a data-parallel run their values are global and ``reduce`` sums the gradient and every
    Fisher-vector product over the processes (ppo_core/distributed.py), so every process computes the
    same step, accepts the same candidate and keeps identical parameters.
    """
    params = list(params)
    old_flat = flat_params(params)  # (P,)
    surrogate = surrogate_fn()
    g = reduce(flat_grad(surrogate, params))  # (P,)
    step = natural_step(g, fisher_vector_product(mean_kl_fn, params, damping, reduce), max_kl, cg_iters)

    def evaluate(_: Tensor) -> tuple[float, float]:
        with torch.no_grad():
            return float(surrogate_fn()), float(mean_kl_fn())

    result = backtracking_line_search(
        evaluate,
        params,
        old_flat,
        step.full_step,
        step.expected_improve,
        max_kl,
        max_backtracks=max_backtracks,
        backtrack_ratio=backtrack_ratio,
        accept_ratio=accept_ratio,
        old_surrogate=float(surrogate.detach()),
    )
    return TRPOStepInfo(*result, expected_improve=step.expected_improve)
