"""The policy interface the trainer and every algorithm talk to.

An action is made of L decisions: L = 1 for a control action, L = the generated tokens of a
completion. Policies report per-decision log-probs, values and a mask of real decisions, so the
losses and GAE never ask which kind of action they are looking at.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol

from torch import Tensor, nn

from agents.distributions import Distribution

Observation = Any  # a tensor (N, *obs_shape) or a dict of tensors with leading N


class PolicyStep(NamedTuple):
    """What ``act`` returns for N observations."""

    action: Tensor  # (N, *action_shape): stored and scored as sampled (unclipped)
    log_prob: Tensor  # (N, L)
    value: Tensor  # (N, L): V before each decision
    mask: Tensor  # (N, L) bool: real decisions
    distribution: Distribution | None = None  # per decision, when the env wants exact KLs (text env)


class PolicyEvaluation(NamedTuple):
    """What ``evaluate`` returns for a batch of stored observations and actions."""

    log_prob: Tensor  # (B, L)
    entropy: Tensor  # (B, L)
    value: Tensor  # (B, L)
    distribution: Distribution  # per decision, for exact KLs (TRPO)


class ActorCritic(Protocol):
    """An ``nn.Module`` that acts, scores stored actions and values observations."""

    def act(self, obs: Observation, deterministic: bool = False) -> PolicyStep: ...

    def evaluate(self, obs: Observation, action: Tensor) -> PolicyEvaluation: ...

    def value(self, obs: Observation) -> Tensor:  # (N,): V(s) before any decision
        ...

    def decision_values(self, obs: Observation, action: Tensor) -> Tensor:
        """V before each decision of stored actions (B, L): ``evaluate(...).value`` without the
        actor's forward, for critic regression."""
        ...

    def env_action(self, step: PolicyStep) -> Any:
        """What the environment receives for ``step``: a Box action clipped into its bounds, or a
        completion with its per-token log-probs (the text env's KL penalty needs them)."""
        ...

    def actor_parameters(self) -> list[nn.Parameter]: ...

    def critic_parameters(self) -> list[nn.Parameter]: ...


class UnsupportedSpaceError(ValueError):
    """An observation or action space that a policy cannot handle."""
