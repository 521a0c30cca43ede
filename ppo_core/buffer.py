"""A preallocated rollout buffer that stores whatever shapes the policy and the env produce."""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import torch
from torch import Tensor

Tree = Any  # a tensor or a (nested) dict of tensors


def tree_map(fn: Callable[[Tensor], Tensor], tree: Tree) -> Tree:
    if isinstance(tree, dict):
        return {key: tree_map(fn, value) for key, value in tree.items()}
    return fn(tree)


def _write(storage: Tree, index: int, value: Tree) -> None:
    if isinstance(storage, dict):
        for key in storage:
            _write(storage[key], index, value[key])
    else:
        storage[index].copy_(value)


class RolloutBatch(NamedTuple):
    """A flat batch of B = T·N env steps, each with L decisions."""

    obs: Tree  # (B, ...)
    actions: Tensor  # (B, *action_shape)
    log_probs: Tensor  # (B, L) at rollout time
    values: Tensor  # (B, L) at rollout time
    advantages: Tensor  # (B, L)
    returns: Tensor  # (B, L)
    mask: Tensor  # (B, L) bool: real decisions
    extras: dict[str, Tensor]  # (B, ...) env-provided tensors a loss term reads, per step or per decision

    def __len__(self) -> int:
        return self.mask.shape[0]

    def select(self, indices: Tensor) -> "RolloutBatch":
        return RolloutBatch(*(tree_map(lambda x: x[indices], field) for field in self))

    def replace(self, **fields: Tree) -> "RolloutBatch":
        """A copy with ``fields`` replaced (NamedTuple's ``_replace`` would read ``__len__``, the batch size)."""
        return RolloutBatch(**{**self._asdict(), **fields})


class RolloutBuffer:
    """Time-major storage (T, N, ...) allocated on the first ``add`` from the shapes it sees."""

    def __init__(self, num_steps: int, device: torch.device):
        self.num_steps = num_steps
        self.device = device
        self.storage: dict[str, Tree] = {}

    def add(self, step: int, **fields: Tree) -> None:
        for name, value in fields.items():
            if name not in self.storage:
                self.storage[name] = tree_map(
                    lambda x: torch.zeros((self.num_steps, *x.shape), dtype=x.dtype, device=self.device), value
                )
            _write(self.storage[name], step, value)

    def __getitem__(self, name: str) -> Tree:
        return self.storage[name]

    def flatten(self, advantages: Tensor, returns: Tensor) -> RolloutBatch:
        """Merge time and env dimensions: (T, N, ...) -> (T·N, ...)."""
        flat = lambda x: x.reshape(-1, *x.shape[2:])  # noqa: E731
        return RolloutBatch(
            obs=tree_map(flat, self.storage["obs"]),
            actions=flat(self.storage["actions"]),
            log_probs=flat(self.storage["log_probs"]),
            values=flat(self.storage["values"]),
            advantages=flat(advantages),
            returns=flat(returns),
            mask=flat(self.storage["mask"]),
            extras=tree_map(flat, self.storage.get("extras", {})),
        )
