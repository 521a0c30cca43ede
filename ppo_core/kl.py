"""KL divergence: sample estimators, exact KL from logits, masked reductions, KL-penalty controllers.

The estimators follow Schulman, "Approximating KL Divergence" (2020,
http://joschu.net/blog/kl-approx.html). For samples x ~ q and r = p(x) / q(x), each estimates KL(q‖p):

    k1 = -log r             unbiased; high variance; negative on some samples
    k2 = (log r)² / 2       biased (its mean is an f-divergence that agrees with KL only to second
                            order as p → q); low variance; never negative
    k3 = (r - 1) - log r    unbiased (E_q[r] = 1); low variance; never negative, since log r ≤ r - 1

To estimate KL(p‖q) instead, sample from p and swap the arguments.

``token_kl`` measures a policy π against a reference π_ref at decisions sampled from π, in either
direction: "reverse" is KL(π‖π_ref) (InstructGPT's penalty: mode-seeking, conservative), "forward"
is KL(π_ref‖π) (the direction of the PPO paper's penalty KL(π_old‖π): mass-covering, lets π keep
exploring wherever π_ref puts mass). From π's own samples only the reverse direction has sample
estimators; "exact" sums over the full distributions and serves both.

As a LOSS (differentiated through log π at on-policy samples) the estimators follow different
gradients than their values suggest: ∇k1 = ∇log π has expectation 0; E[∇k2] = ∇KL(π‖π_ref);
E[∇k3] = E[(1 − π_ref/π)∇log π] = ∇KL(π_ref‖π). ``LOSS_ESTIMATORS`` lists, per direction, the
estimators whose expected gradient is that direction's gradient.
"""

import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor

from ppo_core.errors import NonFiniteError

Dim = int | tuple[int, ...] | None

ESTIMATORS = ("k1", "k2", "k3")
KL_ESTIMATORS = (*ESTIMATORS, "exact")
KL_DIRECTIONS = ("reverse", "forward")  # KL(π‖π_ref) | KL(π_ref‖π)
KL_PLACEMENTS = ("reward", "loss")
LOSS_ESTIMATORS = {"reverse": ("k2", "exact"), "forward": ("k3", "exact")}


def k1(log_q: Tensor, log_p: Tensor) -> Tensor:
    """log q - log p at samples from q: unbiased for KL(q‖p), but negative on some samples."""
    return log_q - log_p


def k2(log_q: Tensor, log_p: Tensor) -> Tensor:
    """½ (log p - log q)² at samples from q: biased for KL(q‖p), low variance."""
    return 0.5 * (log_p - log_q) ** 2


def k3(log_q: Tensor, log_p: Tensor) -> Tensor:
    """(r - 1) - log r with r = p / q at samples from q: unbiased for KL(q‖p), never negative."""
    log_r = log_p - log_q
    # expm1 keeps the O(log_r²) result accurate when q ≈ p, where exp(log_r) - 1 - log_r cancels.
    return torch.expm1(log_r) - log_r


_ESTIMATOR_FNS = {"k1": k1, "k2": k2, "k3": k3}


def kl_estimate(log_q: Tensor, log_p: Tensor, estimator: str) -> Tensor:
    """Elementwise KL(q‖p) estimate from log-probs of samples drawn from q; `estimator` is k1, k2 or k3."""
    fn = _ESTIMATOR_FNS.get(estimator)
    if fn is None:
        raise ValueError(f"unknown KL estimator {estimator!r}; expected one of {', '.join(ESTIMATORS)}")
    return fn(log_q, log_p)


def _upcast(logits: Tensor) -> Tensor:
    """Half-precision logits go to float32: KL over a large vocabulary is made of small differences."""
    return logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits


def exact_kl_from_logits(logits_q: Tensor, logits_p: Tensor, mask: Tensor | None = None) -> Tensor:
    """Exact KL(q‖p) = Σ_v q(v) (log q(v) - log p(v)) per position, over the last (vocabulary) dim.

    Entries that q gives zero probability (logit -inf) contribute 0, not NaN, in value and gradient.
    Positions where `mask` is 0/False are set to 0.
    """
    log_q = F.log_softmax(_upcast(logits_q), dim=-1)  # (B, T, V)
    log_p = F.log_softmax(_upcast(logits_p), dim=-1)  # (B, T, V)
    q = log_q.exp()
    log_ratio = torch.where(q > 0, log_q - log_p, 0.0)  # 0 · log 0 = 0
    kl = (q * log_ratio).sum(dim=-1)  # (B, T, V) -> (B, T)
    if mask is not None:
        kl = torch.where(mask.bool(), kl, 0.0)
    return kl


def token_kl(
    log_prob: Tensor,
    ref_log_prob: Tensor,
    estimator: str,
    direction: str = "reverse",
    log_probs: Tensor | None = None,
    ref_log_probs: Tensor | None = None,
) -> Tensor:
    """Per-decision KL between a policy π and a reference π_ref at decisions sampled from π.

    ``log_prob`` / ``ref_log_prob`` (...,) are log π and log π_ref of the sampled decisions; the
    ``exact`` estimator needs the full normalised distributions ``log_probs`` / ``ref_log_probs``
    (..., V) instead. ``direction`` is "reverse", KL(π‖π_ref), or "forward", KL(π_ref‖π) (exact only).
    """
    check_kl_treatment(estimator, direction)
    if estimator == "exact":
        if log_probs is None or ref_log_probs is None:
            raise ValueError("the exact KL needs the full distributions log_probs and ref_log_probs (..., V)")
        if direction == "reverse":
            return exact_kl_from_logits(log_probs, ref_log_probs)
        return exact_kl_from_logits(ref_log_probs, log_probs)
    return kl_estimate(log_prob, ref_log_prob, estimator)


def check_kl_treatment(estimator: str, direction: str, placement: str = "reward") -> None:
    """A clear error for a KL treatment that does not exist or does not estimate what it says."""
    if estimator not in KL_ESTIMATORS or direction not in KL_DIRECTIONS or placement not in KL_PLACEMENTS:
        raise ValueError(f"KL estimator={estimator!r}, direction={direction!r}, placement={placement!r}: expected "
                         f"an estimator in {KL_ESTIMATORS}, a direction in {KL_DIRECTIONS} and a placement in "
                         f"{KL_PLACEMENTS}")
    if direction == "forward" and placement == "reward" and estimator != "exact":
        raise ValueError(f"the {estimator} estimator measures KL(π‖π_ref) from π's samples; the forward direction "
                         "KL(π_ref‖π) needs estimator=exact")
    if placement == "loss" and estimator not in LOSS_ESTIMATORS[direction]:
        raise ValueError(f"as a loss, {estimator} does not follow the gradient of the {direction} KL "
                         f"(E[∇k1] = 0, E[∇k2] = ∇KL(π‖π_ref), E[∇k3] = ∇KL(π_ref‖π)); use one of "
                         f"{LOSS_ESTIMATORS[direction]}")


def _valid(x: Tensor, mask: Tensor) -> Tensor:
    """The mask as a bool tensor of x's shape (a broadcast view, no copy)."""
    return mask.bool().expand_as(x)


def masked_sum(x: Tensor, mask: Tensor | None = None, dim: Dim = None, keepdim: bool = False) -> Tensor:
    """Sum of the entries of x where mask is 1/True; values at masked-out entries (even NaN) never leak."""
    if mask is not None:
        x = torch.where(_valid(x, mask), x, 0.0)
    return x.sum(dim=dim, keepdim=keepdim)


def masked_mean(x: Tensor, mask: Tensor | None = None, dim: Dim = None, keepdim: bool = False) -> Tensor:
    """Mean of the entries of x where mask is 1/True; a slice with no valid entry gives 0, not NaN.
    Without a mask it is ``x.mean``, which on CPU is the same sum-then-divide as the masked path."""
    if mask is None:
        return x.mean(dim=dim, keepdim=keepdim)
    valid = _valid(x, mask)
    count = valid.sum(dim=dim, keepdim=keepdim).clamp(min=1)
    return masked_sum(x, valid, dim, keepdim) / count


def masked_var(
    x: Tensor, mask: Tensor | None = None, dim: Dim = None, correction: int = 1, keepdim: bool = False
) -> Tensor:
    """Variance of the entries of x where mask is 1/True, with `correction` as in torch.var.

    The divisor (count - correction) is clamped to at least 1, so a slice with fewer valid entries than
    correction + 1 gives 0 rather than NaN. Without a mask it is the same two-pass arithmetic, so a mask
    that is all True and no mask give the same numbers to the bit.
    """
    if mask is None:
        dims = dim if isinstance(dim, tuple) else (dim,)
        count = x.numel() if dim is None else math.prod(x.shape[d] for d in dims)
        centered = x - x.sum(dim=dim, keepdim=True) / max(count, 1)
        divisor = max(count - correction, 1)
    else:
        valid = _valid(x, mask)
        x = torch.where(valid, x, 0.0)
        count = valid.sum(dim=dim, keepdim=True)
        mean = x.sum(dim=dim, keepdim=True) / count.clamp(min=1)
        centered = torch.where(valid, x - mean, 0.0)
        divisor = (count - correction).clamp(min=1)
    var = (centered**2).sum(dim=dim, keepdim=True) / divisor
    if keepdim:
        return var
    return var.squeeze() if dim is None else var.squeeze(dim)


def _finite_kl(kl: float | Tensor) -> float:
    kl = float(kl)
    if not math.isfinite(kl):
        raise NonFiniteError(f"KL must be finite to update the penalty coefficient, got {kl}")
    return kl


class KLController:
    """Holds the KL penalty coefficient `beta`; subclasses decide how `update` moves it."""

    def __init__(self, init_beta: float) -> None:
        if init_beta < 0:
            raise ValueError(f"init_beta must be >= 0, got {init_beta}")
        self.beta = float(init_beta)

    def update(self, kl: float | Tensor, n_steps: int = 1) -> float:
        """Move beta given the measured KL of the last batch of `n_steps` samples; returns the new beta."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, float]:
        return {"beta": self.beta}

    def load_state_dict(self, state: Mapping[str, float]) -> None:
        self.beta = float(state["beta"])


class FixedKLController(KLController):
    """Constant beta."""

    def update(self, kl: float | Tensor, n_steps: int = 1) -> float:
        _finite_kl(kl)
        return self.beta


class AdaptiveKLController(KLController):
    """Log-space proportional controller of Ziegler et al. 2019, "Fine-Tuning Language Models from
    Human Preferences"; the gain n_steps / horizon is that of their openai/lm-human-preferences code.

    error = clip(kl / target - 1, -0.2, 0.2);  beta ← beta · (1 + error · n_steps / horizon),
    where n_steps is the number of samples (episodes) behind `kl` and horizon is in the same unit.
    """

    def __init__(self, init_beta: float, target: float, horizon: float) -> None:
        super().__init__(init_beta)
        if target <= 0 or horizon <= 0:
            raise ValueError(f"target and horizon must be > 0, got target={target}, horizon={horizon}")
        self.target = float(target)
        self.horizon = float(horizon)

    def update(self, kl: float | Tensor, n_steps: int = 1) -> float:
        error = min(max(_finite_kl(kl) / self.target - 1.0, -0.2), 0.2)
        self.beta *= 1.0 + error * n_steps / self.horizon
        return self.beta


class PPOKLPenaltyController(KLController):
    """Adaptive KL penalty of the PPO paper (Schulman et al. 2017, §4); n_steps is ignored.

    d < target / 1.5: beta ← beta / 2;  d > target · 1.5: beta ← beta · 2.
    """

    def __init__(self, init_beta: float, target: float) -> None:
        super().__init__(init_beta)
        if target <= 0:
            raise ValueError(f"target must be > 0, got {target}")
        self.target = float(target)

    def update(self, kl: float | Tensor, n_steps: int = 1) -> float:
        d = _finite_kl(kl)
        if d < self.target / 1.5:
            self.beta /= 2.0
        elif d > self.target * 1.5:
            self.beta *= 2.0
        return self.beta
