"""Capture and restore the dynamic state of in-process Gymnasium environments.

A resumed run continues the very episodes it was killed in, so it ends with the same parameters
as an uninterrupted one. The snapshot holds plain data only (tensors, numbers, RNG state dicts),
which ``torch.load(weights_only=True)`` accepts; no object is ever unpickled.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch

_RNG_KEY = "__numpy_rng_state__"


def _encode(value: Any) -> tuple[bool, Any]:
    """(True, plain value) for state worth saving; (False, None) for everything else."""
    if isinstance(value, np.generic):  # before float: np.float64 is a float
        return True, value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return True, value
    if isinstance(value, np.ndarray) and value.dtype != object:
        return True, torch.from_numpy(value.copy())
    if isinstance(value, np.random.Generator):
        return True, {_RNG_KEY: value.bit_generator.state}
    if isinstance(value, (list, tuple)):  # the batched envs' generators; MountainCarEnv's state tuple
        encoded = [_encode(item) for item in value]
        if all(ok for ok, _ in encoded):
            return True, type(value)(item for _, item in encoded)
    return False, None


def _decode(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return type(value)(_decode(item) for item in value)
    if isinstance(value, torch.Tensor):
        return value.numpy().copy()
    if isinstance(value, dict) and _RNG_KEY in value:
        state = value[_RNG_KEY]
        generator = np.random.Generator(getattr(np.random, state["bit_generator"])())
        generator.bit_generator.state = state
        return generator
    return value


def layers(env: gym.vector.VectorEnv) -> list[Any]:
    """The vector env and, for in-process sub-envs, every wrapper down to the base env."""
    found: list[Any] = [env]
    for sub_env in getattr(env, "envs", []):
        while True:
            found.append(sub_env)
            if not hasattr(sub_env, "env"):
                break
            sub_env = sub_env.env
    return found


def can_snapshot(env: gym.vector.VectorEnv) -> bool:
    """Sub-environments in other processes (async) cannot be captured."""
    return not isinstance(env, gym.vector.AsyncVectorEnv)


def capture(env: gym.vector.VectorEnv) -> list[dict[str, Any]]:
    snapshot = []
    for layer in layers(env):
        kept = {}
        for name, value in vars(layer).items():
            ok, encoded = _encode(value)
            if ok:
                kept[name] = encoded
        snapshot.append(kept)
    return snapshot


def fits(env: gym.vector.VectorEnv, snapshot: list[dict[str, Any]]) -> bool:
    """Whether ``snapshot`` was captured from an env of this layout: as many layers and copies."""
    return len(layers(env)) == len(snapshot) and snapshot[0].get("num_envs", env.num_envs) == env.num_envs


def restore(env: gym.vector.VectorEnv, snapshot: list[dict[str, Any]]) -> None:
    if not fits(env, snapshot):
        raise ValueError(f"environment snapshot of {len(snapshot)} layers does not fit this {type(env).__name__}")
    for layer, state in zip(layers(env), snapshot):
        for name, value in state.items():
            setattr(layer, name, _decode(value))
