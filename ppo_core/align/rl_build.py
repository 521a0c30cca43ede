"""Wire the text bandit env, the LM policy and the text-only loss terms (KL in the loss, PPO-ptx):
the builders ``ppo_core.align.plugin`` registers for ``env=text_bandit``, ``agent=lm`` and
``objective=rlhf``."""

from __future__ import annotations

import logging
import os

import torch

from agents.base import ActorCritic
from agents.lm import LMActorCritic, adapter_layers
from envs.text_bandit import TextBanditVecEnv, TextReward, tokenize_prompts
from ppo_core.align import artifacts
from ppo_core.align.models import context_length, load_tokenizer
from ppo_core.align.lora import add_adapters
from ppo_core.align.objective_terms import PretrainingLoss, ReferenceKLLoss
from ppo_core.align.reward_sources import build_reward_set
from ppo_core.align.rl_config import RLHFObjectiveConfig, TextEnvConfig
from ppo_core.auxiliary import AuxiliaryLoss
from ppo_core.build import PolicyNeeds
from ppo_core.config import TrainConfig
from ppo_core.errors import ConfigError
from ppo_core.kl import check_kl_treatment

log = logging.getLogger(__name__)



def make_text_env(
    config: TextEnvConfig, objective: RLHFObjectiveConfig, device: torch.device, source: str, key: str,
    num_envs: int, shuffle: bool, gold: bool, training: bool, samples_per_prompt: int = 1,
) -> TextBanditVecEnv:
    """The text bandit over prompts ``source``, scored by ``env.reward``'s sources (frozen models shared
    between the training and evaluation envs) and, with ``objective.kl_placement=reward``, penalised
    by the objective's KL to the frozen π_SFT; only the training env adapts β and answers each prompt
    ``samples_per_prompt`` times."""
    try:  # each setting's own range is the schema's (rl_config.py); this is their combination
        check_kl_treatment(objective.kl_estimator, objective.kl_direction, objective.kl_placement)
    except ValueError as error:
        raise ConfigError(f"objective.kl_estimator={objective.kl_estimator!r}, objective.kl_direction="
                          f"{objective.kl_direction!r}, objective.kl_placement={objective.kl_placement!r}: {error}"
                          ) from None
    sft = artifacts.sft_dir(config)
    reference, tokenizer = artifacts.frozen_reference(sft, str(device))
    if tokenizer.pad_token_id == tokenizer.eos_token_id:
        raise ConfigError(f"the tokenizer in {sft!r} pads with EOS (id {tokenizer.eos_token_id}); completions "
                          "are padded after their EOS, so pad_token_id must differ from eos_token_id")
    prompts = artifacts.load_prompts(config, source, key, tokenizer)
    rewards, reward_context = build_reward_set(config, prompts, tokenizer, device)
    context = min(context_length(reference), reward_context or context_length(reference))  # both read prompt + completion
    room = context - config.max_new_tokens
    if room < 1:
        raise ConfigError(f"env.max_new_tokens={config.max_new_tokens} leaves no room for a prompt in the "
                          f"context of {context} tokens (the shorter of π_SFT's and the reward model's)")
    reward = TextReward(reference, rewards, tokenizer.eos_token_id, config.temperature, objective.kl_coef,
                        objective.kl_estimator, objective.kl_direction, objective.kl_placement,
                        objective.kl_coef_target, objective.kl_horizon, config.no_eos_penalty, config.empty_penalty,
                        config.nonfinite_penalty)
    return TextBanditVecEnv(tokenize_prompts(prompts.texts, tokenizer, room, config.prompt_overflow), reward,
                            tokenizer, num_envs, config.max_new_tokens, device, shuffle,
                            prompts.gold if gold else None, adapt_kl_coef=training, samples_per_prompt=samples_per_prompt)


def make_auxiliary_losses(config: TrainConfig, policy: ActorCritic) -> list[AuxiliaryLoss]:
    """The objective's loss terms beside the surrogate: the KL to π_SFT when ``objective.kl_placement=loss``
    and PPO-ptx's pretraining term when ``objective.ptx_coef > 0``. The env's settings say where π_SFT,
    whose tokenizer and corpus the ptx term uses, lives."""
    objective, env = config.objective, config.env
    terms: list[AuxiliaryLoss] = []
    if objective.kl_placement == "loss":
        terms.append(ReferenceKLLoss(objective.kl_estimator, objective.kl_direction))
    if objective.ptx_coef > 0:
        model = policy.model
        blocks = artifacts.load_pretraining_blocks(env, objective.ptx_data, load_tokenizer(artifacts.sft_dir(env)),
                                                   context_length(model))
        terms.append(PretrainingLoss(model, blocks, objective.ptx_coef, objective.ptx_batch_size))
    return terms


def make_lm_policy(config: TrainConfig, env: TextBanditVecEnv, device: torch.device, needs: PolicyNeeds) -> LMActorCritic:
    """The policy starts from ``agent.model_path`` (default π_SFT) and samples ``env.max_new_tokens``
    tokens at ``env.temperature``, the values the env scores the reference with."""
    agent, env_config = config.agent, config.env
    if not isinstance(env_config, TextEnvConfig):
        raise ConfigError(f"agent=lm generates text: it needs env=text_bandit, not env kind {env_config.kind!r}")
    path = agent.model_path or artifacts.sft_dir(env_config)
    peft_model = None
    if agent.lora_r > 0:
        model, tokenizer, peft_model = lora_policy_model(agent, env_config, env, device)
    else:
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
    needed = env.prompts.input_ids.shape[1] + env_config.max_new_tokens  # the env's longest prompt + a completion
    value_trunk = value_init.trunk if value_init is not None else None
    for key, module in (("agent.model_path", model), ("agent.value_init_path", value_trunk)):
        if module is not None and context_length(module) < needed:
            raise ConfigError(f"{key}: the model's context of {context_length(module)} tokens is shorter than the "
                              f"env's prompts and completions ({needed} tokens)")
    attention = agent.attn_implementation
    if attention == "auto":
        attention = "eager" if needs.second_order else ""
    for module in (model, value_init.trunk if value_init is not None else None):
        if attention and module is not None:
            try:
                module.set_attn_implementation(attention)
            except (ValueError, ImportError) as error:
                raise ConfigError(f"agent.attn_implementation={attention!r}: {str(error).splitlines()[0]}") from None
    autocast = None
    if agent.mixed_precision == "bf16":
        if device.type == "cuda":
            autocast = torch.bfloat16
        else:
            log.warning("agent.mixed_precision=bf16 is ignored on %s: bf16 autocast runs the policy on CUDA only", device)
    try:
        policy = LMActorCritic(model, tokenizer.pad_token_id, tokenizer.eos_token_id, env_config.max_new_tokens,
                               env_config.temperature, agent.critic, value_init, agent.exit_check_every, agent.trim_padding,
                               autocast, agent.gradient_checkpointing)
    except ValueError as error:
        raise ConfigError(f"agent=lm: {error}") from None
    if peft_model is not None:
        object.__setattr__(policy, "peft_model", peft_model)  # outside the module tree: the same parameters
    env.reward.autocast_dtype = autocast  # π_SFT's log-probs in the policy's precision, so a fresh policy has KL 0
    return policy.to(device)


def lora_policy_model(agent, env_config: TextEnvConfig, env: TextBanditVecEnv, device: torch.device):
    """The env's own π_SFT with LoRA adapters: (model, tokenizer, its PeftModel). A reference that
    carries an earlier run's adapters (a second LoRA run in one process) is loaded afresh first."""
    sft = artifacts.sft_dir(env_config)
    if agent.critic == "separate":
        raise ConfigError(f"agent.lora_r={agent.lora_r} with agent.critic=separate: the separate critic would be a "
                          "frozen copy of π_SFT with adapters of its own; use agent.critic=head (the value head on "
                          "the adapted trunk) or full fine-tuning (agent.lora_r=0)")
    if agent.model_path and os.path.realpath(agent.model_path) != os.path.realpath(sft):
        raise ConfigError(f"agent.lora_r={agent.lora_r} puts adapters on π_SFT, the KL reference; agent.model_path="
                          f"{agent.model_path!r} must be empty or env.sft_path")
    model = env.reward.reference
    if adapter_layers(model):
        artifacts.frozen_reference.cache_clear()
        model, _ = artifacts.frozen_reference(sft, str(device))
        env.reward.reference, env.reward.reference_adapters = model, None
    return model, env.tokenizer, add_adapters(model, agent)
