"""KL-penalty coefficient controllers: a fixed β, the adaptive β of Ziegler et al. 2019 (for the KL
to a reference policy) and the doubling/halving β of the PPO paper's §4 (for the KL to π_old)."""

import math
from collections.abc import Mapping

from torch import Tensor

from ppo_core.errors import NonFiniteError


def _finite_kl(kl: float | Tensor) -> float:
    kl = float(kl)
    if not math.isfinite(kl):
        raise NonFiniteError(f"KL must be finite to update the penalty coefficient, got {kl}")
    return kl


class KLController:
    """Holds the KL penalty coefficient ``coef`` (β); subclasses decide how `update` moves it."""

    def __init__(self, init_coef: float) -> None:
        if init_coef < 0:
            raise ValueError(f"init_coef must be >= 0, got {init_coef}")
        self.coef = float(init_coef)

    def update(self, kl: float | Tensor, n_steps: int = 1) -> float:
        """Move the coefficient given the measured KL of the last batch of `n_steps` samples; returns the new coefficient."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, float]:
        return {"coef": self.coef}

    def load_state_dict(self, state: Mapping[str, float]) -> None:
        self.coef = float(state["coef"] if "coef" in state else state["beta"])  # "beta" before 2026-12


class FixedKLController(KLController):
    """Constant coefficient."""

    def update(self, kl: float | Tensor, n_steps: int = 1) -> float:
        _finite_kl(kl)
        return self.coef


class AdaptiveKLController(KLController):
    """Log-space proportional controller of Ziegler et al. 2019, "Fine-Tuning Language Models from
    Human Preferences"; the gain n_steps / horizon is that of their openai/lm-human-preferences code.

    error = clip(kl / target - 1, -0.2, 0.2);  β ← β · (1 + error · n_steps / horizon),
    where n_steps is the number of samples (episodes) behind `kl` and horizon is in the same unit.
    """

    def __init__(self, init_coef: float, target: float, horizon: float) -> None:
        super().__init__(init_coef)
        if target <= 0 or horizon <= 0:
            raise ValueError(f"target and horizon must be > 0, got target={target}, horizon={horizon}")
        self.target = float(target)
        self.horizon = float(horizon)

    def update(self, kl: float | Tensor, n_steps: int = 1) -> float:
        error = min(max(_finite_kl(kl) / self.target - 1.0, -0.2), 0.2)
        self.coef *= 1.0 + error * n_steps / self.horizon
        return self.coef


class PPOKLPenaltyController(KLController):
    """Adaptive KL penalty of the PPO paper (Schulman et al. 2017, §4); n_steps is ignored.

    d < target / 1.5: β ← β / 2;  d > target · 1.5: β ← β · 2.
    """

    def __init__(self, init_coef: float, target: float) -> None:
        super().__init__(init_coef)
        if target <= 0:
            raise ValueError(f"target must be > 0, got {target}")
        self.target = float(target)

    def update(self, kl: float | Tensor, n_steps: int = 1) -> float:
        d = _finite_kl(kl)
        if d < self.target / 1.5:
            self.coef /= 2.0
        elif d > self.target * 1.5:
            self.coef *= 2.0
        return self.coef
