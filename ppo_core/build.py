"""Wire a ``TrainConfig`` into envs, a policy, an algorithm and a trainer.

Which environment family, policy and objective terms to build is looked up by ``env.kind``,
``agent.name`` and ``objective.name`` in three tables: the core fills them for Gymnasium envs, MLP
policies and ``objective=none``, plugins (ppo_core/plugins.py) add theirs, so neither this module nor
the trainer learns which world it is in.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import torch

from agents.base import ActorCritic, UnsupportedSpaceError
from agents.mlp import MLPActorCritic
from envs.base import VecEnv
from envs.make import make_gym_env
from ppo_core.algorithms import ALGORITHMS, make_algorithm
from ppo_core.auxiliary import AuxiliaryLoss
from ppo_core.config import AlgoConfig, TrainConfig, config_from_dict
from ppo_core.errors import ConfigError
from ppo_core.evaluation import RunEvaluator
from ppo_core import checkpoint, distributed
from ppo_core.plugins import load_plugins
from ppo_core.resume import resumed_config
from ppo_core.runtime import resolve_device, seed_everything
from ppo_core.trainer import Trainer
from ppo_core.validation import validate

__all__ = ["EnvKind", "PolicyNeeds", "register_env_kind", "register_agent", "register_objective", "config_from_dict",
           "make_env", "make_eval_env", "make_policy", "build_trainer", "run_training"]


@dataclass(frozen=True)
class PolicyNeeds:
    """What the chosen algorithm asks of the policy it gets: the one thing an agent builder learns of
    the algo group's settings."""

    second_order: bool
    """The update differentiates through the policy twice (TRPO's Fisher-vector product), so every
    layer, attention included, must support double backward."""


def policy_needs(algo: AlgoConfig) -> PolicyNeeds:
    return PolicyNeeds(second_order=ALGORITHMS[algo.name].second_order if algo.name in ALGORITHMS else False)


@dataclass(frozen=True)
class EnvKind:
    """How to build one family of environments, and what it adds to the objective."""

    make_env: Callable[[TrainConfig, torch.device], VecEnv]
    """The training env."""
    make_eval_env: Callable[[TrainConfig, torch.device, int, Optional[Path]], VecEnv]
    """(config, device, episodes, video_dir): one copy per evaluation episode, rewards unscaled."""
    agents: tuple[str, ...] | None = None
    """The agents that can act in it (None: any)."""
    objectives: tuple[str, ...] = ("none",)
    """The objectives it serves; an env that puts an objective's terms in its reward reads that
    objective's settings (``config.objective``) when built, the one setting it reads outside ``env``."""


AgentBuilder = Callable[[TrainConfig, VecEnv, torch.device, PolicyNeeds], ActorCritic]
"""(config, env, device, needs) -> the policy, on ``device``."""
ObjectiveBuilder = Callable[[TrainConfig, ActorCritic], list[AuxiliaryLoss]]
"""(config, policy) -> the loss terms beside the algorithm's surrogate (ppo_core/auxiliary.py)."""


def gym_train_env(config: TrainConfig, device: torch.device) -> VecEnv:
    return make_gym_env(config.env, device, gamma=config.algo.gamma)


def gym_eval_env(config: TrainConfig, device: torch.device, episodes: int, video_dir: Path | None = None) -> VecEnv:
    env_config = dataclasses.replace(config.env, normalize_reward=False)
    if video_dir is not None:
        env_config = dataclasses.replace(
            env_config, vectorization="sync", kwargs={**env_config.kwargs, "render_mode": "rgb_array"}
        )
    env = make_gym_env(env_config, device, gamma=config.algo.gamma, num_envs=episodes, wrappers=_video_wrappers(video_dir))
    env.set_training(False)
    return env


def _video_wrappers(video_dir: Path | None) -> list:
    if video_dir is None:
        return []
    import os

    from gymnasium.wrappers import RecordVideo

    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # headless: pygame renders off-screen
    os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
    return [lambda env: RecordVideo(env, str(video_dir), episode_trigger=lambda episode: episode == 0,
                                    disable_logger=True)]


def make_mlp_policy(config: TrainConfig, env: VecEnv, device: torch.device, needs: PolicyNeeds) -> ActorCritic:
    agent = config.agent
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


ENV_KINDS: dict[str, EnvKind] = {"gym": EnvKind(gym_train_env, gym_eval_env, agents=("mlp",))}
"""Builders of each ``env.kind``; plugins add theirs with ``register_env_kind``."""
AGENTS: dict[str, AgentBuilder] = {"mlp": make_mlp_policy}
"""Builders of each ``agent.name``; plugins add theirs with ``register_agent``."""
OBJECTIVES: dict[str, ObjectiveBuilder] = {"none": lambda config, policy: []}
"""Loss terms of each ``objective.name``; plugins add theirs with ``register_objective``."""


def register_env_kind(kind: str, builders: EnvKind) -> None:
    ENV_KINDS[kind] = builders


def register_agent(name: str, builder: AgentBuilder) -> None:
    AGENTS[name] = builder


def register_objective(name: str, builder: ObjectiveBuilder) -> None:
    OBJECTIVES[name] = builder


def env_kind(config: TrainConfig) -> EnvKind:
    """The builders of ``config.env``, checked against the objective it is asked to serve."""
    load_plugins()
    kind, objective = config.env.kind, config.objective.name
    if kind not in ENV_KINDS:
        raise ConfigError(f"env.kind={kind!r} has no builder; expected one of {sorted(ENV_KINDS)}")
    if objective not in ENV_KINDS[kind].objectives:
        raise ConfigError(f"objective={objective} does not apply to env.kind={kind!r}, which serves "
                          f"objective={' or objective='.join(ENV_KINDS[kind].objectives)}")
    return ENV_KINDS[kind]


def make_objective_terms(config: TrainConfig, policy: ActorCritic) -> list[AuxiliaryLoss]:
    name = config.objective.name
    if name not in OBJECTIVES:
        raise ConfigError(f"objective.name={name!r} has no builder; expected one of {sorted(OBJECTIVES)}")
    return OBJECTIVES[name](config, policy)


def make_env(config: TrainConfig, device: torch.device) -> VecEnv:
    return env_kind(config).make_env(config, device)


def make_eval_env(config: TrainConfig, device: torch.device, episodes: int, video_dir: Path | None = None) -> VecEnv:
    """One copy per episode; rewards are never scaled so that returns are the task's own."""
    return env_kind(config).make_eval_env(config, device, episodes, video_dir)


def make_policy(config: TrainConfig, env: VecEnv, device: torch.device) -> ActorCritic:
    """The ``agent`` config's policy for ``env``, built to what ``config.algo``'s algorithm needs."""
    name, kind = config.agent.name, config.env.kind
    agents = env_kind(config).agents
    if name not in AGENTS:
        raise ConfigError(f"agent.name={name!r} has no builder; expected one of {sorted(AGENTS)}")
    if agents is not None and name not in agents:
        raise ConfigError(f"env.kind={kind!r} needs agent={' or agent='.join(agents)}, not agent={name}")
    return AGENTS[name](config, env, device, policy_needs(config.algo))


EVAL_SEED_OFFSET = 1_000_000
"""Evaluation episodes are seeded apart from the training envs' seeds."""
RANK_SEED_STRIDE = 7_919
"""Rank r > 0 of a data-parallel run reseeds its RNGs (actions, minibatch draws) with seed + r · this."""


def build_trainer(config: TrainConfig, run_dir: Path) -> Trainer:
    """A trainer ready to ``train()``: fresh, or restored from ``config.resume``. Every setting is
    checked against its schema's declared values first (ppo_core/validation.py)."""
    validate(config)
    if config.stop_at_return is not None and config.eval_episodes < 1:
        raise ConfigError(f"stop_at_return={config.stop_at_return} needs evaluations: eval_episodes >= 1 "
                          f"(got {config.eval_episodes})")
    torch.set_num_threads(config.torch_threads)
    device = resolve_device(distributed.setup(config.device))
    seed_everything(config.seed)
    env = make_env(config, device)
    policy = make_policy(config, env, device)
    distributed.broadcast_module(policy)  # every rank starts from rank 0's parameters
    if distributed.rank() > 0:  # its own actions and minibatches; rank 0 keeps a single run's streams
        seed_everything(config.seed + RANK_SEED_STRIDE * distributed.rank())
    algorithm = make_algorithm(policy, config.algo, make_objective_terms(config, policy))
    evaluate = None
    if config.eval_episodes > 0 and distributed.is_main():  # rank 0 evaluates for every rank
        evaluate = RunEvaluator(policy, env, make_eval_env(config, device, config.eval_episodes),
                                config.seed + EVAL_SEED_OFFSET)
    trainer = Trainer(config, env, policy, algorithm, run_dir, evaluate, device)
    if config.resume:
        trainer.load_state_dict(checkpoint.load(config.resume))  # on the CPU: RNG states must be; the rest moves
    else:
        trainer.start(config.seed)
    return trainer


def run_training(config: TrainConfig, run_dir: Path, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Train, then write ``summary.json`` (read by sweeps and comparisons) into ``run_dir``. A resumed
    run applies the ``overrides`` it may change (``resumed_config``). ``seeds=[...]``, or resuming a
    batch's directory, trains a seed batch (ppo_core/seeds.py)."""
    from ppo_core.seeds import is_batch_directory, run_seeds

    if config.seeds is not None or is_batch_directory(config.resume):
        if distributed.requested_world_size() > 1:
            raise ConfigError(f"seeds={config.seeds} trains a seed batch in one process; it cannot also be "
                              "data-parallel: start it without torchrun, or train one seed per torchrun run")
        return run_seeds(config, run_dir, overrides)
    if config.resume:
        config, run_dir = resumed_config(config, overrides)
    distributed.setup(config.device)
    run_dir = Path(distributed.from_main(str(run_dir)))  # one run directory, rank 0's, for every rank
    trainer = build_trainer(config, run_dir)
    summary = trainer.train()
    return write_summary(summary, config, run_dir) if distributed.is_main() else summary


def write_summary(summary: dict[str, Any], config: TrainConfig, run_dir: Path) -> dict[str, Any]:
    """``summary`` with the run's directory and config, written to ``run_dir/summary.json``."""
    summary["run_dir"] = str(run_dir)  # a resumed run continues in its checkpoint's directory
    summary["config"] = dataclasses.asdict(config)
    checkpoint.write_text_atomic(json.dumps(summary, indent=2), Path(run_dir) / "summary.json")
    return summary
