"""Adam for S runs at once, over their parameters laid out as one (S, P) tensor.

One set of elementwise ops updates every parameter of every run, where a ``torch.optim.Adam`` per
run would dispatch per tensor and per run. Each run keeps its own step count, so a run that skips
steps (an early stop within an update) keeps its own bias correction and moments, exactly as its own
optimiser would. The arithmetic is torch's Adam's (no weight decay, no amsgrad).
"""

from __future__ import annotations

import torch
from torch import Tensor


class BatchedAdam:
    def __init__(self, num_runs: int, num_parameters: int, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, device: torch.device | None = None):
        self.beta1, self.beta2 = betas
        self.eps = eps
        self.exp_avg = torch.zeros(num_runs, num_parameters, device=device)  # (S, P)
        self.exp_avg_sq = torch.zeros(num_runs, num_parameters, device=device)  # (S, P)
        self.steps = torch.zeros(num_runs, dtype=torch.float64, device=device)  # (S,) steps each run took

    def select(self, keep: Tensor) -> None:
        """Keep only the runs at indices ``keep``."""
        self.exp_avg, self.exp_avg_sq, self.steps = self.exp_avg[keep], self.exp_avg_sq[keep], self.steps[keep]

    def step(self, grad: Tensor, lr: float | Tensor, active: Tensor | None = None) -> Tensor:
        """The update (S, P) to add to the parameters for gradients ``grad`` (S, P) at step size ``lr``
        (a float, or (S, P) per run and parameter); runs where ``active`` (S,) is False get 0 and keep
        their state."""
        grad = grad.detach()
        exp_avg = self.exp_avg.lerp(grad, 1 - self.beta1)
        exp_avg_sq = self.exp_avg_sq * self.beta2 + (1 - self.beta2) * grad * grad
        steps = self.steps + (1 if active is None else active.to(self.steps.dtype))
        bias_correction1 = (1 - self.beta1 ** steps).to(grad.dtype).unsqueeze(1)  # (S, 1)
        bias_correction2_sqrt = (1 - self.beta2 ** steps).sqrt().to(grad.dtype).unsqueeze(1)
        denom = exp_avg_sq.sqrt() / bias_correction2_sqrt + self.eps
        update = -(lr / bias_correction1) * exp_avg / denom
        if active is None:
            self.exp_avg, self.exp_avg_sq = exp_avg, exp_avg_sq
        else:
            keep = active.unsqueeze(1)
            self.exp_avg = torch.where(keep, exp_avg, self.exp_avg)
            self.exp_avg_sq = torch.where(keep, exp_avg_sq, self.exp_avg_sq)
            update = torch.where(keep, update, 0.0)
        self.steps = steps
        return update

    # ------------------------------------------------------------------ per-run state
    def run_state(self, run: int) -> tuple[float, Tensor, Tensor]:
        """Run ``run``'s (step count, first moments (P,), second moments (P,))."""
        return float(self.steps[run]), self.exp_avg[run], self.exp_avg_sq[run]

    def load_run_state(self, run: int, steps: float, exp_avg: Tensor, exp_avg_sq: Tensor) -> None:
        self.steps[run] = steps
        self.exp_avg[run] = exp_avg
        self.exp_avg_sq[run] = exp_avg_sq


def clip_grad_norm_per_run(grad: Tensor, max_norm: float) -> tuple[Tensor, Tensor]:
    """Each run's global L2 gradient norm (S,) and its gradients (S, P) scaled to at most
    ``max_norm`` (0: measure only), the rule of ``algorithms.clip_grad_norm`` run by run."""
    norm = torch.linalg.vector_norm(grad, dim=1)  # (S,)
    if max_norm > 0:
        grad = grad * torch.clamp(max_norm / (norm + 1e-6), max=1.0).unsqueeze(1)
    return norm, grad

