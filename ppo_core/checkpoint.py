"""Atomic checkpoints that load with ``weights_only=True``."""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any, BinaryIO, Callable

import torch

from ppo_core.errors import ConfigError


def _replace_atomically(path: str | os.PathLike, write: Callable[[BinaryIO], object]) -> None:
    """``write`` a temporary file, flush it to disk, then rename it over ``path``: a crash never leaves
    half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def save_atomic(state: dict[str, Any], path: str | os.PathLike) -> None:
    _replace_atomically(path, lambda f: torch.save(state, f))


def write_text_atomic(text: str, path: str | os.PathLike) -> None:
    """A text file written atomically (a run's ``summary.json``, which sweeps and comparisons read)."""
    _replace_atomically(path, lambda f: f.write(text.encode()))


def load(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"checkpoint {str(path)!r} does not exist; expected a file written by training (checkpoint.pt)")
    return torch.load(path, map_location=map_location, weights_only=True)


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
