"""Where and how reproducibly a run computes: the device a config names and the seeds of every RNG."""

from __future__ import annotations

import random

import numpy as np
import torch

from ppo_core.errors import ConfigError


def resolve_device(name: str) -> torch.device:
    """``auto`` is CUDA when present, else the CPU; a device that does not exist here is a ``ConfigError``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"device={name!r} is not a device; expected auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={name!r} but CUDA is not available here; use device=auto or device=cpu")
    return device


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global RNGs (torch's seeds every CUDA device too)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
