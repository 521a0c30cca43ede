"""Action distributions as light tensor containers.

``torch.distributions`` validates and broadcasts on every construction, which costs more than the
policy's own forward pass at CartPole sizes; these hold the parameters and do the arithmetic only.
A token distribution of a language model is a ``Categorical`` whose logits end in the vocabulary.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


@dataclass
class Categorical:
    """π(a) = softmax(logits)[a] over the last dimension."""

    log_probs: Tensor  # (..., K), normalised

    @classmethod
    def from_logits(cls, logits: Tensor) -> "Categorical":
        return cls(torch.log_softmax(logits, dim=-1))

    def sample(self) -> Tensor:  # (...)
        # How torch.multinomial(p, 1) draws on CPU (the same actions from the same generator state,
        # tests/test_distributions.py): argmax of p / E with E ~ Exp(1) picks a with probability p_a.
        # Called directly, it skips multinomial's input checks, which cost twice the draw at control
        # sizes (20 µs against 7 a step).
        probs = self.log_probs.exp()
        return (probs / torch.empty_like(probs).exponential_(1)).argmax(-1)

    def sample_wide(self) -> Tensor:  # (...)
        """A draw for many categories (a vocabulary). On the CPU, where ``sample``'s one exponential per
        category costs more than the rest of a decoding step (64 × 2048: 3.2 ms against 0.3), by
        inverting the cumulative distribution with one uniform per row: the CPU's cumsum accumulates in
        double, so the CDF never decreases and a category of probability 0 gets no mass. Elsewhere
        ``sample``: a parallel float32 scan could give such a category a sliver of mass."""
        if self.log_probs.device.type != "cpu":
            return self.sample()
        cdf = self.log_probs.exp().cumsum(-1)  # (..., K)
        u = torch.rand(cdf.shape[:-1] + (1,), device=cdf.device) * cdf[..., -1:]  # (..., 1) in [0, total)
        # the first category whose cumulative mass exceeds u; u rounded up to the total falls on the last
        return torch.searchsorted(cdf, u, right=True).squeeze(-1).clamp(max=cdf.shape[-1] - 1)

    def mode(self) -> Tensor:
        return self.log_probs.argmax(dim=-1)

    def log_prob(self, action: Tensor) -> Tensor:
        return self.log_probs.gather(-1, action.long().unsqueeze(-1)).squeeze(-1)

    def entropy(self) -> Tensor:
        return -(self.log_probs.exp() * self.log_probs).sum(-1)

    def kl(self, other: "Categorical") -> Tensor:
        """Exact KL(self‖other) per distribution."""
        return (self.log_probs.exp() * (self.log_probs - other.log_probs)).sum(-1)

    def detach(self) -> "Categorical":
        return Categorical(self.log_probs.detach())

    def fisher_product(self, logits_tangent: Tensor) -> Tensor:
        """F u in logit coordinates, F = diag(p) − p pᵀ: the Hessian of KL(self‖softmax(z)) in z at
        this distribution's own logits, (..., K) -> (..., K)."""
        probs = self.log_probs.exp()
        weighted = probs * logits_tangent
        return weighted - probs * weighted.sum(-1, keepdim=True)


@dataclass
class DiagGaussian:
    """N(mean, diag(exp(log_std)²)); log-probs and entropies sum over the action dimensions."""

    mean: Tensor  # (..., A)
    log_std: Tensor  # (A,) or (..., A)

    def sample(self) -> Tensor:
        return self.mean + self.log_std.exp() * torch.randn_like(self.mean)

    def mode(self) -> Tensor:
        return self.mean

    def log_prob(self, action: Tensor) -> Tensor:
        z = (action - self.mean) * torch.exp(-self.log_std)
        return (-0.5 * z.square() - self.log_std - _HALF_LOG_2PI).sum(-1)

    def entropy(self) -> Tensor:
        per_dim = (self.log_std + 0.5 + _HALF_LOG_2PI).expand_as(self.mean)
        return per_dim.sum(-1)

    def kl(self, other: "DiagGaussian") -> Tensor:
        """Exact KL(self‖other) per distribution."""
        var_ratio = torch.exp(2 * (self.log_std - other.log_std))
        mean_term = ((self.mean - other.mean) * torch.exp(-other.log_std)).square()
        return 0.5 * (var_ratio + mean_term - 1.0 - 2 * (self.log_std - other.log_std)).sum(-1)

    def fisher_product(self, mean_tangent: Tensor, log_std_tangent: Tensor) -> tuple[Tensor, Tensor]:
        """F u in (mean, log-std) coordinates, diag(1/σ², 2): the Hessian of KL(self‖N(μ, e^{2s})) in
        (μ, s) at this distribution's own parameters; no cross terms there."""
        return mean_tangent * torch.exp(-2 * self.log_std), 2 * log_std_tangent

    def detach(self) -> "DiagGaussian":
        """A frozen copy: ``log_std`` is a live parameter, so detaching alone would alias it."""
        return DiagGaussian(self.mean.detach().clone(), self.log_std.detach().clone())


Distribution = Categorical | DiagGaussian
