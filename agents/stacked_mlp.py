"""S MLP actor-critics of one architecture, stacked into one computation: every layer of every run is
one batched matmul over a leading run dimension S.

The runs share nothing but the arithmetic. Each run's parameters are its own slice of the stacked
tensors, each run draws its actions from its own generator, and a run's forward is the forward of its
own ``MLPActorCritic`` (float rounding aside), so a seed batch trains S honest independent runs.
On the CPU, batched matmuls over a flat parameter buffer beat ``torch.func.vmap`` of the module: at
CartPole sizes the update is dispatch-bound, and vmap adds its own dispatch to every op.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from agents.base import PolicyEvaluation, PolicyStep
from agents.distributions import Categorical, DiagGaussian
from agents.mlp import MLPActorCritic


class _NumpyTanh(torch.autograd.Function):
    """tanh by NumPy on the CPU: its vectorised loop is 7x faster than torch's here (10 × 256 × 64
    floats: 64 µs against 465), and within an ulp or two of it. The backward is 1 − y², from the output."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        y = torch.from_numpy(np.tanh(x.detach().contiguous().numpy()))
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        (y,) = ctx.saved_tensors
        return torch.ops.aten.tanh_backward(grad, y)  # grad · (1 − y²) in one pass


def tanh(x: Tensor) -> Tensor:
    if x.device.type == "cpu" and x.dtype == torch.float32:
        return _NumpyTanh.apply(x)
    return torch.tanh(x)


def unstackable(policy: object) -> str:
    """Why ``policy`` cannot run in a seed batch ('' if it can): the setting that stops it."""
    if not isinstance(policy, MLPActorCritic):
        return f"agent {type(policy).__name__} (only agent=mlp is batched)"
    if policy.shared_trunk:
        return "agent.shared_trunk=true"
    if policy.gsde:
        return "agent.gsde=true"
    return ""


def _to_stacked(name: str, tensor: Tensor) -> Tensor:
    """A run's parameter in its stacked layout: weights as they are, (out, in); biases and the log-std
    as one row (1, out) that broadcasts over the batch."""
    return tensor.detach() if name.endswith("weight") else tensor.detach().unsqueeze(0)


def _from_stacked(name: str, stacked: Tensor) -> Tensor:
    return stacked if name.endswith("weight") else stacked[0]


class _StackedLinear(torch.autograd.Function):
    """y = x Wᵀ + b for each run: x (S, N, in), W (S, out, in), b (S, 1, out). Autograd's own backward of
    ``baddbmm`` forms ∂W as (xᵀ g)ᵀ, which MKL runs 5-10x slower than g ᵀx when ``out`` is small (a
    policy or value head: 64 -> 2 takes 233 µs against 42 at 10 × 256 rows); this picks the faster
    product for each shape, and skips ∂x where the input needs none (the observations)."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
        ctx.save_for_backward(x, weight)
        return torch.baddbmm(bias, x, weight.transpose(1, 2))

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor, Tensor]:
        x, weight = ctx.saved_tensors
        grad_x = torch.bmm(grad, weight) if ctx.needs_input_grad[0] else None  # (S, N, in)
        if weight.shape[2] < weight.shape[1]:  # in < out
            grad_weight = torch.bmm(x.transpose(1, 2), grad).transpose(1, 2)  # (S, out, in)
        else:
            grad_weight = torch.bmm(grad.transpose(1, 2), x)
        return grad_x, grad_weight, grad.sum(1, keepdim=True)


class StackedMLPActorCritic:
    """The policies of S runs as stacked tensors (S, ...) with the ``ActorCritic`` methods over (S, N, ...)."""

    def __init__(self, policies: Sequence[MLPActorCritic]):
        reasons = {unstackable(p) for p in policies} - {""}
        if reasons:
            raise ValueError(f"cannot stack these policies: {', '.join(sorted(reasons))}")
        first = policies[0]
        self.discrete = first.discrete
        # every update differentiates once (TRPO's Fisher products too: ppo_core/batched_trpo.py), so tanh
        # may be NumPy's, whose backward is not itself differentiable
        self.activation = tanh if first.actor.activation is torch.tanh else first.actor.activation
        self.torch_activation = first.actor.activation  # differentiable by torch.func (forward mode)
        self.names = [name for name, _ in first.named_parameters()]
        per_run = [dict(p.named_parameters()) for p in policies]
        self.leaves = [torch.stack([_to_stacked(name, run[name]) for run in per_run]).requires_grad_()
                       for name in self.names]  # each (S, *stacked shape)
        self.by_name = dict(zip(self.names, self.leaves))
        name_of = {id(p): name for name, p in first.named_parameters()}
        self.actor_names = [name_of[id(p)] for p in first.actor_parameters()]
        self.critic_names = [name_of[id(p)] for p in first.critic_parameters()]
        buffers = dict(first.named_buffers())
        if self.discrete:
            self.action_offset = buffers["action_offset"]
        else:
            self.action_low, self.action_high = buffers["action_low"], buffers["action_high"]

    @property
    def num_runs(self) -> int:
        return self.leaves[0].shape[0]

    def select(self, keep: Tensor) -> None:
        """Keep only the runs at indices ``keep`` (a run that finished leaves the batch)."""
        self.leaves = [leaf.detach()[keep].requires_grad_() for leaf in self.leaves]
        self.by_name = dict(zip(self.names, self.leaves))

    def subset(self, keep: Tensor) -> "StackedMLPActorCritic":
        """The runs at indices ``keep`` as stacked policies of their own (copies; this one is unchanged)."""
        if keep.numel() == self.num_runs and bool((keep == torch.arange(self.num_runs, device=keep.device)).all()):
            return self
        other = copy.copy(self)
        other.select(keep)
        return other

    def write_back(self, run: int, policy: MLPActorCritic) -> None:
        """Copy run ``run``'s parameters into its own ``MLPActorCritic`` (checkpoints, evaluation)."""
        with torch.no_grad():
            for name, parameter in policy.named_parameters():
                parameter.copy_(_from_stacked(name, self.by_name[name][run]))

    def leaves_of(self, names: Sequence[str] | None = None) -> list[Tensor]:
        """The stacked parameters ``names`` (None: all), e.g. ``actor_names`` for an actor's optimiser."""
        return self.leaves if names is None else [self.by_name[name] for name in names]

    def size_of(self, names: Sequence[str] | None = None) -> int:
        """P of the flat (S, P) layout of ``names``, which an optimiser over them works on."""
        return sum(leaf[0].numel() for leaf in self.leaves_of(names))

    def flat_run(self, tensors: dict[str, Tensor], names: Sequence[str] | None = None) -> Tensor:
        """One run's per-parameter tensors (an optimiser's moments), by name in the policy's layout, as
        that run's row (P,) of the flat layout of ``names``."""
        return torch.cat([_to_stacked(name, tensors[name]).reshape(-1) for name in names or self.names])

    def unflat_run(self, row: Tensor, names: Sequence[str] | None = None) -> dict[str, Tensor]:
        """The inverse of ``flat_run``: a row (P,) as per-parameter tensors in the policy's layout."""
        leaves = self.leaves_of(names)
        pieces = row.split([leaf[0].numel() for leaf in leaves])
        return {name: _from_stacked(name, piece.view(leaf.shape[1:])).clone()
                for name, piece, leaf in zip(names or self.names, pieces, leaves)}

    def flat(self, tensors: Sequence[Tensor]) -> Tensor:
        """Per-leaf tensors (gradients, updates) as one (S, P) tensor."""
        return torch.cat([t.reshape(t.shape[0], -1) for t in tensors], dim=1)

    def add_(self, update: Tensor, names: Sequence[str] | None = None) -> None:
        """parameters += update, with ``update`` (S, P) in the flat layout of ``names``."""
        leaves = self.leaves_of(names)
        with torch.no_grad():
            pieces = update.split([leaf[0].numel() for leaf in leaves], dim=1)
            torch._foreach_add_(leaves, [piece.view_as(leaf) for piece, leaf in zip(pieces, leaves)])

    # ------------------------------------------------------------------ forward
    def _mlp(self, prefix: str, x: Tensor) -> Tensor:
        """The network ``prefix`` (actor or critic) on x (S, N, in) -> (S, N, out)."""
        depth = sum(1 for name in self.names if name.startswith(prefix) and name.endswith("weight"))
        x = x.contiguous()  # MKL's batched matmul rounds a strided input otherwise than a contiguous one
        for i in range(depth):
            layer = f"{prefix}.layers.{i}"
            x = _StackedLinear.apply(x, self.by_name[f"{layer}.weight"], self.by_name[f"{layer}.bias"])
            if i < depth - 1:
                x = self.activation(x)
        return x

    def actor_linearization(self, obs: Tensor) -> Callable[[Tensor], Tensor]:
        """v ↦ J v for obs (S, N, D): the directional derivative of the actor's head (logits or means,
        (S, N, K)) along the actor's parameters v (S, P) in the flat layout of ``actor_names`` (its
        log-std, which the head does not depend on, included). Forward mode from the activations and
        activation slopes of one forward pass, cached: each product is two batched matmuls a layer."""
        depth = sum(1 for name in self.actor_names if name.endswith("weight"))
        inputs, slopes = [], []  # each layer's input (S, N, in); each hidden layer's σ'(z)
        x = obs.contiguous()
        with torch.no_grad():
            for i in range(depth):
                inputs.append(x)
                z = torch.baddbmm(self.by_name[f"actor.layers.{i}.bias"], x,
                                  self.by_name[f"actor.layers.{i}.weight"].transpose(1, 2))
                if i < depth - 1:  # an elementwise activation's slope, whatever the activation
                    x, slope = torch.func.jvp(self.torch_activation, (z,), (torch.ones_like(z),))
                    slopes.append(slope)
        sizes = [self.by_name[name][0].numel() for name in self.actor_names]
        index = {name: i for i, name in enumerate(self.actor_names)}

        def jvp(v: Tensor) -> Tensor:
            pieces = v.split(sizes, dim=1)
            tangent = lambda name: pieces[index[name]].view_as(self.by_name[name])  # noqa: E731
            dx = None
            for i in range(depth):
                weight, bias = f"actor.layers.{i}.weight", f"actor.layers.{i}.bias"
                dz = torch.baddbmm(tangent(bias), inputs[i], tangent(weight).transpose(1, 2))
                if dx is not None:
                    dz = dz + torch.bmm(dx, self.by_name[weight].detach().transpose(1, 2))
                dx = dz * slopes[i] if i < depth - 1 else dz
            return dx

        return jvp

    def actor_head(self, obs: Tensor) -> Tensor:
        """The actor's logits or means (S, N, K) for obs (S, N, D)."""
        return self._mlp("actor", obs)

    def _distribution(self, obs: Tensor) -> Categorical | DiagGaussian:
        head = self._mlp("actor", obs)  # (S, N, K) logits or (S, N, A) means
        if self.discrete:
            return Categorical.from_logits(head)
        return DiagGaussian(head, self.by_name["log_std"])  # log-std (S, 1, A)

    def act(self, obs: Tensor, generators: Sequence[torch.Generator]) -> PolicyStep:
        """Sampled actions for obs (S, N, D), run s drawing from ``generators[s]`` exactly the numbers
        its own policy's ``act`` draws from the global generator."""
        dist = self._distribution(obs)
        if self.discrete:  # Categorical.sample: argmax of p / E, E ~ Exp(1)
            probs = dist.log_probs.exp()  # (S, N, K)
            noise = torch.stack([torch.empty(probs.shape[1:]).exponential_(1, generator=g) for g in generators])
            action = (probs / noise.to(probs.device)).argmax(-1)  # (S, N)
        else:  # DiagGaussian.sample
            noise = torch.stack([torch.randn(dist.mean.shape[1:], generator=g) for g in generators])
            action = dist.mean + dist.log_std.exp() * noise.to(dist.mean.device)  # (S, N, A)
        log_prob = dist.log_prob(action).unsqueeze(-1)  # (S, N, 1)
        value = self._mlp("critic", obs)  # (S, N, 1)
        return PolicyStep(action, log_prob, value, torch.ones_like(log_prob, dtype=torch.bool))

    def evaluate(self, obs: Tensor, action: Tensor) -> PolicyEvaluation:
        dist = self._distribution(obs)
        return PolicyEvaluation(dist.log_prob(action).unsqueeze(-1), dist.entropy().unsqueeze(-1),
                                self._mlp("critic", obs), dist)

    def value(self, obs: Tensor) -> Tensor:
        return self._mlp("critic", obs).squeeze(-1)  # (S, N)

    def decision_values(self, obs: Tensor, action: Tensor) -> Tensor:
        return self._mlp("critic", obs)  # (S, B, 1)

    def greedy_env_action(self, obs: Tensor) -> Tensor:
        """Each run's greedy env actions for obs (S, N, D), its distribution's mode as ``MLPActorCritic.act(obs,
        deterministic=True)`` takes it, without log-probs or values (evaluation)."""
        return self._env_action(self._distribution(obs).mode())

    def env_action(self, step: PolicyStep) -> Tensor:
        return self._env_action(step.action)

    def _env_action(self, action: Tensor) -> Tensor:
        if self.discrete:
            return action + self.action_offset
        return torch.maximum(torch.minimum(action, self.action_high), self.action_low)
