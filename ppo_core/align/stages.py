"""The alignment stages by name, each a function of a typed `AlignConfig`.

Stage outputs live in `cfg.paths` (default `<root>/base`, `<root>/sft`, `<root>/rm`, `<root>/rl`,
`<root>/eval`); each stage reads the previous stages' directories. `rl` is the training app itself
(`python -m ppo_core.train env=text_bandit agent=lm`), the trainer that also trains CartPole.
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
from typing import Any, TypeVar

import torch

from agents.reward_model import RewardModel
from ppo_core.align import user_data
from ppo_core.align.config import AlignConfig
from ppo_core.align.errors import AlignError
from ppo_core.align.models import build_model, context_length, count_parameters, load_causal_lm
from ppo_core.align.pretrain import pretrain
from ppo_core.align.reward import RankedPrompt, check_k, collect_rankings, encode_rankings, train_reward_model
from ppo_core.align.sft import sft
from ppo_core.align.tokenizer import train_tokenizer
from ppo_core.align.training import tensorboard_writer
from ppo_core.errors import ConfigError
from ppo_core.distributed import is_main, requested_world_size
from ppo_core.runtime import resolve_device, seed_everything

log = logging.getLogger(__name__)

P = TypeVar("P")
StageFn = Callable[[AlignConfig], dict[str, Any]]
STAGES: dict[str, StageFn] = {}
SUMMARY_FILE = "stage_summary.json"


OUTPUT_PATHS = {"pretrain": "base", "sft": "sft", "rm": "rm", "rl": "rl", "eval": "eval"}
"""The ``paths`` entry each stage writes."""


def register_stage(name: str) -> Callable[[StageFn], StageFn]:
    """Decorator adding a stage to `STAGES` under `name`; a stage that writes a directory says which,
    when it starts and when it is done."""

    def add(fn: StageFn) -> StageFn:
        if name not in OUTPUT_PATHS:
            STAGES[name] = fn
            return fn

        @functools.wraps(fn)
        def announced(cfg: AlignConfig) -> dict[str, Any]:
            out, started = cfg.paths.resolve(OUTPUT_PATHS[name]), time.time()
            log.info("stage %s: writing %s", name, out)
            summary = fn(cfg)
            log.info("stage %s done in %.0f s: %s", name, time.time() - started, out)
            return summary

        STAGES[name] = announced
        return announced

    return add


def run_stage(cfg: AlignConfig) -> dict[str, Any]:
    """Run `cfg.stage` after checking its name; returns the stage's summary."""
    if cfg.stage not in STAGES:
        raise AlignError(f"stage={cfg.stage!r} is unknown; choose one of {sorted(STAGES)}")
    if requested_world_size() > 1 and cfg.stage != "rl":
        raise AlignError(f"stage={cfg.stage} runs in one process; under torchrun only stage=rl is data-parallel "
                         "(run the other stages with plain python -m ppo_core.align)")
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


def holdout(rows: list[P], fraction: float, seed: int, key: str) -> tuple[list[P], list[P]]:
    """A seeded split of ``rows`` into train and validation, at least one row in each."""
    if len(rows) < 2:
        raise AlignError(f"{key} holds {len(rows)} row(s); training and validation need at least 2")
    order = list(range(len(rows)))
    random.Random(f"{seed}-{key}-holdout").shuffle(order)
    n_val = min(len(rows) - 1, max(1, round(fraction * len(rows))))
    return [rows[i] for i in sorted(order[n_val:])], [rows[i] for i in sorted(order[:n_val])]


def write_rows(path: str, rows: list[dict[str, Any]]) -> str:
    """Rows as a .jsonl file: what the embedded world hands the stages, in the format users give."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    return path


def world_demonstrations(world, split: str, out: str, tokenizer) -> list[tuple[str, str]]:
    """The world labeler's demonstrations of a split, written as prompt/completion rows into
    ``<out>/data`` and read back through the loader ``sft.data`` uses."""
    rows = [{"prompt": prompt, "completion": completion} for prompt, completion in world.demonstrations(split)]
    path = write_rows(os.path.join(out, "data", f"demonstrations_{split}.jsonl"), rows)
    return user_data.sft_pairs(path, "sft.data", tokenizer)


@register_stage("sft")
def run_sft(cfg: AlignConfig) -> dict[str, Any]:
    """Fine-tune the base model on demonstrations: the world labeler's of the train prompts, or the rows
    of ``sft.data``; both are read by the same loader."""
    seed_everything(cfg.seed)
    model, tokenizer = load_causal_lm(
        cfg.paths.resolve("base"), resid_pdrop=cfg.sft.resid_pdrop, device=resolve_device(cfg.device)
    )
    out = cfg.paths.resolve("sft")
    try:
        if cfg.sft.data:
            train, val = holdout(user_data.sft_pairs(cfg.sft.data, "sft.data", tokenizer), cfg.sft.val_fraction,
                                 cfg.seed, "sft.data")
        else:
            world = load_world_data(cfg)
            train, val = (world_demonstrations(world, split, out, tokenizer) for split in ("train", "validation"))
        if cfg.sft.overflow == "error":
            user_data.refuse_overflow(cfg.sft.data or "the world's demonstrations", "sft.data", train + val, tokenizer,
                                      cfg.sft.max_prompt_tokens, cfg.sft.max_completion_tokens)
    except ConfigError as error:
        raise AlignError(str(error)) from None
    result = sft(model, tokenizer, train, val, cfg.sft, out, cfg.seed)
    return write_summary(out, "sft", cfg, dataclasses.asdict(result))


@register_stage("rm")
def run_rm(cfg: AlignConfig) -> dict[str, Any]:
    """Train the reward model from the SFT model: on the rankings of ``rm.data``, or on K completions
    per world prompt sampled from the SFT model and ranked by the world's labeler."""
    seed_everything(cfg.seed)
    policy, tokenizer = load_causal_lm(cfg.paths.resolve("sft"), resid_pdrop=0.0, device=resolve_device(cfg.device))
    if cfg.rm.data:
        return run_rm_on_data(cfg, policy, tokenizer)
    check_k(cfg.rm.k)
    world, out = load_world_data(cfg), cfg.paths.resolve("rm")
    rm_config = dataclasses.replace(cfg.rm, max_new_tokens=rm_sample_tokens(cfg))
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
        cfg=rm_config,
        group=lambda prompt: prompt.kind,
    )
    train = collect(world.splits["train"])
    val = collect(world.splits["validation"][: cfg.rm.n_val_prompts or None])
    for split, ranked in (("train", train), ("validation", val)):  # the K-wise format rm.data takes, for a look
        write_rows(os.path.join(out, "data", f"rankings_{split}.jsonl"), ranking_rows(ranked, tokenizer))
    sample_seconds = time.time() - start
    ceiling = world.labeler.agreement_ceiling()
    rm = RewardModel.from_causal_lm(policy)
    result = train_reward_model(rm, tokenizer, train, val, rm_config, out, cfg.seed,
                                metadata={"agreement_ceiling": ceiling, "max_new_tokens": rm_config.max_new_tokens})
    summary = dataclasses.asdict(result) | {
        "sample_seconds": sample_seconds,
        "agreement_ceiling": ceiling,
        "agreement_ceiling_all_pairs": world.labeler.agreement_ceiling(1.0 - result.val["distinct_fraction"]),
        "labeler_agreement": world.labeler.labeler_agreement(cfg.rm.k),
        "accuracy_vs_ceiling": result.val["distinct_accuracy"] / ceiling,
    }
    return write_summary(out, "rm", cfg, summary)


def rm_sample_tokens(cfg: AlignConfig) -> int:
    """Tokens per sampled reward-model completion: ``rm.max_new_tokens``, or by default the RL stage's
    ``env.max_new_tokens``, the length of the completions the reward model will score."""
    return cfg.rm.max_new_tokens or rl_train_config(cfg).env.max_new_tokens


def ranking_rows(ranked: list[RankedPrompt], tokenizer) -> list[dict[str, Any]]:
    """Sampled rankings as K-wise rows (best first, so ``ranking`` is 0..K-1), with their gold scores and tiers."""
    return [{"prompt": tokenizer.decode(r.prompt_ids, skip_special_tokens=True),
             "completions": tokenizer.batch_decode(r.completions, skip_special_tokens=True),
             "ranking": list(range(len(r.completions))), "tiers": r.tiers, "gold": r.gold, "kind": r.group}
            for r in ranked]


def run_rm_on_data(cfg: AlignConfig, policy, tokenizer) -> dict[str, Any]:
    """The reward model on the rankings of ``rm.data`` (pairwise or K-wise rows), validated on a held-out part."""
    out = cfg.paths.resolve("rm")
    try:
        rows = user_data.rankings(cfg.rm.data, "rm.data", tokenizer)
        ranked = encode_rankings(rows, tokenizer, cfg.rm.max_prompt_tokens, context_length(policy), cfg.rm.overflow,
                                 f"rm.data={cfg.rm.data!r}")
    except ConfigError as error:
        raise AlignError(str(error)) from None
    train, val = holdout(ranked, cfg.rm.val_fraction, cfg.seed, "rm.data")
    rm = RewardModel.from_causal_lm(policy)
    ks = sorted({len(r.completions) for r in ranked})
    result = train_reward_model(rm, tokenizer, train, val, dataclasses.replace(cfg.rm, k=ks[-1]), out, cfg.seed,
                                metadata={"data": cfg.rm.data, "k_range": [ks[0], ks[-1]]})
    return write_summary(out, "rm", cfg, dataclasses.asdict(result))


@register_stage("all_supervised")
def run_all_supervised(cfg: AlignConfig) -> dict[str, Any]:
    """pretrain, sft and rm in order."""
    return {name: STAGES[name](cfg) for name in ("pretrain", "sft", "rm")}


def rl_train_config(cfg: AlignConfig):
    """The training app's config for the RL stage: the text bandit on this pipeline's SFT and RM."""
    from ppo_core.config import compose_train_config

    paths = cfg.paths
    overrides = ["env=text_bandit", "agent=lm", f"algo={cfg.rl.algo}", f"env.artifacts={paths.root}",
                 f"env.sft_path={paths.resolve('sft')}", f"env.rm_path={paths.resolve('rm')}", f"seed={cfg.seed}",
                 f"device={cfg.device}", f"torch_threads={cfg.threads}", "progress=false"]
    if cfg.rl.prompts:  # evaluated on the same prompts unless rl.overrides says otherwise
        overrides += [f"env.prompts={cfg.rl.prompts}", f"env.eval_prompts={cfg.rl.prompts}"]
    if cfg.rl.reward:
        reward = cfg.rl.reward if isinstance(cfg.rl.reward, str) else f"[{','.join(cfg.rl.reward)}]"
        overrides.append(f"env.reward={reward}")
    overrides += cfg.rl.overrides
    from ppo_core.validation import validate

    try:
        config = compose_train_config(overrides)
        validate(config)
        return config
    except Exception as error:  # hydra's override and validation errors name the bad key
        raise AlignError(f"rl.algo={cfg.rl.algo!r} / rl.overrides={cfg.rl.overrides}: {error}") from None


@register_stage("rl")
def run_rl(cfg: AlignConfig) -> dict[str, Any]:
    """PPO (or TRPO, REINFORCE) on the text bandit; the final policy is saved as an HF dir `<rl>/policy`."""
    from ppo_core.align.lora import save_policy
    from ppo_core.build import build_trainer
    from ppo_core.errors import NonFiniteError

    config, out = rl_train_config(cfg), cfg.paths.resolve("rl")
    try:
        trainer = build_trainer(config, out)
        summary = trainer.train()
    except (ConfigError, NonFiniteError) as error:
        raise AlignError(str(error)) from None
    if not is_main():  # rank 0 of a data-parallel run saves the policy and the summary
        return summary
    policy_dir = save_policy(trainer.policy, os.path.join(out, "policy"), trainer.env.tokenizer, config.agent.lora_save)
    summary = {**summary, "policy": policy_dir, "seconds": summary["wall_seconds"]}
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump({**summary, "config": dataclasses.asdict(config)}, f, indent=2)
    return write_summary(out, "rl", cfg, summary)


def evaluation_env(cfg: AlignConfig, split: str, device: torch.device):
    """The text bandit env over the embedded world's ``split`` (prompts in order, gold-scored, β fixed)
    as the RL stage configures it, with that world and its stage settings: (env, world, settings)."""
    from ppo_core.align import artifacts
    from ppo_core.align.artifacts import WORLD_SPLITS
    from ppo_core.align.rl_build import make_text_env

    if split not in WORLD_SPLITS:
        raise AlignError(f"eval.split={split!r} is unknown; expected one of {WORLD_SPLITS}")
    rl_config = rl_train_config(cfg)
    try:
        env = make_text_env(rl_config.env, rl_config.objective, device, split, "eval.split",
                            cfg.eval.batch_size, shuffle=False, gold=True, training=False)
        world, settings = artifacts.sft_world(rl_config.env, "eval.split", "the embedded world's prompts", "")
    except ConfigError as error:
        raise AlignError(str(error)) from None
    return env, world, settings


def evaluation_policy(path: str, env, device: torch.device):
    """The causal LM at ``path`` as a policy answering ``env``'s prompts: (policy, model)."""
    from agents.lm import LMActorCritic

    model, tokenizer = load_causal_lm(path, device=device)
    if tokenizer.get_vocab() != env.tokenizer.get_vocab():
        raise AlignError(f"{path!r} has a different tokenizer from the SFT model's")
    # trim_padding="minibatch" takes any causal LM (packing needs a check some models fail); no hot path here
    policy = LMActorCritic(model, tokenizer.pad_token_id, tokenizer.eos_token_id, env.max_new_tokens,
                           env.reward.temperature, trim_padding="minibatch")
    return policy, model


FACT_RECALL_FACTS = 300
"""World facts of the fact-recall measure (evaluation.fact_recall), 4-way: its sd is about 0.03."""


@register_stage("eval")
def run_eval(cfg: AlignConfig) -> dict[str, Any]:
    """The RL policy against SFT and base on held-out prompts: win rates with bootstrap intervals, the
    win split into planted habits fixed and the rest, RM score, KL, pretraining loss and fact recall;
    best-of-n from SFT's samples, the baseline RL must beat at its KL; the reward model's agreement
    with gold on the sampled completions; and a knowledge-blind judge's agreement with gold on the
    compared answers (ppo_core/align/evaluation.py)."""
    from envs.language_world import clean_completion
    from ppo_core.align import evaluation

    if cfg.eval.batch_size < 1 or cfg.eval.max_prompts < 0:
        raise AlignError(f"eval.batch_size={cfg.eval.batch_size} and eval.max_prompts={cfg.eval.max_prompts} "
                         "must be >= 1 and >= 0")
    policy_dir = os.path.join(cfg.paths.resolve("rl"), "policy")
    if not os.path.isfile(os.path.join(policy_dir, "config.json")):
        raise AlignError(f"no RL policy in {policy_dir!r}; run `python -m ppo_core.align stage=rl` first")
    start, device = time.time(), resolve_device(cfg.device)
    env, world, settings = evaluation_env(cfg, cfg.eval.split, device)
    prompts = world.splits[cfg.eval.split]
    count = min(len(prompts), cfg.eval.max_prompts or len(prompts))
    blocks = evaluation.heldout_blocks(world.corpus, env.tokenizer, settings["pretrain"]["val_fraction"],
                                       settings["pretrain"]["block_size"])
    answers, tax = {}, {}
    for name, path in (("policy", policy_dir), ("sft", cfg.paths.resolve("sft")), ("base", cfg.paths.resolve("base"))):
        policy, model = evaluation_policy(path, env, device)
        answers[name] = evaluation.answer_all(policy, env, count, sample=name != "base", seed=cfg.seed)
        tax[f"pretraining_loss_{name}"] = evaluation.pretraining_loss(model, blocks)
        tax[f"fact_recall_{name}"] = evaluation.fact_recall(model, env.tokenizer, world.world, FACT_RECALL_FACTS,
                                                            cfg.seed)
        if name == "sft" and cfg.eval.best_of > 0:  # candidates drawn apart from the SFT sample they compete with
            pool = evaluation.sample_pool(policy, env, count, cfg.eval.best_of, seed=cfg.seed + 1)
    kinds = [p.kind for p in prompts[:count]]
    rng = random.Random(f"{cfg.seed}-eval-demonstrations")
    best_gold = torch.tensor([world.gold_total(p, world.labeler.demonstration(p, rng)) for p in prompts[:count]])
    shows = {name: [world.labeler.shows_habit(p, clean_completion(text)) for p, text in zip(prompts, answers[name].texts)]
             for name in ("policy", "sft")}
    habits = evaluation.Habits(torch.tensor([h is not None for h in shows["sft"]]),
                               torch.tensor([bool(h) for h in shows["policy"]]), torch.tensor([bool(h) for h in shows["sft"]]))
    rows = evaluation.comparison_table(kinds, answers["policy"], answers["sft"], answers["base"], best_gold, cfg.seed,
                                       habits)
    best_of_n = evaluation.best_of_n_table(*pool, answers["sft"].sampled_gold, cfg.seed) if cfg.eval.best_of else None
    policy_answers, sft_answers = answers["policy"], answers["sft"]
    reward_model = {"policy_vs_sft_samples": evaluation.reward_model_agreement(
        policy_answers.sampled_scores, policy_answers.sampled_gold, sft_answers.sampled_scores, sft_answers.sampled_gold)}
    if cfg.eval.best_of > 0:  # two SFT samples: the distribution the reward model was trained on
        reward_model["sft_vs_sft_samples"] = evaluation.reward_model_agreement(
            pool[0][0], pool[1][0], sft_answers.sampled_scores, sft_answers.sampled_gold)
    learnability = {f"{a} vs {b}": evaluation.knowledge_blind_agreement(
        world.labeler, prompts[:count], answers[a].texts, answers[a].gold, answers[b].texts, answers[b].gold)
        for a, b in (("policy", "sft"), ("sft", "base"))}
    texts = [world.prompt_text(p) for p in prompts[:count]]
    samples = evaluation.samples_table(texts, kinds, answers["policy"], answers["sft"], cfg.eval.samples_per_kind)
    out = cfg.paths.resolve("eval")
    table = evaluation.write_report(out, rows, tax, samples, best_of_n, reward_model, learnability)
    writer = tensorboard_writer(out)
    writer.add_text("eval/table", table)
    writer.add_text("eval/samples", samples)
    writer.close()
    print(table, flush=True)
    print(evaluation.legend(rows, smoke=cfg.model.preset == "tiny"), flush=True)
    overall = rows[-1]
    return write_summary(out, "eval", cfg, {**overall, **tax, "seconds": time.time() - start})


@register_stage("all")
def run_all(cfg: AlignConfig) -> dict[str, Any]:
    """Every stage in order: pretrain, sft, rm, rl, eval."""
    return {name: STAGES[name](cfg) for name in ("pretrain", "sft", "rm", "rl", "eval")}
