"""Raw episode returns and lengths kept on the device: sums and counts accumulate as tensors every
step, and are read back (one sync) only when popped, once per rollout."""

from __future__ import annotations

import torch
from torch import Tensor

from envs.base import EpisodeStats


class DeviceEpisodeTracker:
    def __init__(self, num_envs: int, device: torch.device):
        self.returns = torch.zeros(num_envs, dtype=torch.float64, device=device)  # (N,) of the running episodes
        self.lengths = torch.zeros(num_envs, dtype=torch.long, device=device)
        self.sums = torch.zeros(3, dtype=torch.float64, device=device)  # return sum, length sum, count of ended ones

    def update(self, reward: Tensor, episode_ends: Tensor) -> None:  # (N,), (N,) bool
        self.returns += reward
        self.lengths += 1
        ended = episode_ends.double()
        self.sums += torch.stack([(self.returns * ended).sum(), (self.lengths * ended).sum(), ended.sum()])
        self.returns.masked_fill_(episode_ends, 0.0)
        self.lengths.masked_fill_(episode_ends, 0)

    def pop(self) -> EpisodeStats:
        return_sum, length_sum, count = self.sums.tolist()
        self.sums.zero_()
        return EpisodeStats(return_sum, int(length_sum), int(count))

    def state_dict(self) -> dict[str, Tensor]:
        return {"returns": self.returns.cpu().clone(), "lengths": self.lengths.cpu().clone()}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        self.returns.copy_(state["returns"])
        self.lengths.copy_(state["lengths"])
