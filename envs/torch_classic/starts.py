"""Start states drawn ahead of time, so that an autoreset on the device never waits for the host.

Gymnasium resets an ended copy by drawing its next start state from that copy's NumPy generator. On a
GPU, drawing only when a copy ends would mean reading the ``ended`` mask back every step (a
host-device sync), then drawing and copying back. Instead each copy's next Q start states are drawn
in advance, in the order its generator yields them, and kept on the device as a ring of Q slots per
copy; a reset takes a copy's next entry by tensor indexing and advances the copy's pointer. A step
takes at most one start per copy, so after Q takes no copy can have run out: the next take first
reads the pointers back (the one sync of Q steps) and draws the consumed slots again, each copy's in
one NumPy call. Every copy sees exactly the sequence of start states its Gymnasium env would draw,
whatever Q is.

On the CPU, where reading the mask costs nothing, the queue saves NumPy calls: one per copy per Q
steps instead of one per ended episode (CartPole, 256 copies: 181 µs a step against 241 drawing on
demand, benchmarks/classic_env_stepping.py). The ring is laid out (D, Q·N), slot-major, so that a
take is one ``index_select`` giving the (D, N) rows the dynamics work on. A snapshot holds it whole:
Q·N·D numbers, 16 MB for 4,096 CartPoles at Q = 128.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
from gymnasium.utils import seeding
from torch import Tensor

Draw = Callable[[np.random.Generator, int], np.ndarray]
"""(copy's generator, count) -> (count, D) float64 start states, as ``count`` resets draw them."""


class StartQueue:
    def __init__(self, draw: Draw, num_envs: int, state_dim: int, size: int, device: torch.device,
                 dtype: torch.dtype):
        if size < 1:
            raise ValueError(f"start queue size={size}: expected >= 1")
        self.draw = draw
        self.num_envs, self.state_dim, self.size = num_envs, state_dim, size
        self.device, self.dtype = device, dtype
        self.generators: list[np.random.Generator | None] = [None] * num_envs  # one per copy, as sub-envs have
        self.ring = torch.zeros(state_dim, size * num_envs, device=device, dtype=dtype)  # (D, Q·N): slot q, copy i at q·N + i
        self.head = torch.zeros(num_envs, dtype=torch.long, device=device)  # (N,) starts taken so far
        self.filled = np.zeros(num_envs, dtype=np.int64)  # (N,) head at the last refill (on the host)
        self.takes = 0  # takes since the last refill; at most one start per copy each
        self.rows = torch.arange(num_envs, device=device)

    @property
    def seeded(self) -> bool:
        return self.generators[0] is not None

    def reseed(self, seeds: list[int | None]) -> Tensor:
        """Seed copy i with ``seeds[i]`` (None: continue its generator, or a random one if it has none);
        returns every copy's next start (D, N), with the Q after it queued."""
        fresh = [i for i, seed in enumerate(seeds) if seed is not None or self.generators[i] is None]
        if len(fresh) < self.num_envs:  # the others continue their queued sequence
            start = self.take(torch.ones(self.num_envs, dtype=torch.bool, device=self.device))
        else:
            start = torch.zeros(self.state_dim, self.num_envs, dtype=self.dtype, device=self.device)
            self.takes = 0
        if fresh:
            for i in fresh:
                self.generators[i], _ = seeding.np_random(seeds[i])
            drawn = np.stack([self.draw(self.generators[i], self.size + 1) for i in fresh], 2)  # (Q + 1, D, F)
            drawn = torch.as_tensor(drawn, dtype=self.dtype).to(self.device)
            copies = torch.as_tensor(fresh).to(self.device)
            start[:, copies] = drawn[0]
            slots = (torch.arange(self.size, device=self.device).unsqueeze(1) * self.num_envs + copies).reshape(-1)
            self.ring[:, slots] = drawn[1:].permute(1, 0, 2).reshape(self.state_dim, -1)
            self.head[copies] = 0
            self.filled[fresh] = 0
        return start

    def take(self, mask: Tensor) -> Tensor:
        """(N,) bool -> (D, N): each copy's next start; the copies in ``mask`` consume theirs."""
        if self.takes == self.size:
            self.refill()
        start = self.ring.index_select(1, self.head % self.size * self.num_envs + self.rows)
        self.head += mask
        self.takes += 1
        return start

    def refill(self) -> None:
        """Draw again the slots consumed since the last refill: the one host-device sync of Q steps."""
        head = self.head.cpu().numpy().copy()
        consumed = head - self.filled
        copies = np.flatnonzero(consumed)
        if len(copies):
            states = np.concatenate([self.draw(self.generators[i], int(consumed[i])) for i in copies])  # (C, D)
            slots = np.concatenate([np.arange(self.filled[i], head[i]) for i in copies]) % self.size
            columns = torch.as_tensor(slots * self.num_envs + np.repeat(copies, consumed[copies])).to(self.device)
            self.ring[:, columns] = torch.as_tensor(states.T, dtype=self.dtype).to(self.device)
        self.filled = head
        self.takes = 0

    def state_dict(self) -> dict[str, Any]:
        """Plain tensors and the generators' state dicts (loads with ``weights_only=True``)."""
        return {"ring": self.ring.cpu().clone(), "head": self.head.cpu().clone(),
                "filled": torch.from_numpy(self.filled.copy()), "takes": self.takes,
                "generators": [rng.bit_generator.state for rng in self.generators]}

    def fits(self, state: dict[str, Any]) -> bool:
        return "ring" in state and tuple(state["ring"].shape) == tuple(self.ring.shape)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.ring.copy_(state["ring"].to(self.device, self.dtype))
        self.head.copy_(state["head"].to(self.device))
        self.filled = state["filled"].numpy().copy()
        self.takes = int(state["takes"])
        self.generators = [generator_from_state(s) for s in state["generators"]]


def generator_from_state(state: dict[str, Any]) -> np.random.Generator:
    generator = np.random.Generator(getattr(np.random, state["bit_generator"])())
    generator.bit_generator.state = state
    return generator
