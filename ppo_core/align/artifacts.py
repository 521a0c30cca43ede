"""What a text-bandit run reads from disk: π_SFT with its tokenizer, the reward model and the prompts.

``python -m ppo_core.align`` writes them (``<root>/sft``, ``<root>/rm``); a missing one is a
``ConfigError`` that names the stage to run. Frozen models (the KL reference and the reward model)
are loaded once per path and device and shared by the training and evaluation envs.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable
from typing import NamedTuple

import torch
from safetensors import SafetensorError
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from agents.reward_model import RewardModel
from envs.language_world import clean_completion
from ppo_core.align import user_data
from ppo_core.align.config import WorldConfig
from ppo_core.align.data import pack_blocks
from ppo_core.align.errors import AlignError
from ppo_core.align.models import load_causal_lm
from ppo_core.align.pretrain import split_documents
from ppo_core.align.world import load_world
from ppo_core.align.rl_config import TextEnvConfig
from ppo_core.errors import ConfigError

WORLD_SPLITS = ("train", "validation", "test")
STAGE_SUMMARY = "stage_summary.json"


class Prompts(NamedTuple):
    texts: list[str]
    gold: Callable[[int, str], float] | None  # (prompt index, completion text) -> gold total
    columns: dict[str, list] = {}  # the prompt rows' other fields, one value per prompt, for reward functions


def sft_dir(config: TextEnvConfig) -> str:
    return config.sft_path or os.path.join(config.artifacts, "sft")


def rm_dir(config: TextEnvConfig) -> str:
    return config.rm_path or os.path.join(config.artifacts, "rm")


def require_dir(path: str, key: str, stage: str, marker: str = "config.json") -> str:
    """``path`` if it holds ``marker``; else a ConfigError telling the user which stage writes it."""
    if not os.path.isfile(os.path.join(path, marker)):
        state = "does not exist" if not os.path.exists(path) else f"has no {marker}"
        raise ConfigError(f"{key}={path!r} {state}; run `python -m ppo_core.align stage={stage}` first "
                          f"(or point {key} at a saved model)")
    return path


def load_lm(path: str, device: torch.device, key: str) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A local causal LM and its tokenizer (pad token added when missing), as the SFT stage saved them."""
    require_dir(path, key, "sft")
    try:
        return load_causal_lm(path, device=device)
    except AlignError as error:
        raise ConfigError(f"{key}: {error}") from None


@functools.lru_cache(maxsize=4)
def frozen_reference(path: str, device: str) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    model, tokenizer = load_lm(path, torch.device(device), "env.sft_path")
    return model.eval().requires_grad_(False), tokenizer


def load_reward_model(path: str, device: torch.device, key: str) -> RewardModel:
    """A one-label sequence classifier (ours or any transformers one) or the earlier trunk + head layout."""
    require_dir(path, key, "rm")
    try:
        return RewardModel.from_pretrained(path, device=device)
    except (OSError, ValueError, KeyError, SafetensorError) as error:  # json, safetensors and config damage
        raise ConfigError(f"{key}={path!r} is not a loadable reward model: {str(error).splitlines()[0]}") from None


@functools.lru_cache(maxsize=4)
def frozen_reward_model(path: str, device: str, key: str = "env.rm_path") -> RewardModel:
    return load_reward_model(path, torch.device(device), key).requires_grad_(False)


def load_prompts(config: TextEnvConfig, source: str, key: str, tokenizer: PreTrainedTokenizerBase) -> Prompts:
    """A world split (with the gold labeler), or the prompts of a data file (``user_data.prompt_rows``:
    a ``prompt`` or ``messages`` column, the other columns kept for reward functions)."""
    if source in WORLD_SPLITS:
        return world_prompts(config, source, key)
    if user_data.is_data_file(source):
        texts, columns = user_data.prompt_rows(source, key, tokenizer)
        return Prompts(texts, None, columns)
    raise ConfigError(f"{key}={source!r} is neither a world split {WORLD_SPLITS} nor a data file "
                      f"({', '.join(user_data.DATA_FORMATS)})")


def sft_settings(config: TextEnvConfig, key: str, what: str, alternative: str) -> dict:
    """The align config the SFT stage ran with (its ``stage_summary.json``)."""
    summary = os.path.join(sft_dir(config), STAGE_SUMMARY)
    if not os.path.isfile(summary):
        raise ConfigError(f"{key} takes {what}, whose settings are read from {summary!r}, written by "
                          f"`python -m ppo_core.align stage=sft`; for another model give {alternative}")
    with open(summary) as f:
        return json.load(f)["config"]


def sft_world(config: TextEnvConfig, key: str, what: str, alternative: str):
    settings = sft_settings(config, key, what, alternative)
    try:
        return load_world(WorldConfig(**settings["world"])), settings
    except AlignError as error:
        raise ConfigError(f"{key}: {error}") from None


def world_prompts(config: TextEnvConfig, split: str, key: str) -> Prompts:
    """The split of the embedded world that the SFT stage was trained in (read from its summary)."""
    world, _ = sft_world(config, f"{key}={split}", "the embedded world's prompts", f"{key}=path/to/prompts.jsonl")
    prompts = world.splits[split]

    def gold(index: int, text: str) -> float:
        return world.gold_total(prompts[index], clean_completion(text))

    return Prompts([world.prompt_text(p) for p in prompts], gold)


PTX_BLOCK_SIZE = 128  # tokens per pretraining block of a .txt source (capped by the context)


def load_pretraining_blocks(config: TextEnvConfig, source: str, tokenizer: PreTrainedTokenizerBase, context: int
                            ) -> torch.Tensor:
    """Packed pretraining blocks (M, T) for PPO-ptx: the embedded world's corpus without the documents
    the pretrain stage held out (they measure the alignment tax), in its block size; or the lines of
    a .txt file."""
    if source == "corpus":
        world, settings = sft_world(config, "objective.ptx_data=corpus", "the embedded world's corpus",
                                    "objective.ptx_data=path/to/documents.txt")
        texts, _ = split_documents(world.corpus, settings["pretrain"]["val_fraction"])
        block_size = settings["pretrain"]["block_size"]
    elif source.endswith(".txt"):
        if not os.path.isfile(source):
            raise ConfigError(f"objective.ptx_data={source!r} does not exist")
        try:
            with open(source, encoding="utf-8") as f:
                texts = [line.strip() for line in f if line.strip()]
        except UnicodeDecodeError as error:
            raise ConfigError(f"objective.ptx_data={source!r} is not UTF-8 text ({error.reason})") from None
        if not texts:
            raise ConfigError(f"objective.ptx_data={source!r} holds no documents (one per line expected)")
        block_size = PTX_BLOCK_SIZE
    else:
        raise ConfigError(f"objective.ptx_data={source!r} is neither 'corpus' nor a .txt file")
    try:
        return pack_blocks(tokenizer, texts, min(block_size, context))
    except AlignError as error:
        raise ConfigError(f"objective.ptx_data={source!r}: {error}") from None
