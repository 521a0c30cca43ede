"""Raw episode returns and lengths kept on the device: the ended episodes' sums accumulate per copy as
tensors every step, and are summed and read back (one sync) only when popped, once per rollout."""

from __future__ import annotations

import torch
from torch import Tensor

from envs.base import EpisodeStats


class DeviceEpisodeTracker:
    def __init__(self, num_envs: int, device: torch.device):
        self.running = torch.zeros(2, num_envs, dtype=torch.float64, device=device)  # (2, N): return, length so far
        self.ended = torch.zeros(3, num_envs, dtype=torch.float64, device=device)  # (3, N): of the ended episodes,
        # their returns, lengths and count since the last pop (lengths exact in float64 up to 2**53)

    def update(self, reward: Tensor, episode_ends: Tensor) -> None:  # (N,), (N,) bool
        self.running[0] += reward
        self.running[1] += 1
        ends = episode_ends.double()
        self.ended[:2].addcmul_(self.running, ends)
        self.ended[2] += ends
        self.running.masked_fill_(episode_ends, 0.0)

    def pop(self) -> EpisodeStats:
        return_sum, length_sum, count = self.ended.sum(1).tolist()
        self.ended.zero_()
        return EpisodeStats(return_sum, int(length_sum), int(count))

    def state_dict(self) -> dict[str, Tensor]:
        return {"returns": self.running[0].cpu().clone(), "lengths": self.running[1].long().cpu()}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        self.running[0].copy_(state["returns"])
        self.running[1].copy_(state["lengths"])
