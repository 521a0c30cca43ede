"""``seeds=[0,1,2]``: the runs of one config that differ only in seed, trained in one process as one
seed batch (ppo_core/batched_trainer.py), each into its own ``seed_<s>/`` directory with its own
``summary.json``, TensorBoard scalars and checkpoint, so ``ppo_core.compare`` reads a batch exactly
as it reads a multirun. A setting the batch cannot take trains the seeds one after another instead,
and says which setting it was.

``resume=<batch directory>`` resumes every run of a batch that had not finished, from its checkpoint,
as one batch again (``seeds.json`` in the directory lists the seeds).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agents.stacked_mlp import StackedMLPActorCritic, unstackable
from envs.stacked import env_stepper
from ppo_core import checkpoint
from ppo_core.batched_trainer import BatchedTrainer, generator_from_global, step_each
from ppo_core.config import TrainConfig
from ppo_core.errors import ConfigError, NonFiniteError
from ppo_core.resume import resumed_config
from ppo_core.validation import validate

log = logging.getLogger(__name__)

BATCHED_ALGOS = ("ppo", "trpo", "reinforce")
MANIFEST = "seeds.json"


def check_seeds(seeds: Sequence[int]) -> list[int]:
    """The seeds as a list; an empty list, a repeated or a negative seed is a ConfigError naming it."""
    seeds = list(seeds)
    if not seeds:
        raise ConfigError("seeds=[] is invalid; expected at least one seed, e.g. seeds=[0,1,2]")
    repeated = sorted({s for s in seeds if seeds.count(s) > 1})
    if repeated:
        raise ConfigError(f"seeds={seeds} is invalid: seed {repeated[0]} appears more than once")
    negative = [s for s in seeds if not isinstance(s, int) or isinstance(s, bool) or s < 0]
    if negative:
        raise ConfigError(f"seeds={seeds} is invalid: {negative[0]!r} is not a seed (expected integers >= 0)")
    return seeds


def batch_blocker(config: TrainConfig) -> str:
    """The setting that keeps ``config``'s seeds from training as one batch ('' if none)."""
    if config.algo.name not in BATCHED_ALGOS:
        return f"algo={config.algo.name}"
    if config.env.kind != "gym":
        return f"env.kind={config.env.kind}"
    if config.objective.name != "none":
        return f"objective={config.objective.name}"
    if config.agent.name != "mlp":
        return f"agent={config.agent.name}"
    for key in ("shared_trunk", "gsde"):
        if getattr(config.agent, key):
            return f"agent.{key}=true"
    if config.algo.advantage != "gae":  # the seed batch runs GAE only
        return f"algo.advantage={config.algo.advantage}"
    if config.algo.name == "ppo" and config.algo.vf_learning_rate is not None:  # a second rate in one Adam
        return f"algo.vf_learning_rate={config.algo.vf_learning_rate}"
    return ""


def is_batch_directory(path: str | None) -> bool:
    return path is not None and (Path(path) / MANIFEST).is_file()


def run_configs(config: TrainConfig, run_dir: Path, overrides: Sequence[str]) -> tuple[list[int], list[TrainConfig],
                                                                                        list[Path], Path]:
    """Each run's own config and directory; for ``resume=<batch directory>``, each unfinished run's saved
    config resuming from its checkpoint (the overrides a resume may change apply to every run)."""
    if config.resume is None:
        seeds = check_seeds(config.seeds)
        return (seeds, [dataclasses.replace(config, seed=s, seeds=None) for s in seeds],
                [run_dir / f"seed_{s}" for s in seeds], run_dir)
    batch_dir = Path(config.resume)
    saved = check_seeds(json.loads((batch_dir / MANIFEST).read_text())["seeds"])
    if config.seeds is not None and list(config.seeds) != saved:
        raise ConfigError(f"resume={batch_dir} is the batch of seeds={saved}; seeds={list(config.seeds)} cannot change")
    own = [o for o in overrides if o.split("=", 1)[0].lstrip("+~") not in ("seeds", "resume")]
    seeds, configs, dirs = [], [], []
    for seed in saved:
        path = batch_dir / f"seed_{seed}" / "checkpoint.pt"
        if not path.is_file():
            raise ConfigError(f"resume={batch_dir}: seed {seed} has no checkpoint ({path}); resume it with "
                              f"seeds=[...] without it, or train it afresh")
        run_config, directory = resumed_config(dataclasses.replace(config, seeds=None, resume=str(path)),
                                               [*own, f"resume={path}"])
        seeds.append(seed)
        configs.append(run_config)
        dirs.append(directory)
    return seeds, configs, dirs, batch_dir


def run_seeds(config: TrainConfig, run_dir: Path, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Train the seeds of ``config.seeds`` (or resume a batch directory); returns the batch's summary
    (each run's in ``runs``), with the mean final evaluation over the runs as ``eval_mean_return``."""
    from ppo_core.build import build_trainer, run_training, write_summary

    validate(config)
    seeds, configs, dirs, batch_dir = run_configs(config, Path(run_dir), overrides)
    batch_dir.mkdir(parents=True, exist_ok=True)
    checkpoint.write_text_atomic(json.dumps({"seeds": seeds}), batch_dir / MANIFEST)
    blocker = batch_blocker(configs[0])
    if blocker:
        log.warning("seeds=%s: %s is not batched; training the seeds one at a time", seeds, blocker)
        return batch_summary([run_training(c, d) for c, d in zip(configs, dirs)], batch_dir, batched=False)
    trainers, generators = [], []
    for run_config, directory in zip(configs, dirs):
        trainers.append(build_trainer(run_config, directory))
        generators.append(generator_from_global())  # the RNG state this run would train on alone
        reason = unstackable(trainers[-1].policy)
        if reason:  # a registered agent named mlp that is not agents/mlp.py's
            raise ConfigError(f"seeds={seeds}: {reason} cannot be batched")
    finished = {i for i, t in enumerate(trainers) if t.iteration >= t.num_iterations or t.solved()}
    summaries = {str(trainers[i].run_dir): trainers[i].summary() for i in finished}
    batch = [i for i in range(len(trainers)) if i not in finished]
    failures: list[str] = []
    if batch:
        runs = [trainers[i] for i in batch]
        eval_envs = [t.evaluate.eval_env for t in runs if t.evaluate is not None]  # RunEvaluators (build.py)
        trained, failures = BatchedTrainer(runs, [generators[i] for i in batch],
                                           StackedMLPActorCritic,
                                           env_stepper([t.env for t in runs]),
                                           env_stepper(eval_envs) if eval_envs else step_each).train()
        summaries.update(trained)
    results = []
    for run_config, trainer in zip(configs, trainers):
        summary = summaries.get(str(trainer.run_dir))
        if summary is not None:
            summary["batch_seeds"] = seeds
            results.append(write_summary(summary, run_config, trainer.run_dir))
    if failures:
        raise NonFiniteError("; ".join(failures))
    return batch_summary(results, batch_dir, batched=True)


def batch_summary(runs: list[dict[str, Any]], batch_dir: Path, batched: bool) -> dict[str, Any]:
    """The batch's line: the mean and spread over runs of their final evaluations (what a hydra
    sweeper optimises for a seed batch), the env steps of all runs, the longest training clock."""
    finals = [r["eval_mean_return"] for r in runs if r["eval_mean_return"] is not None]
    return {
        "eval_mean_return": statistics.fmean(finals) if finals else None,
        "eval_std_return": statistics.pstdev(finals) if finals else None,
        "env_steps": sum(r["env_steps"] for r in runs),
        "wall_seconds": max(r["wall_seconds"] for r in runs) if batched else sum(r["wall_seconds"] for r in runs),
        "run_dir": str(batch_dir),
        "batched": batched,
        "runs": runs,
    }

