"""Wire a ``TrainConfig`` into envs, a policy, an algorithm and a trainer.

Which environment family or policy to build is read off the config's schema type, so the trainer
itself never learns which world it is in.
"""

from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agents.base import ActorCritic, UnsupportedSpaceError
from agents.mlp import MLPActorCritic
from envs.base import VecEnv
from envs.make import make_gym_env
from ppo_core.algorithms import make_algorithm
from ppo_core.auxiliary import AuxiliaryLoss
from ppo_core.config import AgentConfig, EnvConfig, LMAgentConfig, TextEnvConfig, TrainConfig, config_from_dict
from ppo_core.errors import ConfigError
from ppo_core.evaluate import evaluate_policy
from ppo_core.trainer import Trainer
from ppo_core import checkpoint

__all__ = ["config_from_dict", "resolve_device", "make_env", "make_eval_env", "make_policy", "build_trainer", "run_training"]


def resolve_device(name: str) -> torch.device:
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
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def make_env(config: TrainConfig, device: torch.device) -> VecEnv:
    if isinstance(config.env, EnvConfig):
        return make_gym_env(config.env, device, gamma=config.algo.gamma)
    if isinstance(config.env, TextEnvConfig):
        from ppo_core.build_text import make_text_env

        return make_text_env(config.env, device, config.env.prompts, "env.prompts", config.env.num_envs,
                             shuffle=True, gold=config.env.gold or config.env.reward_source == "gold", training=True)
    raise ConfigError(f"env config of type {type(config.env).__name__} has no builder")


def make_eval_env(config: TrainConfig, device: torch.device, episodes: int, video_dir: Path | None = None) -> VecEnv:
    """One copy per episode; rewards are never scaled so that returns are the task's own."""
    if isinstance(config.env, EnvConfig):
        env_config = dataclasses.replace(config.env, normalize_reward=False)
        if video_dir is not None:
            env_config = dataclasses.replace(
                env_config, vectorization="sync", kwargs={**env_config.kwargs, "render_mode": "rgb_array"}
            )
        env = make_gym_env(env_config, device, gamma=config.algo.gamma, num_envs=episodes,
                           wrappers=_video_wrappers(video_dir))
        env.set_training(False)
        return env
    if isinstance(config.env, TextEnvConfig):
        from ppo_core.build_text import make_text_env

        return make_text_env(config.env, device, config.env.eval_prompts, "env.eval_prompts", episodes,
                             shuffle=False, gold=True, training=False)
    raise ConfigError(f"env config of type {type(config.env).__name__} has no builder")


def _video_wrappers(video_dir: Path | None) -> list:
    if video_dir is None:
        return []
    import os

    from gymnasium.wrappers import RecordVideo

    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # headless: pygame renders off-screen
    os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
    return [lambda env: RecordVideo(env, str(video_dir), episode_trigger=lambda episode: episode == 0,
                                    disable_logger=True)]


def make_policy(config: TrainConfig, env: VecEnv, device: torch.device) -> ActorCritic:
    agent = config.agent
    if isinstance(agent, LMAgentConfig):
        from ppo_core.build_text import make_lm_policy

        return make_lm_policy(config, env, device)
    if isinstance(config.env, TextEnvConfig):
        raise ConfigError(f"env=text_bandit answers prompts with text: it needs agent=lm, not agent={agent.name}")
    if isinstance(agent, AgentConfig):
        try:
            policy = MLPActorCritic(
                env.single_observation_space,
                env.single_action_space,
                hidden_sizes=agent.hidden_sizes,
                activation=agent.activation,
                shared_trunk=agent.shared_trunk,
                log_std_init=agent.log_std_init,
                ortho_init=agent.ortho_init,
                gsde=agent.gsde,
                sde_sample_freq=agent.sde_sample_freq,
            )
        except UnsupportedSpaceError:
            raise
        except ValueError as error:  # a setting the network cannot take; the message names the key
            raise ConfigError(str(error)) from None
        return policy.to(device)
    raise ConfigError(f"agent config of type {type(agent).__name__} has no builder")


EVAL_SEED_OFFSET = 1_000_000
"""Evaluation episodes are seeded apart from the training envs' seeds."""


def build_trainer(config: TrainConfig, run_dir: Path) -> Trainer:
    """A trainer ready to ``train()``: fresh, or restored from ``config.resume``."""
    if config.stop_at_return is not None and (config.stop_after_evals < 1 or config.eval_episodes < 1):
        raise ConfigError(f"stop_at_return={config.stop_at_return} needs stop_after_evals >= 1 and eval_episodes >= 1 "
                          f"(got {config.stop_after_evals} and {config.eval_episodes})")
    for key, value in (("env.num_envs", config.env.num_envs), ("algo.num_steps", config.algo.num_steps)):
        if value < 1:
            raise ConfigError(f"{key}={value} is invalid; expected >= 1")
    torch.set_num_threads(config.torch_threads)
    device = resolve_device(config.device)
    seed_everything(config.seed)
    env = make_env(config, device)
    policy = make_policy(config, env, device)
    auxiliary: list[AuxiliaryLoss] = []
    if isinstance(config.env, TextEnvConfig):
        from ppo_core.build_text import make_auxiliary_losses

        auxiliary = make_auxiliary_losses(config, policy)
    algorithm = make_algorithm(policy, config.algo, auxiliary)
    eval_env = make_eval_env(config, device, config.eval_episodes) if config.eval_episodes > 0 else None

    def evaluate(number: int) -> dict[str, float]:
        eval_env.load_state_dict(env.state_dict(), restore_episodes=False)  # current normaliser statistics
        policy.eval()
        # new start states at every evaluation, as SB3's EvalCallback draws them: with one fixed set, a
        # run is judged again and again on the same, possibly unlucky, episodes (text prompts: always
        # the same, served in order)
        seed = config.seed + EVAL_SEED_OFFSET + number * eval_env.num_envs
        result = evaluate_policy(policy, eval_env, seed=seed).as_dict()
        policy.train()
        result.update(eval_env.pop_metrics())  # text: RM score, KL to π_SFT and gold score of the evaluation
        return result

    trainer = Trainer(config, env, policy, algorithm, run_dir, evaluate if eval_env else None, device)
    if config.resume:
        trainer.load_state_dict(checkpoint.load(config.resume, map_location=device))
    else:
        trainer.start(config.seed)
    return trainer


def resumed_config(config: TrainConfig) -> tuple[TrainConfig, Path]:
    """A resumed run continues with its own saved config, in its own directory."""
    saved = config_from_dict(checkpoint.load(config.resume)["config"])
    return dataclasses.replace(saved, resume=config.resume, progress=config.progress), Path(config.resume).parent


def run_training(config: TrainConfig, run_dir: Path) -> dict[str, Any]:
    """Train, then write ``summary.json`` (read by sweeps and comparisons) into ``run_dir``."""
    if config.resume:
        config, run_dir = resumed_config(config)
    trainer = build_trainer(config, run_dir)
    summary = trainer.train()
    summary["config"] = dataclasses.asdict(config)
    checkpoint.write_text_atomic(json.dumps(summary, indent=2), Path(run_dir) / "summary.json")
    return summary
