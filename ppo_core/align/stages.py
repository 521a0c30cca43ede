"""The alignment stages by name, each a function of a typed `AlignConfig`.

Stage outputs live in `cfg.paths` (default `<root>/base`, `<root>/sft`, `<root>/rm`); each stage reads
the previous stage's directory. Later stages (`rl`, `eval`) join the registry with `register_stage`.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import random
import time
from collections.abc import Callable
from typing import Any

import torch

from agents.reward_model import RewardModel
from ppo_core.align.config import AlignConfig
from ppo_core.align.errors import AlignError
from ppo_core.align.models import build_model, count_parameters, load_causal_lm
from ppo_core.align.pretrain import pretrain
from ppo_core.align.reward import check_k, collect_rankings, train_reward_model
from ppo_core.align.sft import sft
from ppo_core.align.tokenizer import train_tokenizer
from ppo_core.align.training import resolve_device, seed_everything

log = logging.getLogger(__name__)

StageFn = Callable[[AlignConfig], dict[str, Any]]
STAGES: dict[str, StageFn] = {}
PLANNED_STAGES = ("rl", "eval")
SUMMARY_FILE = "stage_summary.json"


def register_stage(name: str) -> Callable[[StageFn], StageFn]:
    """Decorator adding a stage to `STAGES` under `name`."""

    def add(fn: StageFn) -> StageFn:
        STAGES[name] = fn
        return fn

    return add


def run_stage(cfg: AlignConfig) -> dict[str, Any]:
    """Run `cfg.stage` after checking its name; returns the stage's summary."""
    if cfg.stage not in STAGES:
        hint = " (not available yet)" if cfg.stage in PLANNED_STAGES else ""
        raise AlignError(f"stage={cfg.stage!r} is unknown{hint}; choose one of {sorted(STAGES)}")
    torch.set_num_threads(cfg.threads)
    return STAGES[cfg.stage](cfg)


def write_summary(out_dir: str, stage: str, cfg: AlignConfig, summary: dict[str, Any]) -> dict[str, Any]:
    """Record the stage's summary and full config as JSON beside its outputs."""
    with open(os.path.join(out_dir, SUMMARY_FILE), "w") as f:
        json.dump({"stage": stage, "summary": summary, "config": dataclasses.asdict(cfg)}, f, indent=2)
    return summary


def load_world_data(cfg: AlignConfig):
    """The language world for `cfg.world` (imported lazily: stages on custom models may not need it)."""
    from ppo_core.align.world import load_world

    return load_world(cfg.world)


@register_stage("pretrain")
def run_pretrain(cfg: AlignConfig) -> dict[str, Any]:
    """Train a tokenizer and a base model on the world's corpus (or continue `model.init`)."""
    seed_everything(cfg.seed)
    world, out = load_world_data(cfg), cfg.paths.resolve("base")
    if cfg.model.init:
        model, tokenizer = load_causal_lm(cfg.model.init, device=resolve_device(cfg.device))
    else:
        tokenizer = train_tokenizer(world.tokenizer_texts(), cfg.model.vocab_size)
        model = build_model(cfg.model.preset, tokenizer).to(resolve_device(cfg.device))
    log.info("base model: %d parameters, vocabulary %d", count_parameters(model), len(tokenizer))
    result = pretrain(model, tokenizer, world.corpus, cfg.pretrain, out)
    summary = dataclasses.asdict(result) | {"parameters": count_parameters(model), "vocab_size": len(tokenizer)}
    return write_summary(out, "pretrain", cfg, summary)


@register_stage("sft")
def run_sft(cfg: AlignConfig) -> dict[str, Any]:
    """Fine-tune the base model on the gold labeler's demonstrations of the train prompts."""
    seed_everything(cfg.seed)
    model, tokenizer = load_causal_lm(
        cfg.paths.resolve("base"), resid_pdrop=cfg.sft.resid_pdrop, device=resolve_device(cfg.device)
    )
    world, out = load_world_data(cfg), cfg.paths.resolve("sft")
    result = sft(model, tokenizer, world.demonstrations("train"), world.demonstrations("validation"),
                 cfg.sft, out, cfg.seed)
    return write_summary(out, "sft", cfg, dataclasses.asdict(result))


@register_stage("rm")
def run_rm(cfg: AlignConfig) -> dict[str, Any]:
    """Sample K completions per prompt from the SFT model, rank them with the labeler, train the RM."""
    seed_everything(cfg.seed)
    check_k(cfg.rm.k)
    policy, tokenizer = load_causal_lm(cfg.paths.resolve("sft"), resid_pdrop=0.0, device=resolve_device(cfg.device))
    world, out = load_world_data(cfg), cfg.paths.resolve("rm")
    start = time.time()
    collect = functools.partial(
        collect_rankings,
        policy,
        tokenizer,
        prompt_text=world.prompt_text,
        completion_text=functools.partial(world.completion_text, tokenizer),
        rank=functools.partial(world.labeler.rank_tiers if cfg.rm.ties else world.labeler.rank,
                               rng=random.Random(f"{cfg.seed}-rm-rankings")),
        gold_score=world.gold_total,
        cfg=cfg.rm,
    )
    train = collect(world.splits["train"])
    val = collect(world.splits["validation"][: cfg.rm.n_val_prompts or None])
    sample_seconds = time.time() - start
    ceiling = world.labeler.agreement_ceiling()
    rm = RewardModel.from_causal_lm(policy)
    result = train_reward_model(rm, tokenizer, train, val, cfg.rm, out, cfg.seed,
                                metadata={"agreement_ceiling": ceiling})
    summary = dataclasses.asdict(result) | {
        "sample_seconds": sample_seconds,
        "agreement_ceiling": ceiling,
        "agreement_ceiling_all_pairs": world.labeler.agreement_ceiling(1.0 - result.val["distinct_fraction"]),
        "labeler_agreement": world.labeler.labeler_agreement(cfg.rm.k),
        "accuracy_vs_ceiling": result.val["distinct_accuracy"] / ceiling,
    }
    return write_summary(out, "rm", cfg, summary)


@register_stage("all_supervised")
def run_all_supervised(cfg: AlignConfig) -> dict[str, Any]:
    """pretrain, sft and rm in order."""
    return {name: STAGES[name](cfg) for name in ("pretrain", "sft", "rm")}
