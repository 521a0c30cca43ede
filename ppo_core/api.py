"""The library from code: compose a config exactly as ``python -m ppo_core.train`` would, then train,
resume or evaluate, each returning what the CLI reports.

    from ppo_core.api import evaluate, make_config, train

    summary = train(make_config("env=cartpole", "algo=ppo", "seed=1"), run_dir="runs/cartpole")
    print(summary["eval_mean_return"], evaluate("runs/cartpole/checkpoint.pt", episodes=20).mean)
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ppo_core import build, checkpoint
from ppo_core.config import TrainConfig, compose_train_config, config_from_dict
from ppo_core.errors import ConfigError
from ppo_core.evaluation import EvalResult, evaluate_policy
from ppo_core.runtime import resolve_device
from ppo_core.trainer import Trainer

__all__ = ["make_config", "build_trainer", "train", "resume", "evaluate", "record_video", "saved_config"]


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


def resume(checkpoint_path: str | Path, *overrides: str, progress: bool = False) -> dict[str, Any]:
    """Continue a run from its ``checkpoint.pt`` with its own saved config, in its own directory;
    ``overrides`` may change what ``resume.RESUMABLE_KEYS`` lists, e.g. ``"total_timesteps=200000"``
    to extend it."""
    config = compose_train_config([f"resume={checkpoint_path}", f"progress={progress}", *overrides])
    return build.run_training(config, Path(checkpoint_path).parent, overrides)


def saved_config(checkpoint_path: str | Path) -> TrainConfig:
    """The config a checkpoint was trained with (0.1 checkpoints under 0.2's names)."""
    return config_from_dict(checkpoint.load(checkpoint_path)["config"])


def _restored(checkpoint_path: str | Path, device: str, episodes: int, video_dir: Path | None = None):
    """The saved policy and a fresh evaluation env of ``episodes`` copies with the run's statistics."""
    state = checkpoint.load(checkpoint_path)
    config = config_from_dict(state["config"])
    device_ = resolve_device(device)
    env = build.make_eval_env(config, device_, episodes, video_dir=video_dir)
    policy = build.make_policy(config, env, device_)
    policy.load_state_dict(state["model"])
    env.load_state_dict(state["env"], restore_episodes=False)
    return policy, env


def evaluate(
    checkpoint_path: str | Path, episodes: int = 10, seed: int = 12345, deterministic: bool = True,
    device: str = "cpu",
) -> EvalResult:
    """Returns of ``episodes`` evaluation episodes of a saved policy, its observation statistics restored."""
    if episodes < 1:
        raise ConfigError(f"episodes={episodes} is invalid; expected >= 1")
    policy, env = _restored(checkpoint_path, device, episodes)
    return evaluate_policy(policy, env, seed, deterministic)


def record_video(checkpoint_path: str | Path, video_dir: str | Path, seed: int = 12345, deterministic: bool = True,
                 device: str = "cpu") -> None:
    """One episode of a saved policy as an mp4 in ``video_dir`` (needs moviepy: ``pip install '.[video]'``)."""
    policy, env = _restored(checkpoint_path, device, 1, video_dir=Path(video_dir))
    evaluate_policy(policy, env, seed, deterministic)
    env.close()
