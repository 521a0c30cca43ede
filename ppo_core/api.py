"""The library from code: compose a config exactly as ``python -m ppo_core.train`` would, then train,
resume or evaluate, each returning what the CLI reports.

    from ppo_core.api import evaluate, make_config, train

    summary = train(make_config("env=cartpole", "algo=ppo", "seed=1"), run_dir="runs/cartpole")
    print(summary["eval_mean_return"], evaluate("runs/cartpole/checkpoint.pt", episodes=20).mean)
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

from ppo_core import build, checkpoint
from ppo_core.config import TrainConfig, compose_train_config, config_from_dict
from ppo_core.errors import ConfigError
from ppo_core.evaluation import EvalResult, evaluate_policy
from ppo_core.runtime import resolve_device
from ppo_core.trainer import Trainer

__all__ = ["make_config", "build_trainer", "train", "resume", "evaluate"]


def make_config(*overrides: str) -> TrainConfig:
    """The typed config of ``python -m ppo_core.train <overrides>``: groups (``env=pendulum``), keys
    (``algo.learning_rate=1e-3``) and the tuned preset of the chosen algorithm and env."""
    return compose_train_config(list(overrides))


def _run_dir(run_dir: str | Path | None) -> Path:
    """``run_dir``, or a new ``runs/<date>_<time>`` beside the working directory."""
    if run_dir is not None:
        return Path(run_dir)
    stamp = time.strftime("%Y-%m-%d_%H-%M-%S")
    path, n = Path("runs") / stamp, 1
    while path.exists():
        path, n = Path("runs") / f"{stamp}_{n}", n + 1
    return path


def build_trainer(config: TrainConfig, run_dir: str | Path | None = None) -> Trainer:
    """A trainer ready to ``train()``, for callers who want to step in between (``collect_rollout``,
    ``algorithm.update``)."""
    return build.build_trainer(config, _run_dir(run_dir))


def train(config: TrainConfig, run_dir: str | Path | None = None) -> dict[str, Any]:
    """Train to ``config.total_timesteps``; ``run_dir`` receives the checkpoint, TensorBoard events and
    ``summary.json``. Returns the summary (``eval_mean_return``, ``env_steps``, ``eval_history``...)."""
    return build.run_training(config, _run_dir(run_dir))


def resume(checkpoint_path: str | Path, progress: bool = False) -> dict[str, Any]:
    """Continue a run from its ``checkpoint.pt`` with its own saved config, in its own directory."""
    saved = config_from_dict(checkpoint.load(checkpoint_path)["config"])
    config = dataclasses.replace(saved, resume=str(checkpoint_path), progress=progress)
    return build.run_training(config, Path(checkpoint_path).parent)


def evaluate(
    checkpoint_path: str | Path, episodes: int = 10, seed: int = 12345, deterministic: bool = True,
    device: str = "cpu", video_dir: str | Path | None = None,
) -> EvalResult:
    """Returns of ``episodes`` evaluation episodes of a saved policy, its observation statistics
    restored; ``video_dir`` also records one episode there as an mp4 (needs moviepy)."""
    if episodes < 1:
        raise ConfigError(f"episodes={episodes} is invalid; expected >= 1")
    state = checkpoint.load(checkpoint_path)
    config = config_from_dict(state["config"])
    device_ = resolve_device(device)
    env = build.make_eval_env(config, device_, episodes)
    policy = build.make_policy(config, env, device_)
    policy.load_state_dict(state["model"])
    env.load_state_dict(state["env"], restore_episodes=False)
    result = evaluate_policy(policy, env, seed, deterministic)
    if video_dir is not None:
        video_env = build.make_eval_env(config, device_, 1, video_dir=Path(video_dir))
        video_env.load_state_dict(state["env"], restore_episodes=False)
        evaluate_policy(policy, video_env, seed, deterministic)
        video_env.close()
    return result
