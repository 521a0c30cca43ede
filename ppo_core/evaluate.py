"""Evaluate a saved checkpoint from the command line (the library is ``ppo_core.evaluation``):

    python -m ppo_core.evaluate checkpoint=outputs/.../checkpoint.pt episodes=20 video=true
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from ppo_core.errors import ConfigError
from ppo_core.evaluation import EvalResult
from ppo_core.validation import setting, validate


@dataclass
class EvaluateConfig:
    checkpoint: str = "???"
    """Path of a checkpoint.pt written by training."""
    episodes: int = setting(10, ge=1)
    """Evaluation episodes, one per env copy."""
    seed: int = 12345
    """Seed of the episodes' start states."""
    deterministic: bool = True
    """Act with the mode of the policy (greedy tokens for text) rather than sampling."""
    device: str = "cpu"
    """auto | cpu | cuda | cuda:N."""
    video: bool = False
    """Record one episode as an mp4 (needs moviepy: pip install '.[video]')."""
    video_dir: Optional[str] = None
    """Where to write the video (default: beside the checkpoint)."""


def parse_cli(argv: list[str]) -> EvaluateConfig:
    try:
        config = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(EvaluateConfig), OmegaConf.from_dotlist(argv)))
        validate(config)
        return config  # type: ignore[return-value]
    except OmegaConfBaseException as error:
        key = getattr(error, "full_key", None)
        raise ConfigError(f"{key}: {str(error).splitlines()[0]}" if key else str(error).splitlines()[0]) from None


def run(config: EvaluateConfig) -> EvalResult:
    from ppo_core import api

    train_config = api.saved_config(config.checkpoint)
    result = api.evaluate(config.checkpoint, config.episodes, config.seed, config.deterministic, config.device)
    name = getattr(train_config.env, "id", train_config.env.kind)
    print(f"{name}: mean return {result.mean:.2f} ± {result.std:.2f} over {config.episodes} episodes")
    if config.video:
        video_dir = Path(config.video_dir or Path(config.checkpoint).parent / "videos")
        api.record_video(config.checkpoint, video_dir, config.seed, config.deterministic, config.device)
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
