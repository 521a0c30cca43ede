"""KL divergence: sample estimators and the exact KL from logits (the controllers of the KL-penalty
coefficient are in ``kl_control.py``, the masked reductions in ``masked.py``).

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

As a REWARD (a constant to the policy gradient, which sees it through the score function only) the
update follows E[k ∇log π(y)] = ∇E[k] − E[∇k]: the KL's gradient only where E[k] = KL and E[∇k] = 0,
which holds for k1 alone (E[∇log π] = 0). E[∇k3] = ∇KL(π_ref‖π) and E[k2] is not the KL; the exact
KL at token l is a function of the prefix y_<l, not of the sampled y_l, and its own gradient at that
prefix never reaches the update. So a reward placement accepts only ``REWARD_ESTIMATORS`` in the
reverse direction; the loss placement is where the others belong.
"""

import torch
import torch.nn.functional as F
from torch import Tensor


ESTIMATORS = ("k1", "k2", "k3")
KL_ESTIMATORS = (*ESTIMATORS, "exact")
KL_DIRECTIONS = ("reverse", "forward")  # KL(π‖π_ref) | KL(π_ref‖π)
KL_PLACEMENTS = ("reward", "token_reward", "loss")  # Σ_l at the last token | each at its own token | the loss
LOSS_ESTIMATORS = {"reverse": ("k2", "exact"), "forward": ("k3", "exact")}
REWARD_ESTIMATORS = ("k1",)  # reverse direction only: no per-sample reward from π's samples is unbiased for KL(π_ref‖π)


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
    if estimator not in KL_ESTIMATORS or direction not in KL_DIRECTIONS:
        raise ValueError(f"KL estimator={estimator!r}, direction={direction!r}: expected an estimator in "
                         f"{KL_ESTIMATORS} and a direction in {KL_DIRECTIONS}")
    if direction == "forward" and estimator != "exact":
        raise ValueError(f"the {estimator} estimator measures KL(π‖π_ref) from π's samples; the forward direction "
                         "KL(π_ref‖π) needs estimator=exact")
    if estimator == "exact":
        if log_probs is None or ref_log_probs is None:
            raise ValueError("the exact KL needs the full distributions log_probs and ref_log_probs (..., V)")
        if direction == "reverse":
            return exact_kl_from_logits(log_probs, ref_log_probs)
        return exact_kl_from_logits(ref_log_probs, log_probs)
    return kl_estimate(log_prob, ref_log_prob, estimator)


def check_kl_treatment(estimator: str, direction: str, placement: str = "reward") -> None:
    """A clear error for a KL treatment that does not exist or whose gradient is not the KL's."""
    if estimator not in KL_ESTIMATORS or direction not in KL_DIRECTIONS or placement not in KL_PLACEMENTS:
        raise ValueError(f"KL estimator={estimator!r}, direction={direction!r}, placement={placement!r}: expected "
                         f"an estimator in {KL_ESTIMATORS}, a direction in {KL_DIRECTIONS} and a placement in "
                         f"{KL_PLACEMENTS}")
    loss_instead = f"or placement=loss with estimator {' or '.join(LOSS_ESTIMATORS[direction])}"
    if placement != "loss" and direction == "forward":
        raise ValueError(f"as a reward, the forward KL(π_ref‖π) has no unbiased per-sample reward from π's samples "
                         f"(the k-estimators measure the reverse KL, and the exact KL's own gradient never reaches "
                         f"the update); use placement=loss with estimator {' or '.join(LOSS_ESTIMATORS['forward'])}")
    if placement != "loss" and estimator not in REWARD_ESTIMATORS:
        why = ("the exact KL at token l depends on the prefix, not on the sampled token, and its own gradient never "
               "reaches the update" if estimator == "exact" else
               "E[k2] is not the KL" if estimator == "k2" else "E[∇k3] = ∇KL(π_ref‖π) is not 0")
        raise ValueError(f"as a reward, {estimator} gives a biased KL gradient: the update follows E[k ∇log π] = "
                         f"∇E[k] − E[∇k], and {why}; only k1 = log π/π_ref of the sampled token is an unbiased "
                         f"per-sample reward: use estimator k1 in the reward, {loss_instead}")
    if placement == "loss" and estimator not in LOSS_ESTIMATORS[direction]:
        raise ValueError(f"as a loss, {estimator} does not follow the gradient of the {direction} KL "
                         f"(E[∇k1] = 0, E[∇k2] = ∇KL(π‖π_ref), E[∇k3] = ∇KL(π_ref‖π)); use one of "
                         f"{LOSS_ESTIMATORS[direction]}")
