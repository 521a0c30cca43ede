"""``env.reward`` and ``env.reward_weights`` into the text bandit's ``RewardSet`` (envs/text_rewards.py).

A source is ``rm`` (the reward model at ``env.rm_path``), ``gold`` (the embedded world's labeler),
the path of a reward-model dir, or ``module:function``. A reward model whose tokenizer has the
policy's vocabulary reads the sampled token ids; one with its own vocabulary reads the text,
re-tokenised.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from collections.abc import Callable
from typing import Any

import torch
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from envs.text_rewards import FunctionReward, GoldReward, RetokenizedScorer, RewardSet, TokenScorer
from ppo_core.align import artifacts
from ppo_core.align.models import context_length
from ppo_core.align.rl_config import TextEnvConfig
from ppo_core.errors import ConfigError

log = logging.getLogger(__name__)

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


def reward_specs(config: TextEnvConfig) -> list[str]:
    """``env.reward`` as a list of source names."""
    specs = [config.reward] if isinstance(config.reward, str) else config.reward
    if not isinstance(specs, (list, tuple)) or not specs or not all(isinstance(s, str) and s for s in specs):
        raise ConfigError(f"env.reward={config.reward!r} is invalid; expected a source or a list of sources, each "
                          "rm, gold, a reward-model dir or module:function")
    return list(specs)


def reward_weights(config: TextEnvConfig, count: int) -> list[float]:
    weights = list(config.reward_weights) or [1.0] * count
    if len(weights) != count:
        raise ConfigError(f"env.reward_weights={list(config.reward_weights)} has {len(weights)} weights for "
                          f"{count} reward sources (env.reward={config.reward!r})")
    return [float(w) for w in weights]


def import_function(spec: str) -> Callable[..., Any]:
    """``module:function``, the module importable from the working directory or PYTHONPATH."""
    module_name, _, name = spec.partition(":")
    if not module_name or not name:
        raise ConfigError(f"env.reward={spec!r} is not module:function")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        raise ConfigError(f"env.reward={spec!r}: no module named {error.name!r} on the path (the working directory "
                          f"{os.getcwd()!r} and PYTHONPATH)") from None
    except Exception as error:  # the module's own code failed on import (a SyntaxError, a raise, ...)
        raise ConfigError(f"env.reward={spec!r}: importing {module_name!r} raised {type(error).__name__}: {error}"
                          ) from None
    fn = getattr(module, name, None)
    if not callable(fn):
        what = "has no attribute" if fn is None else f"has a non-callable {type(fn).__name__}"
        raise ConfigError(f"env.reward={spec!r}: module {module_name!r} {what} {name!r}; expected a function "
                          "fn(prompts, completions, **columns) -> list[float]")
    return fn


def reward_tokenizer(path: str, key: str) -> PreTrainedTokenizerBase | None:
    """The tokenizer saved beside a reward model (None: none was), padding with EOS when it has no pad
    token (padding is masked, so any id serves)."""
    if not any(os.path.isfile(os.path.join(path, name)) for name in TOKENIZER_FILES):
        return None
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True, trust_remote_code=False)
    except Exception as error:  # a damaged tokenizer file, a tokenizer class that needs a missing package
        raise ConfigError(f"{key}={path!r}: its tokenizer does not load ({type(error).__name__}: "
                          f"{str(error).splitlines()[0] if str(error) else ''})") from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token if tokenizer.eos_token is not None else tokenizer.unk_token
    return tokenizer


def model_source(path: str, key: str, tokenizer: PreTrainedTokenizerBase, device: torch.device):
    """A reward model's source and, when it reads the policy's token ids, its context (else None)."""
    model = artifacts.frozen_reward_model(path, str(device), key)
    own = reward_tokenizer(path, key)
    if own is None or own.get_vocab() == tokenizer.get_vocab():
        embeddings = model.trunk.get_input_embeddings().num_embeddings
        if embeddings < len(tokenizer):
            raise ConfigError(f"{key}={path!r} embeds {embeddings} tokens, fewer than the policy's vocabulary of "
                              f"{len(tokenizer)}; save the reward model's tokenizer beside it so its text is "
                              "re-tokenised")
        return TokenScorer(model.score), context_length(model.trunk)
    log.info("reward model %s has its own vocabulary: completions are decoded and re-tokenised for it", path)
    return RetokenizedScorer(model.score, own, context_length(model.trunk)), None


def build_reward_set(config: TextEnvConfig, prompts: artifacts.Prompts, tokenizer: PreTrainedTokenizerBase,
                     device: torch.device) -> tuple[RewardSet, int | None]:
    """The sources of ``env.reward`` with their weights, and the shortest context of the reward models
    that read the policy's token ids (None: none does)."""
    specs = reward_specs(config)
    weights = reward_weights(config, len(specs))
    sources, contexts = {}, []
    for spec, weight in zip(specs, weights):
        if spec == "gold":
            if prompts.gold is None:
                raise ConfigError("env.reward=gold needs prompts with a gold labeler: an embedded-world split "
                                  f"(env.prompts={config.prompts!r})")
            name, source = "gold", GoldReward(prompts.gold)
        elif ":" in spec and not os.path.isdir(spec):
            fn = import_function(spec)
            name, source = getattr(fn, "__name__", spec.partition(":")[2]), FunctionReward(fn, spec, prompts.columns)
        else:
            if spec != "rm" and not os.path.isdir(spec):
                raise ConfigError(f"env.reward={spec!r} is none of rm, gold, module:function or a reward-model "
                                  "directory (no such directory)")
            path = artifacts.rm_dir(config) if spec == "rm" else spec
            key = "env.rm_path" if spec == "rm" else "env.reward"
            name = "rm" if spec == "rm" else os.path.basename(os.path.normpath(spec))
            source, context = model_source(path, key, tokenizer, device)
            if context is not None:
                contexts.append(context)
        while name in sources:
            name += "_"
        sources[name] = (source, weight)
    return RewardSet(sources), min(contexts) if contexts else None
