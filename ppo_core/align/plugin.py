"""What the alignment wing adds to the training app: ``env=text_bandit``, ``objective=rlhf`` and
``agent=lm``.

Declared as the ``ppo_core.plugins`` entry point ``align`` (pyproject.toml). Registering imports
only the schemas; the builders import transformers when a text run is built, so a CartPole run
never pays for it.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ppo_core.build import EnvKind, PolicyNeeds, register_agent, register_env_kind, register_objective
from ppo_core.config import TrainConfig, register_schema
from ppo_core.errors import ConfigError
from ppo_core.align.rl_config import LMAgentConfig, RLHFObjectiveConfig, TextEnvConfig


def make_env(config: TrainConfig, device: torch.device):
    from ppo_core.align.rl_build import make_text_env

    env = config.env
    if config.algo.advantage != "gae" and env.samples_per_prompt < 2:
        raise ConfigError(f"algo.advantage={config.algo.advantage} compares the completions of one prompt: set "
                          f"env.samples_per_prompt to 2 or more (got {env.samples_per_prompt})")
    return make_text_env(env, config.objective, device, env.prompts, "env.prompts", env.num_envs, shuffle=True,
                         gold=env.gold or "gold" in ([env.reward] if isinstance(env.reward, str) else env.reward),
                         training=True, samples_per_prompt=env.samples_per_prompt)


def make_eval_env(config: TrainConfig, device: torch.device, episodes: int, video_dir: Path | None = None):
    from ppo_core.align.rl_build import make_text_env

    return make_text_env(config.env, config.objective, device, config.env.eval_prompts, "env.eval_prompts", episodes, shuffle=False,
                         gold=True, training=False)


def make_objective_terms(config: TrainConfig, policy):
    from ppo_core.align.rl_build import make_auxiliary_losses

    return make_auxiliary_losses(config, policy)


def make_policy(config: TrainConfig, env, device: torch.device, needs: PolicyNeeds):
    from ppo_core.align.rl_build import make_lm_policy

    return make_lm_policy(config, env, device, needs)


def register() -> None:
    register_schema("env", "text_bandit", TextEnvConfig)
    register_schema("agent", "lm", LMAgentConfig)
    register_schema("objective", "rlhf", RLHFObjectiveConfig)
    register_env_kind("text_bandit", EnvKind(make_env, make_eval_env, agents=("lm",), objectives=("rlhf",)))
    register_objective("rlhf", make_objective_terms)
    register_agent("lm", make_policy)
