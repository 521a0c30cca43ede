"""Train an agent: ``python -m ppo_core.train env=cartpole algo=ppo seed=1``.

Returns the final evaluation's mean return, the objective hydra sweepers optimise.
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from ppo_core.config import TrainConfig, register_configs, reject_old_keys
from ppo_core.errors import ConfigError, NonFiniteError

register_configs()


@hydra.main(config_path="pkg://conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    from ppo_core.build import run_training
    from agents.base import UnsupportedSpaceError

    config: TrainConfig = OmegaConf.to_object(cfg)  # type: ignore[assignment]
    try:
        summary = run_training(config, Path(HydraConfig.get().runtime.output_dir))
    except (ConfigError, UnsupportedSpaceError, NonFiniteError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    return summary["eval_mean_return"]


def cli() -> None:
    """``ppo-train``: renamed keys are refused before hydra composes (hydra would only say "not in struct")."""
    try:
        reject_old_keys([arg for arg in sys.argv[1:] if not arg.startswith("-")])
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    main()


if __name__ == "__main__":
    cli()
