"""Command line: `python -m ppo_core.align stage=pretrain|sft|rm|all_supervised size=tiny|small`."""

import sys

import hydra
from omegaconf import DictConfig
from transformers.utils import logging as hf_logging

from ppo_core.align.config import register_configs, to_align_config
from ppo_core.align.errors import AlignError
from ppo_core.align.stages import run_stage

register_configs()


@hydra.main(config_path="pkg://conf", config_name="align", version_base="1.3")
def main(cfg: DictConfig) -> None:
    """Convert the composed config to `AlignConfig` and run the requested stage."""
    hf_logging.disable_progress_bar()
    try:
        run_stage(to_align_config(cfg))
    except AlignError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
