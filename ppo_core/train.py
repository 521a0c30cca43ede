"""Train an agent: ``python -m ppo_core.train env=cartpole algo=ppo seed=1``.

Returns the final evaluation's mean return, the objective hydra sweepers optimise.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from ppo_core.config import TrainConfig, compose_train_config, register_configs, to_train_config
from ppo_core.distributed import is_main, teardown
from ppo_core.errors import ConfigError, DistributedError, NonFiniteError
from ppo_core.validation import validate

register_configs()
log = logging.getLogger(__name__)


@hydra.main(config_path="pkg://conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    from ppo_core.build import run_training
    from agents.base import UnsupportedSpaceError

    try:
        config: TrainConfig = to_train_config(cfg)
        summary = run_training(config, Path(HydraConfig.get().runtime.output_dir), HydraConfig.get().overrides.task)
        if is_main():  # the one rank of a data-parallel run that writes the run directory
            log.info(summary_line(summary))  # console and train.log
    except (ConfigError, UnsupportedSpaceError, NonFiniteError, DistributedError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    finally:
        teardown()
    return summary["eval_mean_return"]


def summary_line(summary: dict) -> str:
    """One line at the end of a run: the final evaluation with its spread, env steps, training time, where."""
    if summary["eval_mean_return"] is None:
        result = "no evaluation (eval_episodes=0)"
    else:
        result = f"final evaluation {summary['eval_mean_return']:.2f} ± {summary['eval_std_return']:.2f}"
    return (f"{result}; {summary['env_steps']} env steps in {summary['wall_seconds']:.1f} s of training; "
            f"run saved in {summary['run_dir']}")


def single_runs(overrides: list[str]) -> list[list[str]] | None:
    """The compositions to check before a run or sweep starts: the fixed overrides alone (as hydra
    composes them first) and, for a sweep, each swept value with the first value of every other sweep
    (each value once, not the product). None where hydra must expand the sweep itself (glob sweeps,
    interval sweeps of an optimising sweeper)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import ValueType
    from hydra.errors import HydraException

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException as error:
        raise ConfigError(f"cannot parse the overrides {' '.join(overrides)}: {str(error).splitlines()[0]}") from None
    sweeps = [o for o in parsed if o.is_sweep_override()]
    if any(o.is_interval_sweep() or o.value_type == ValueType.GLOB_CHOICE_SWEEP for o in sweeps):
        return None
    fixed = [o.input_line for o in parsed if not o.is_sweep_override()]
    try:
        values = [[f"{o.get_key_element()}={value}" for value in o.sweep_string_iterator()] for o in sweeps]
    except HydraException:
        return None
    firsts = [choices[0] for choices in values]
    # hydra composes the fixed overrides alone first (its sweep config), so they must hold on the defaults
    return [fixed, *([*fixed, *firsts[:i], value, *firsts[i + 1:]] for i, choices in enumerate(values)
                     for value in choices)]


def cli() -> None:
    """``ppo-train``. The overrides of a run, or of every value of a multirun sweep, are composed and
    checked first, so that a bad key, type or value is one line on stderr and exit code 2 (hydra
    itself exits 1 with a multi-line report). ``--help``, ``--cfg`` and the like go to hydra as they are."""
    args = sys.argv[1:]
    own_flags = any(arg.startswith("-") and arg not in ("-m", "--multirun") for arg in args)
    if not own_flags and not any(arg.startswith("hydra.searchpath") for arg in args):  # else hydra's to check
        overrides = [arg for arg in args if arg not in ("-m", "--multirun") and not arg.startswith("hydra")]
        try:
            for run in single_runs(overrides) or []:
                validate(compose_train_config(run))
        except ConfigError as error:
            print(f"error: {error}", file=sys.stderr)
            sys.exit(2)
    main()


if __name__ == "__main__":
    cli()
