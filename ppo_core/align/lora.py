"""LoRA policies through peft (Hu et al. 2021): adapters on a frozen π_SFT, which stays the KL reference.

The adapters go into the text env's own reference model, in place, so π_θ and π_SFT share one copy of
the weights: the policy runs with its adapters, the env scores the reference with them switched off
(``agents.lm.adapters_disabled``). The value head reads the adapted trunk.
"""

from __future__ import annotations

import logging
import os

from torch import nn
from transformers import PreTrainedModel

from agents.lm import adapter_layers
from ppo_core.align.rl_config import LMAgentConfig
from ppo_core.errors import ConfigError

log = logging.getLogger(__name__)


def add_adapters(model: PreTrainedModel, agent: LMAgentConfig) -> nn.Module:
    """Inject LoRA adapters into ``model`` in place (its own weights frozen); returns the ``PeftModel``
    wrapper, which knows how to save and merge them."""
    from peft import LoraConfig, get_peft_model

    if adapter_layers(model):
        raise ConfigError("agent.lora_r: this reference model already carries adapters")
    config = LoraConfig(r=agent.lora_r, lora_alpha=agent.lora_alpha, lora_dropout=agent.lora_dropout,
                        target_modules=list(agent.lora_target_modules) or None, bias="none")
    try:
        peft_model = get_peft_model(model, config)
    except ValueError as error:
        raise ConfigError(f"agent.lora_target_modules={list(agent.lora_target_modules)}: {str(error).splitlines()[0]}"
                          ) from None
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    log.info("LoRA r=%d: %d of %d policy parameters train (%.2f%%)", agent.lora_r, trainable, total,
             100 * trainable / total)
    return peft_model


def save_policy(policy, path: str, tokenizer, lora_save: str = "merged") -> str:
    """The policy's language model as a Hugging Face dir: the model itself, a LoRA policy's merged
    weights (a plain transformers model), or its adapters alone (``lora_save="adapters"``, peft's
    ``adapter_config.json`` + ``adapter_model.safetensors``, loadable onto π_SFT)."""
    peft_model = getattr(policy, "peft_model", None)
    os.makedirs(path, exist_ok=True)
    if peft_model is None:
        policy.model.save_pretrained(path)
    elif lora_save == "adapters":
        peft_model.save_pretrained(path)
    else:
        save_merged(peft_model, path)
    tokenizer.save_pretrained(path)
    return path


def save_merged(peft_model, path: str) -> None:
    """The adapted weights W + (alpha / r) B A as a plain transformers model, without a second copy of
    the model: merged into the base weights in place, saved under the base layers' own names, unmerged."""
    model = peft_model.get_base_model()
    peft_model.merge_adapter()
    try:
        state = {name.replace(".base_layer.", "."): tensor for name, tensor in model.state_dict().items()
                 if "lora_" not in name}
        model.save_pretrained(path, state_dict=state)
    finally:
        peft_model.unmerge_adapter()
