"""Wire a ``TrainConfig`` into envs, a policy, an algorithm and a trainer.

Which environment family or policy to build is read off the config's schema type, so the trainer
itself never learns which world it is in.
"""

from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agents.base import ActorCritic
from agents.lm import LMActorCritic
from agents.mlp import MLPActorCritic
from envs.base import VecEnv
from envs.make import make_gym_env
from envs.text_bandit import TextBanditVecEnv, TextReward, tokenize_prompts
from ppo_core import text_artifacts as artifacts
from ppo_core.algorithms import make_algorithm
from ppo_core.auxiliary import AuxiliaryLoss, PretrainingLoss, ReferenceKLLoss
from ppo_core.align.models import context_length, load_tokenizer
from ppo_core.config import AgentConfig, EnvConfig, LMAgentConfig, TextEnvConfig, TrainConfig, config_from_dict
from ppo_core.errors import ConfigError
from ppo_core.evaluate import evaluate_policy
from ppo_core.kl import check_kl_treatment
from ppo_core.trainer import Trainer
from ppo_core import checkpoint

__all__ = ["config_from_dict", "resolve_device", "make_env", "make_eval_env", "make_policy", "build_trainer", "run_training"]


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"device={name!r} is not a device; expected auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={name!r} but CUDA is not available here; use device=auto or device=cpu")
    return device


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def make_env(config: TrainConfig, device: torch.device) -> VecEnv:
    if isinstance(config.env, EnvConfig):
        return make_gym_env(config.env, device, gamma=config.algo.gamma)
    if isinstance(config.env, TextEnvConfig):
        return make_text_env(config.env, device, config.env.prompts, "env.prompts", config.env.num_envs,
                             shuffle=True, gold=config.env.gold or config.env.reward_source == "gold", training=True)
    raise ConfigError(f"env config of type {type(config.env).__name__} has no builder")


def make_eval_env(config: TrainConfig, device: torch.device, episodes: int, video_dir: Path | None = None) -> VecEnv:
    """One copy per episode; rewards are never scaled so that returns are the task's own."""
    if isinstance(config.env, EnvConfig):
        env_config = dataclasses.replace(config.env, normalize_reward=False)
        if video_dir is not None:
            env_config = dataclasses.replace(
                env_config, vectorization="sync", kwargs={**env_config.kwargs, "render_mode": "rgb_array"}
            )
        env = make_gym_env(env_config, device, gamma=config.algo.gamma, num_envs=episodes,
                           wrappers=_video_wrappers(video_dir))
        env.set_training(False)
        return env
    if isinstance(config.env, TextEnvConfig):
        return make_text_env(config.env, device, config.env.eval_prompts, "env.eval_prompts", episodes,
                             shuffle=False, gold=True, training=False)
    raise ConfigError(f"env config of type {type(config.env).__name__} has no builder")


def make_text_env(
    config: TextEnvConfig, device: torch.device, source: str, key: str, num_envs: int, shuffle: bool, gold: bool,
    training: bool,
) -> TextBanditVecEnv:
    """The text bandit over prompts ``source``, scored by the frozen π_SFT and reward model (shared
    between the training and evaluation envs); only the training env adapts β."""
    if config.temperature <= 0 or config.max_new_tokens < 1 or config.num_envs < 1 or config.beta < 0:
        raise ConfigError(f"env.temperature={config.temperature}, env.max_new_tokens={config.max_new_tokens}, "
                          f"env.num_envs={config.num_envs} and env.beta={config.beta} must be > 0, >= 1, >= 1, >= 0")
    if (config.kl_target is not None and config.kl_target <= 0) or config.kl_horizon <= 0:
        raise ConfigError(f"env.kl_target={config.kl_target} and env.kl_horizon={config.kl_horizon} must be > 0")
    if config.reward_source not in ("rm", "gold"):
        raise ConfigError(f"env.reward_source={config.reward_source!r} is unknown; expected 'rm' or 'gold'")
    try:
        check_kl_treatment(config.kl_estimator, config.kl_direction, config.kl_placement)
    except ValueError as error:
        raise ConfigError(f"env.kl_estimator={config.kl_estimator!r}, env.kl_direction={config.kl_direction!r}, "
                          f"env.kl_placement={config.kl_placement!r}: {error}") from None
    sft = artifacts.sft_dir(config)
    reference, tokenizer = artifacts.frozen_reference(sft, str(device))
    if tokenizer.pad_token_id == tokenizer.eos_token_id:
        raise ConfigError(f"the tokenizer in {sft!r} pads with EOS (id {tokenizer.eos_token_id}); completions "
                          "are padded after their EOS, so pad_token_id must differ from eos_token_id")
    rm = artifacts.rm_dir(config)
    reward_model = artifacts.frozen_reward_model(rm, str(device))
    artifacts.check_same_vocabulary(tokenizer, rm, "env.rm_path")
    prompts = artifacts.load_prompts(config, source, key)
    room = context_length(reference) - config.max_new_tokens
    if room < 1:
        raise ConfigError(f"env.max_new_tokens={config.max_new_tokens} leaves no room for a prompt in the "
                          f"context of {context_length(reference)} tokens")
    reward = TextReward(reference, reward_model.score, tokenizer.eos_token_id, config.temperature, config.beta,
                        config.kl_estimator, config.kl_direction, config.kl_placement, config.kl_target,
                        config.kl_horizon, config.no_eos_penalty, config.empty_penalty, config.nonfinite_penalty)
    return TextBanditVecEnv(tokenize_prompts(prompts.texts, tokenizer, room, config.prompt_overflow), reward,
                            tokenizer, num_envs, config.max_new_tokens, device, shuffle,
                            prompts.gold if gold else None, adapt_beta=training,
                            gold_reward=training and config.reward_source == "gold")


def make_auxiliary_losses(config: TrainConfig, policy: ActorCritic) -> list[AuxiliaryLoss]:
    """The loss terms beside the surrogate: the KL to π_SFT when ``env.kl_placement=loss`` and PPO-ptx's
    pretraining term when ``env.ptx_coef > 0`` (text env only)."""
    env = config.env
    if not isinstance(env, TextEnvConfig):
        return []
    terms: list[AuxiliaryLoss] = []
    if env.kl_placement == "loss":
        terms.append(ReferenceKLLoss(env.kl_estimator, env.kl_direction))
    if env.ptx_coef < 0 or env.ptx_batch_size < 1:
        raise ConfigError(f"env.ptx_coef={env.ptx_coef} and env.ptx_batch_size={env.ptx_batch_size} must be >= 0 and >= 1")
    if env.ptx_coef > 0:
        model = policy.model
        blocks = artifacts.load_pretraining_blocks(env, load_tokenizer(artifacts.sft_dir(env)), context_length(model))
        terms.append(PretrainingLoss(model, blocks, env.ptx_coef, env.ptx_batch_size))
    return terms


def _video_wrappers(video_dir: Path | None) -> list:
    if video_dir is None:
        return []
    import os

    from gymnasium.wrappers import RecordVideo

    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # headless: pygame renders off-screen
    os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
    return [lambda env: RecordVideo(env, str(video_dir), episode_trigger=lambda episode: episode == 0,
                                    disable_logger=True)]


def make_policy(config: TrainConfig, env: VecEnv, device: torch.device) -> ActorCritic:
    agent = config.agent
    if isinstance(agent, LMAgentConfig):
        return make_lm_policy(config, env, device)
    if isinstance(config.env, TextEnvConfig):
        raise ConfigError(f"env=text_bandit answers prompts with text: it needs agent=lm, not agent={agent.name}")
    if isinstance(agent, AgentConfig):
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
        return policy.to(device)
    raise ConfigError(f"agent config of type {type(agent).__name__} has no builder")


def make_lm_policy(config: TrainConfig, env: TextBanditVecEnv, device: torch.device) -> LMActorCritic:
    """The policy starts from ``agent.model_path`` (default π_SFT) and samples ``env.max_new_tokens``
    tokens at ``env.temperature``, the values the env scores the reference with."""
    agent, env_config = config.agent, config.env
    if not isinstance(env_config, TextEnvConfig):
        raise ConfigError(f"agent=lm generates text: it needs env=text_bandit, not env kind {env_config.kind!r}")
    path = agent.model_path or artifacts.sft_dir(env_config)
    model, tokenizer = artifacts.load_lm(path, device, "agent.model_path")
    if tokenizer.get_vocab() != env.tokenizer.get_vocab():
        raise ConfigError(f"agent.model_path={path!r} has a different tokenizer from env.sft_path")
    if agent.value_init_path and agent.critic != "separate":
        raise ConfigError(f"agent.value_init_path={agent.value_init_path!r} initialises a separate value trunk: "
                          "set agent.critic=separate")
    value_init = None
    if agent.value_init_path:
        value_path = artifacts.rm_dir(env_config) if agent.value_init_path == "rm" else agent.value_init_path
        value_init = artifacts.load_reward_model(value_path, device, "agent.value_init_path")
    attention = agent.attn_implementation
    if attention == "auto":
        attention = "eager" if config.algo.name == "trpo" else ""
    for module in (model, value_init.trunk if value_init is not None else None):
        if attention and module is not None:
            try:
                module.set_attn_implementation(attention)
            except (ValueError, ImportError) as error:
                raise ConfigError(f"agent.attn_implementation={attention!r}: {str(error).splitlines()[0]}") from None
    try:
        policy = LMActorCritic(model, tokenizer.pad_token_id, tokenizer.eos_token_id, env_config.max_new_tokens,
                               env_config.temperature, agent.critic, value_init, agent.top_k, agent.top_p,
                               agent.exit_check_every, agent.trim_padding)
    except ValueError as error:
        raise ConfigError(f"agent=lm: {error}") from None
    return policy.to(device)


EVAL_SEED_OFFSET = 1_000_000
"""Evaluation episodes are seeded apart from the training envs' seeds."""


def build_trainer(config: TrainConfig, run_dir: Path) -> Trainer:
    """A trainer ready to ``train()``: fresh, or restored from ``config.resume``."""
    if config.stop_at_return is not None and (config.stop_after_evals < 1 or config.eval_episodes < 1):
        raise ConfigError(f"stop_at_return={config.stop_at_return} needs stop_after_evals >= 1 and eval_episodes >= 1 "
                          f"(got {config.stop_after_evals} and {config.eval_episodes})")
    torch.set_num_threads(config.torch_threads)
    device = resolve_device(config.device)
    seed_everything(config.seed)
    env = make_env(config, device)
    policy = make_policy(config, env, device)
    algorithm = make_algorithm(policy, config.algo, make_auxiliary_losses(config, policy))
    eval_env = make_eval_env(config, device, config.eval_episodes) if config.eval_episodes > 0 else None

    def evaluate(number: int) -> dict[str, float]:
        eval_env.load_state_dict(env.state_dict(), restore_episodes=False)  # current normaliser statistics
        policy.eval()
        # new start states at every evaluation, as SB3's EvalCallback draws them: with one fixed set, a
        # run is judged again and again on the same, possibly unlucky, episodes (text prompts: always
        # the same, served in order)
        seed = config.seed + EVAL_SEED_OFFSET + number * eval_env.num_envs
        result = evaluate_policy(policy, eval_env, seed=seed).as_dict()
        policy.train()
        if isinstance(eval_env, TextBanditVecEnv):
            result.update(eval_env.pop_metrics())  # RM score, KL to π_SFT and gold score of the evaluation
        return result

    trainer = Trainer(config, env, policy, algorithm, run_dir, evaluate if eval_env else None, device)
    if config.resume:
        trainer.load_state_dict(checkpoint.load(config.resume, map_location=device))
    else:
        trainer.start(config.seed)
    return trainer


def resumed_config(config: TrainConfig) -> tuple[TrainConfig, Path]:
    """A resumed run continues with its own saved config, in its own directory."""
    saved = config_from_dict(checkpoint.load(config.resume)["config"])
    return dataclasses.replace(saved, resume=config.resume, progress=config.progress), Path(config.resume).parent


def run_training(config: TrainConfig, run_dir: Path) -> dict[str, Any]:
    """Train, then write ``summary.json`` (read by sweeps and comparisons) into ``run_dir``."""
    if config.resume:
        config, run_dir = resumed_config(config)
    trainer = build_trainer(config, run_dir)
    summary = trainer.train()
    summary["config"] = dataclasses.asdict(config)
    (Path(run_dir) / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary
