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
