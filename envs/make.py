"""Build the training and evaluation vector envs from an ``EnvConfig``."""

from __future__ import annotations

import importlib

import gymnasium as gym
import torch
from gymnasium.vector import AutoresetMode

from envs.base import VecEnv
from envs.classic_vector import BATCHED_ENVS
from envs.gym_env import GymVecEnv
from envs.torch_classic import TASK_KWARGS, TASKS, TorchClassicVecEnv
from ppo_core.config import EnvConfig
from ppo_core.errors import ConfigError

VECTORIZATIONS = ("auto", "sync", "async", "vector_entry_point", "batched", "torch")
BATCHED_KWARGS = {"max_episode_steps", "goal_velocity", "g"}
"""What the batched classic envs take; anything else (``render_mode``, ...) needs Gymnasium's own env."""
TORCH_KWARGS = {"max_episode_steps", *TASK_KWARGS}
"""What the torch ports take (envs/torch_classic)."""


def find_spec(env_id: str) -> gym.envs.registration.EnvSpec:
    """The registered spec of ``env_id``, importing ``module`` first for ``module:Name-v0`` ids."""
    module, _, name = env_id.rpartition(":")
    try:
        if module:
            importlib.import_module(module)
        return gym.spec(name)
    except ImportError as error:
        raise ConfigError(f"env.id={env_id!r}: cannot import module {module!r} ({error})") from None
    except gym.error.Error as error:
        raise ConfigError(
            f"env.id={env_id!r} is not a registered Gymnasium environment ({error}); "
            "use an id from gymnasium.registry, e.g. CartPole-v1, or 'package.module:MyEnv-v0'"
        ) from None


def make_gym_env(
    config: EnvConfig, device: torch.device, gamma: float, num_envs: int | None = None, wrappers: list | None = None
) -> VecEnv:
    """A torch-facing vector env; ``num_envs`` overrides the config (evaluation uses its own count) and
    ``wrappers`` wrap each sub-env (sync and async only)."""
    if config.vectorization not in VECTORIZATIONS:
        raise ConfigError(f"env.vectorization={config.vectorization!r} is unknown; expected one of {VECTORIZATIONS}")
    spec = find_spec(config.id)
    num_envs = config.num_envs if num_envs is None else num_envs
    if num_envs < 1:
        raise ConfigError(f"{config.id}: {num_envs} env copies requested; expected >= 1")
    mode = vectorization_for(config, spec, device, wrappers)
    entry_point = spec.entry_point if isinstance(spec.entry_point, str) else None
    batched, port = BATCHED_ENVS.get(entry_point), TASKS.get(entry_point)
    if mode == "vector_entry_point" and spec.vector_entry_point is None:
        raise ConfigError(
            f"env.vectorization=vector_entry_point: {config.id} has no vectorised implementation; use sync or async"
        )
    if mode == "torch":
        return _make_torch(config, spec, port, num_envs, wrappers, device, gamma)
    if mode == "batched":
        env = _make_batched(config, spec, batched, num_envs, wrappers)
    else:
        vector_kwargs = {} if mode == "vector_entry_point" else {"autoreset_mode": AutoresetMode.SAME_STEP}
        try:
            env = gym.make_vec(
                config.id,
                num_envs=num_envs,
                vectorization_mode=mode,
                vector_kwargs=vector_kwargs,
                wrappers=wrappers,
                **config.kwargs,
            )
        except (gym.error.Error, TypeError) as error:
            raise ConfigError(f"env.id={config.id!r} could not be built: {error}") from None
    return GymVecEnv(
        env,
        device,
        normalize_obs=config.normalize_obs,
        normalize_reward=config.normalize_reward,
        gamma=gamma,
        clip_obs=config.clip_obs,
        clip_reward=config.clip_reward,
    )


def vectorization_for(config: EnvConfig, spec: gym.envs.registration.EnvSpec, device: torch.device,
                      wrappers: list | None = None) -> str:
    """The vectorization ``config`` asks for, with ``auto`` resolved: on CUDA the torch port of a
    classic-control task (stepping on the device saves a host-device copy a step); otherwise what it
    picked before the ports existed (Gymnasium's own vectorised env, the batched NumPy envs,
    SyncVectorEnv), so CPU runs keep their numbers."""
    if config.vectorization != "auto":
        return config.vectorization
    entry_point = spec.entry_point if isinstance(spec.entry_point, str) else None
    if device.type == "cuda" and entry_point in TASKS and not _needs_gymnasium(config, spec, wrappers, TORCH_KWARGS):
        return "torch"
    if spec.vector_entry_point is not None:
        return "vector_entry_point"
    if entry_point in BATCHED_ENVS and not _needs_gymnasium(config, spec, wrappers, BATCHED_KWARGS):
        return "batched"
    return "sync"


def _needs_gymnasium(config: EnvConfig, spec: gym.envs.registration.EnvSpec, wrappers: list | None,
                     supported: set[str]) -> str:
    """What our own envs cannot do for this config ('' if nothing): render, wrap, other settings."""
    unsupported = (set(spec.kwargs) | set(config.kwargs)) - supported
    if unsupported:
        return f"env.kwargs {sorted(unsupported)}"
    if wrappers or spec.additional_wrappers:
        return "per-env wrappers (e.g. video)"
    return ""


def _make_batched(config: EnvConfig, spec: gym.envs.registration.EnvSpec, batched: type | None, num_envs: int,
                  wrappers: list | None) -> gym.vector.VectorEnv:
    """One of envs/classic_vector.py's envs; ``max_episode_steps`` as ``gymnasium.make`` reads it (absent
    or None: the spec's limit; -1: none)."""
    kwargs, limit = _checked_kwargs(config, spec, wrappers, "batched", batched, BATCHED_ENVS, BATCHED_KWARGS)
    try:
        return batched(num_envs=num_envs, max_episode_steps=limit, **kwargs)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"env.kwargs={dict(config.kwargs)} do not fit {config.id}: {error}") from None


def _checked_kwargs(config: EnvConfig, spec: gym.envs.registration.EnvSpec, wrappers: list | None, mode: str,
                    implementation: type | None, implementations: dict, accepted: set[str]) -> tuple[dict, int | None]:
    """For ``env.vectorization=mode`` (one of this project's own implementations of the task): a
    ConfigError where there is none or it cannot take the config; else the constructor arguments and
    ``max_episode_steps`` as ``gymnasium.make`` reads it (absent or None: the spec's limit; -1: none)."""
    if implementation is None:
        ids = sorted(s.id for s in gym.registry.values() if s.entry_point in implementations)
        what = "torch port" if mode == "torch" else f"{mode} implementation"
        raise ConfigError(f"env.vectorization={mode}: {config.id} has no {what} (these do: {ids})")
    missing = _needs_gymnasium(config, spec, wrappers, accepted)
    if missing:
        raise ConfigError(f"env.vectorization={mode} does not take {missing}; use env.vectorization=sync")
    kwargs = {**spec.kwargs, **config.kwargs}
    limit = kwargs.pop("max_episode_steps", None)
    return kwargs, spec.max_episode_steps if limit is None else None if limit == -1 else limit


def _make_torch(config: EnvConfig, spec: gym.envs.registration.EnvSpec, port: type | None, num_envs: int,
                wrappers: list | None, device: torch.device, gamma: float) -> TorchClassicVecEnv:
    """The torch port of a classic-control task (envs/torch_classic), stepped on ``device``."""
    kwargs, limit = _checked_kwargs(config, spec, wrappers, "torch", port, TASKS, TORCH_KWARGS)
    try:
        task = port(**kwargs)
        return TorchClassicVecEnv(task, num_envs, device, max_episode_steps=limit, normalize_obs=config.normalize_obs,
                                  normalize_reward=config.normalize_reward, gamma=gamma, clip_obs=config.clip_obs,
                                  clip_reward=config.clip_reward, name=config.id)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"env.kwargs={dict(config.kwargs)} do not fit {config.id}: {error}") from None
