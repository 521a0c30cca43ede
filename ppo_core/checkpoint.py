"""Atomic, checksummed checkpoints that load with ``weights_only=True``.

A checkpoint is a ``torch.save`` of the trainer's state plus ``format`` (the version of this layout)
and ``checksum`` (SHA-256 over every tensor's bytes and every other value, in key order), so a file
damaged after it was written is told apart from one that was never a checkpoint. ``load`` names each
failure in one line: missing, not a checkpoint, truncated, unsafe content, another layout or version,
a checksum that does not match.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import random
from pathlib import Path
from typing import Any, BinaryIO, Callable

import torch

from ppo_core.errors import ConfigError

FORMAT = 2
"""Version of the checkpoint layout: 2 carries ``format`` and ``checksum`` (0.2); 1 is 0.1's, without them."""
REQUIRED_KEYS = ("model", "algorithm", "env", "iteration", "global_step", "rng", "config")
ZIP_MAGIC = b"PK\x03\x04"  # torch.save writes a zip archive


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
    try:  # the rename itself reaches the disk (POSIX; Windows cannot open a directory)
        directory = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def checksum(state: Any) -> str:
    """SHA-256 of a state tree: tensors by dtype, shape and bytes, containers in order, other values by repr."""
    digest = hashlib.sha256()

    def feed(value: Any) -> None:
        if isinstance(value, torch.Tensor):
            tensor = value.detach().cpu().contiguous()
            digest.update(f"T{tensor.dtype}{tuple(tensor.shape)}".encode())
            digest.update(memoryview(tensor.reshape(-1).view(torch.uint8).numpy()))  # no copy
        elif isinstance(value, dict):
            digest.update(b"{")
            for key in sorted(value, key=repr):
                digest.update(repr(key).encode())
                feed(value[key])
            digest.update(b"}")
        elif isinstance(value, (list, tuple)):
            digest.update(b"[" if isinstance(value, list) else b"(")
            for item in value:
                feed(item)
            digest.update(b"]")
        else:
            digest.update(repr(value).encode())

    feed(state)
    return digest.hexdigest()


def save_atomic(state: dict[str, Any], path: str | os.PathLike) -> None:
    stamped = {**state, "format": FORMAT, "checksum": checksum(state)}
    _replace_atomically(path, lambda f: torch.save(stamped, f))


def write_text_atomic(text: str, path: str | os.PathLike) -> None:
    """A text file written atomically (a run's ``summary.json``, which sweeps and comparisons read)."""
    _replace_atomically(path, lambda f: f.write(text.encode()))


def load(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """A training checkpoint's state, checked; every way a file can fail is a one-line ConfigError."""
    path = Path(path)
    name = repr(str(path))
    if path.is_dir():
        raise ConfigError(f"checkpoint {name} is a directory; expected the checkpoint.pt a run writes, e.g. "
                          f"{str(path / 'checkpoint.pt')!r}")
    if not path.is_file():
        raise ConfigError(f"checkpoint {name} does not exist; expected a file written by training (checkpoint.pt)")
    with open(path, "rb") as f:
        head = f.read(4)
    if head != ZIP_MAGIC:
        raise ConfigError(f"checkpoint {name} is not a checkpoint ({path.stat().st_size} bytes that are not a "
                          "torch.save archive); expected a checkpoint.pt written by training")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        raise ConfigError(f"checkpoint {name} holds objects that safe loading refuses (weights_only=True), so it "
                          f"was not written by ppo-core and is not run: {str(error).splitlines()[0]}") from None
    except (RuntimeError, EOFError, OSError, ValueError) as error:
        raise ConfigError(f"checkpoint {name} is truncated or damaged ({path.stat().st_size} bytes): "
                          f"{str(error).splitlines()[0]}") from None
    if not isinstance(state, dict) or any(key not in state for key in REQUIRED_KEYS):
        found = sorted(state) if isinstance(state, dict) else type(state).__name__
        raise ConfigError(f"checkpoint {name} is not a ppo-core training checkpoint: expected the keys "
                          f"{', '.join(REQUIRED_KEYS)}, found {found}")
    version = state.pop("format", 1)
    if not isinstance(version, int) or version > FORMAT:
        raise ConfigError(f"checkpoint {name} has layout version {version!r}, newer than this ppo-core reads "
                          f"({FORMAT}); upgrade ppo-core")
    expected = state.pop("checksum", None)
    if version >= 2 and expected != checksum(state):
        raise ConfigError(f"checkpoint {name} is damaged: its checksum does not match its contents")
    return state


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
