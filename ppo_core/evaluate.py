"""Deterministic evaluation of a policy, in training and from a saved checkpoint.

    python -m ppo_core.evaluate checkpoint=outputs/.../checkpoint.pt episodes=20 video=true
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Optional

import torch
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from agents.base import ActorCritic
from envs.base import VecEnv
from ppo_core.errors import ConfigError


class EvalResult(NamedTuple):
    returns: list[float]
    lengths: list[int]

    @property
    def mean(self) -> float:
        return float(torch.tensor(self.returns).mean())

    @property
    def std(self) -> float:
        return float(torch.tensor(self.returns).std(unbiased=False))

    def as_dict(self) -> dict[str, float]:
        return {"mean_reward": self.mean, "std_reward": self.std, "mean_length": sum(self.lengths) / len(self.lengths)}


@torch.no_grad()
def evaluate_policy(policy: ActorCritic, env: VecEnv, seed: int, deterministic: bool = True) -> EvalResult:
    """One episode in each of the env's copies; returns are raw (the env must not scale rewards)."""
    obs = env.reset(seed=seed)
    n = env.num_envs
    running = torch.zeros(n, dtype=torch.float64)
    lengths = torch.zeros(n, dtype=torch.int64)
    finished = torch.zeros(n, dtype=torch.bool)
    final_returns = torch.zeros(n, dtype=torch.float64)
    while not bool(finished.all()):
        step = policy.act(obs, deterministic=deterministic)
        result = env.step(policy.env_action(step))
        counting = (result.valid & ~finished).cpu()
        running += result.reward.cpu().double() * counting
        lengths += counting.long()
        ended = ((result.terminated | result.truncated).cpu() & counting)
        final_returns = torch.where(ended, running, final_returns)
        finished |= ended
        obs = result.obs
    return EvalResult(final_returns.tolist(), lengths.tolist())


@dataclass
class EvaluateConfig:
    checkpoint: str = "???"
    """Path of a checkpoint.pt written by training."""
    episodes: int = 10
    seed: int = 12345
    deterministic: bool = True
    device: str = "cpu"
    video: bool = False
    """Record one episode as an mp4 (needs moviepy: pip install '.[video]')."""
    video_dir: Optional[str] = None
    """Where to write the video (default: beside the checkpoint)."""


def parse_cli(argv: list[str]) -> EvaluateConfig:
    try:
        config = OmegaConf.merge(OmegaConf.structured(EvaluateConfig), OmegaConf.from_dotlist(argv))
        return OmegaConf.to_object(config)  # type: ignore[return-value]
    except OmegaConfBaseException as error:
        key = getattr(error, "full_key", None)
        raise ConfigError(f"{key}: {str(error).splitlines()[0]}" if key else str(error).splitlines()[0]) from None


def run(config: EvaluateConfig) -> EvalResult:
    from ppo_core import build, checkpoint

    if config.episodes < 1:
        raise ConfigError(f"episodes={config.episodes} is invalid; expected >= 1")
    state = checkpoint.load(config.checkpoint)
    train_config = build.config_from_dict(state["config"])
    device = build.resolve_device(config.device)
    env = build.make_eval_env(train_config, device, config.episodes)
    policy = build.make_policy(train_config, env, device)
    policy.load_state_dict(state["model"])
    env.load_state_dict(state["env"], restore_episodes=False)
    result = evaluate_policy(policy, env, config.seed, config.deterministic)
    name = getattr(train_config.env, "id", train_config.env.kind)
    print(f"{name}: mean return {result.mean:.2f} ± {result.std:.2f} over {config.episodes} episodes")
    if config.video:
        video_dir = Path(config.video_dir or Path(config.checkpoint).parent / "videos")
        video_env = build.make_eval_env(train_config, device, 1, video_dir=video_dir)
        video_env.load_state_dict(state["env"], restore_episodes=False)
        evaluate_policy(policy, video_env, config.seed, config.deterministic)
        video_env.close()
        print(f"video written to {video_dir}")
    return result


def main(argv: list[str] | None = None) -> None:
    try:
        run(parse_cli(sys.argv[1:] if argv is None else argv))
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
