"""Command line: `python -m ppo_core.align [stage=all|pretrain|sft|rm|all_supervised|rl|eval] [size=tiny|small]`."""

import os
import sys

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # spinning OpenMP workers stall on shared cores

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402
from transformers.utils import logging as hf_logging  # noqa: E402

from ppo_core.align.config import register_configs, to_align_config  # noqa: E402
from ppo_core.align.errors import AlignError  # noqa: E402
from ppo_core.align.stages import run_stage  # noqa: E402
from ppo_core.distributed import teardown  # noqa: E402
from ppo_core.errors import ConfigError, DistributedError, NonFiniteError  # noqa: E402

register_configs()


@hydra.main(config_path="pkg://conf", config_name="align", version_base="1.3")
def main(cfg: DictConfig) -> None:
    """Convert the composed config to `AlignConfig` and run the requested stage."""
    hf_logging.disable_progress_bar()
    try:
        run_stage(to_align_config(cfg))
    except (AlignError, ConfigError, NonFiniteError, DistributedError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    finally:
        teardown()


if __name__ == "__main__":
    main()
