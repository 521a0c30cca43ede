"""Stage 3: reward-model data and training (InstructGPT Sec. 3.5, Appendix C.2).

For each prompt, K completions are sampled from the SFT policy and ranked best to worst by a labeler,
who may mark equally good ones as tied. The reward model (the SFT trunk plus a scalar head) is trained
for one epoch on the ranking loss with all C(K,2) pairs of a prompt in one batch element (tied pairs
left out), then shifted so that SFT samples score 0 on average.

Why ties matter here: SFT samples of one prompt are often equally good (the same right answer in two
wordings); ordered at random, those pairs were most of the comparisons and pure noise, and the reward
model learned little from the rest.
"""

from __future__ import annotations

import itertools
import logging
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from agents.reward_model import RewardModel
from ppo_core.align.config import RewardConfig
from ppo_core.align.data import encode_completion, encode_prompt, pad_sequences
from ppo_core.align.errors import AlignError
from ppo_core.align.generation import generate_completions
from ppo_core.align.models import context_length
from ppo_core.align.ranking_loss import ranking_loss
from ppo_core.align.training import make_optimizer, optimizer_step, shuffled_batches, tensorboard_writer

log = logging.getLogger(__name__)

P = TypeVar("P")
K_RANGE = range(2, 10)
OFFSET_PROMPTS = 1000
"""Training prompts whose completions set the offset and reward std (a mean needs no more)."""


@dataclass
class RankedPrompt:
    """A prompt's sampled completions, best first by the labeler, with their noiseless gold scores."""

    prompt_ids: list[int]
    completions: list[list[int]]
    gold: list[float] | None
    """Noiseless scores of the completions (the embedded world's); None for rankings from a file."""
    tiers: list[int] | None = None
    """Tier of each completion (0 = best), equal for completions the labeler marked as tied; None: no ties."""
    group: str = ""
    """What the prompt asks for (the world's task kind), to report accuracy per group; "": no group."""


@dataclass
class RewardResult:
    """Summary of a reward-model run."""

    out_dir: str
    steps: int
    train_loss: float
    val: dict[str, float]
    """`evaluate_rankings` on the validation rankings."""
    offset: float
    reward_std: float
    """Standard deviation of the rewards of the training completions, before any scale."""
    seconds: float
    scale: float = 1.0
    """What scores are multiplied by after the offset: 1 / reward_std with ``rm.normalize_std``, else 1."""


def check_k(k: int) -> None:
    """Raise unless 2 <= k <= 9 (InstructGPT ranks K = 4..9 completions per prompt, Sec. 3.5)."""
    if k not in K_RANGE:
        raise AlignError(f"rm.k={k} is outside 2..9: a ranking needs 2..9 completions per prompt")


def collect_rankings(
    policy: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[P],
    prompt_text: Callable[[P], str],
    completion_text: Callable[[Sequence[int]], str],
    rank: Callable[[P, list[str]], list[int] | list[list[int]]],
    gold_score: Callable[[P, str], float],
    cfg: RewardConfig,
    group: Callable[[P], str] | None = None,
) -> list[RankedPrompt]:
    """Sample `cfg.k` completions per prompt from `policy` and order them by `rank` (best first).

    `completion_text(ids)` is the answer text the labeler judges; `rank(prompt, texts)` returns indices
    into `texts`, best to worst (the noisy labeler), or tiers of indices, best tier first, when the
    labeler marks ties; `gold_score(prompt, text)` is the noiseless score kept for diagnostics, and
    `group(prompt)` (optional) names what the prompt asks for, for accuracy per group.
    """
    check_k(cfg.k)
    if not prompts:
        raise AlignError("no prompts to collect reward-model comparisons from")
    if cfg.max_new_tokens is None:
        raise AlignError("rm.max_new_tokens is unset: the rm stage sets it to the RL stage's env.max_new_tokens; "
                         "a direct call needs a length")
    if cfg.max_prompt_tokens + cfg.max_new_tokens > context_length(policy):
        raise AlignError(
            f"rm.max_prompt_tokens + rm.max_new_tokens = {cfg.max_prompt_tokens + cfg.max_new_tokens}"
            f" exceeds the model context {context_length(policy)}"
        )
    encoded = [encode_prompt(tokenizer, prompt_text(p), cfg.max_prompt_tokens) for p in prompts]
    if n_cut := sum(cut for _, cut in encoded):
        log.warning("truncated %d/%d prompts from the left to %d tokens", n_cut, len(prompts), cfg.max_prompt_tokens)
    prompt_ids = [ids for ids, _ in encoded]
    samples = generate_completions(
        policy, tokenizer, prompt_ids, cfg.k, cfg.max_new_tokens, cfg.temperature, cfg.gen_batch_size
    )
    ranked = []
    for p, ids, completions in zip(prompts, prompt_ids, samples):
        texts = [completion_text(c) for c in completions]
        labels = list(rank(p, texts))
        tiered = bool(labels) and not isinstance(labels[0], int)
        groups = [list(tier) for tier in labels] if tiered else [[i] for i in labels]
        order = [i for tier in groups for i in tier]
        if sorted(order) != list(range(len(texts))):
            raise AlignError(f"labeler ranking {labels} is not a permutation of {len(texts)} completions")
        tiers = [t for t, tier in enumerate(groups) for _ in tier] if tiered else None
        gold = [gold_score(p, texts[i]) for i in order]
        ranked.append(RankedPrompt(ids, [completions[i] for i in order], gold, tiers, group(p) if group else ""))
    return ranked


def encode_rankings(rankings: Sequence, tokenizer: PreTrainedTokenizerBase, max_prompt_tokens: int, context: int,
                    overflow: str, where: str) -> list[RankedPrompt]:
    """Text rankings (``user_data.Ranking``: a prompt, completions best first) as token ids: the prompt
    as the policy is prompted (``encode_prompt``, cut from the left to ``max_prompt_tokens``), each
    completion followed by EOS as the policy ends one, cut from the right to fit ``context``.
    ``overflow="error"`` refuses a row that needs a cut, naming it; "truncate" counts and logs the cuts."""
    ranked, cut_prompts, cut_completions = [], 0, 0
    max_prompt_tokens = min(max_prompt_tokens, context - 1)  # a completion needs one token at least
    for number, ranking in enumerate(rankings, 1):
        prompt_ids, cut = encode_prompt(tokenizer, ranking.prompt, max_prompt_tokens)
        if cut and overflow == "error":
            raise AlignError(f"{where}: row {number} column 'prompt' is longer than rm.max_prompt_tokens="
                             f"{max_prompt_tokens}; shorten it, raise the limit, or set rm.overflow=truncate")
        room = context - len(prompt_ids)
        completions = []
        for j, text in enumerate(ranking.completions):
            ids, cut_c = encode_completion(tokenizer, text, room)
            if cut_c and overflow == "error":
                raise AlignError(f"{where}: row {number} completion {j} does not fit the model's context of {context} "
                                 f"tokens after its {len(prompt_ids)}-token prompt; shorten it or set rm.overflow=truncate")
            cut_completions += cut_c
            completions.append(ids)
        cut_prompts += cut
        ranked.append(RankedPrompt(prompt_ids, completions, None))
    if cut_prompts or cut_completions:
        log.warning("%s: truncated %d prompts (left, to %d tokens) and %d completions (right, to the context of %d)",
                    where, cut_prompts, max_prompt_tokens, cut_completions, context)
    return ranked


def ranked_length(ranked: RankedPrompt) -> int:
    """Tokens of a ranked prompt's longest sequence, the length its batch is padded to."""
    return len(ranked.prompt_ids) + max(len(c) for c in ranked.completions)


def ranked_batch(batch: Sequence[RankedPrompt], pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Flatten prompts x completions into one right-padded batch.

    Returns input_ids and attention_mask (B*K_max, T) and a (B, K_max) mask of real completions.
    Prompts with fewer completions are filled with a copy of their last one, masked out.
    """
    k_max = max(len(r.completions) for r in batch)
    seqs, valid = [], torch.zeros(len(batch), k_max, dtype=torch.bool)
    for b, r in enumerate(batch):
        for j in range(k_max):
            seqs.append(r.prompt_ids + r.completions[min(j, len(r.completions) - 1)])
        valid[b, : len(r.completions)] = True
    ids, mask = pad_sequences(seqs, pad_id, side="right")
    return ids, mask, valid


def ranked_tiers(batch: Sequence[RankedPrompt]) -> torch.Tensor:
    """(B, K_max) tiers in rank order; a prompt without ties, and every padding slot, gets its own tier."""
    k_max = max(len(r.completions) for r in batch)
    tiers = torch.arange(k_max).repeat(len(batch), 1) + k_max  # distinct from any real tier
    for b, r in enumerate(batch):
        tiers[b, : len(r.completions)] = torch.tensor(r.tiers if r.tiers is not None else range(len(r.completions)))
    return tiers


def batch_rewards(rm: RewardModel, batch: Sequence[RankedPrompt], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Unnormalised rewards (B, K_max) in rank order, each completion forwarded once, and the valid mask."""
    ids, mask, valid = ranked_batch(batch, pad_id)
    device = next(rm.parameters()).device
    rewards = rm(ids.to(device), mask.to(device))  # (B*K_max,)
    return rewards.view(len(batch), -1), valid.to(device)


def pair_agreement(rewards: Sequence[float], gold: Sequence[float] | None, tol: float = 1e-9) -> dict[str, float]:
    """Pair counts for one prompt whose completions are in the labeler's order (best first).

    `hits` / `pairs`: reward order agrees with the label (ties count half). On the `distinct` pairs,
    those with different gold scores, also: `distinct_hits` (reward vs label), `gold_hits` (reward vs
    the noiseless gold order) and `oracle_hits` (gold vs label, what a perfect reward model scores).
    Without gold scores there are no distinct pairs.
    """
    counts = dict.fromkeys(("hits", "pairs", "distinct_hits", "distinct", "gold_hits", "oracle_hits"), 0.0)
    for i, j in itertools.combinations(range(len(rewards)), 2):
        hit = 1.0 if rewards[i] > rewards[j] else 0.5 if rewards[i] == rewards[j] else 0.0
        counts["hits"] += hit
        counts["pairs"] += 1
        if gold is not None and abs(gold[i] - gold[j]) > tol:
            counts["distinct_hits"] += hit
            counts["distinct"] += 1
            counts["gold_hits"] += hit if gold[i] > gold[j] else 1.0 - hit
            counts["oracle_hits"] += float(gold[i] > gold[j])
    return counts


@torch.no_grad()
def evaluate_rankings(rm: RewardModel, data: Sequence[RankedPrompt], pad_id: int, batch_size: int) -> dict[str, float]:
    """Reward-model agreement with the labeler's rankings and the gold scores, and reward statistics.

    `accuracy`: all labelled pairs. `distinct_accuracy`: pairs whose gold scores differ, the pairs on
    which the labeler's agreement ceiling is defined (tied pairs are ordered at random). `gold_accuracy`:
    agreement with the noiseless gold order. `oracle_accuracy`: the gold scores' own agreement with
    the labels, the empirical ceiling of `distinct_accuracy`. For each group of the prompts (their
    `group`, when set) the same on its own pairs, as `<key>/<group>`, with `distinct/<group>`, its
    number of pairs of distinct gold score: which kinds of request the reward model judges well.
    """
    was_training = rm.training
    rm.eval()
    data = sorted(data, key=ranked_length)  # less padding; every statistic below is order-free
    totals: dict[str, dict[str, float]] = {}  # "" for all prompts, then one entry per group
    all_rewards = []
    for i in range(0, len(data), batch_size):
        batch = data[i : i + batch_size]
        rewards, _ = batch_rewards(rm, batch, pad_id)  # (B, K_max)
        for b, r in enumerate(batch):
            row = rewards[b, : len(r.completions)].cpu()
            all_rewards.append(row)
            counts = pair_agreement(row.tolist(), r.gold)
            for name in {"", r.group}:
                sums = totals.setdefault(name, dict.fromkeys(counts, 0.0))
                for key, value in counts.items():
                    sums[key] += value
    rm.train(was_training)
    flat = torch.cat(all_rewards)
    stats = {**_accuracies(totals.pop("")), "mean": float(flat.mean()),
             "std": float(flat.std()) if len(flat) > 1 else 0.0}
    for name, counts in sorted(totals.items()):
        stats |= {f"{key}/{name}": value for key, value in _accuracies(counts).items()}
        stats[f"distinct/{name}"] = counts["distinct"]
    return stats


def _accuracies(totals: dict[str, float]) -> dict[str, float]:
    """The accuracies of `evaluate_rankings` from summed `pair_agreement` counts; NaN on pairs there are none of."""
    distinct = totals["distinct"] or math.nan
    return {
        "accuracy": totals["hits"] / (totals["pairs"] or math.nan),
        "distinct_accuracy": totals["distinct_hits"] / distinct,
        "gold_accuracy": totals["gold_hits"] / distinct,
        "oracle_accuracy": totals["oracle_hits"] / distinct,
        "distinct_fraction": totals["distinct"] / (totals["pairs"] or math.nan),
    }


def train_reward_model(
    rm: RewardModel,
    tokenizer: PreTrainedTokenizerBase,
    train: Sequence[RankedPrompt],
    val: Sequence[RankedPrompt],
    cfg: RewardConfig,
    out_dir: str,
    seed: int = 0,
    metadata: dict | None = None,
) -> RewardResult:
    """Train `rm` on ranked prompts, set its offset so SFT samples score 0 on average (and, with
    ``cfg.normalize_std``, its scale so that they spread with standard deviation 1), and save it.

    The offset is the negated mean reward over the completions of (up to OFFSET_PROMPTS) training
    prompts, samples of the SFT policy; the scale is 1 / their (sample) standard deviation.
    """
    if not train or not val:
        raise AlignError(f"reward model needs train and validation rankings; got {len(train)} and {len(val)}")
    pad_id = tokenizer.pad_token_id
    steps_per_epoch = math.ceil(len(train) / cfg.batch_size)
    total_steps = cfg.epochs * steps_per_epoch
    optimizer, schedule = make_optimizer(rm, cfg.lr, cfg.weight_decay, total_steps, 0, cfg.min_lr_ratio)
    writer = tensorboard_writer(out_dir)
    rng = random.Random(seed)
    ks = sorted({len(r.completions) for r in train})
    log.info("reward model: %d train / %d val prompts, K=%s, %d steps", len(train), len(val),
             ks[0] if len(ks) == 1 else f"{ks[0]}..{ks[-1]}", total_steps)
    start, step, train_loss = time.time(), 0, math.nan
    rm.train()
    for _ in range(cfg.epochs):
        for prompts, _ in shuffled_batches(train, cfg.batch_size, rng, length=ranked_length):
            rewards, valid = batch_rewards(rm, prompts, pad_id)
            loss, stats = ranking_loss(rewards, mask=valid, tiers=ranked_tiers(prompts).to(rewards.device))
            loss.backward()
            grad_norm = optimizer_step(rm, optimizer, schedule, cfg.grad_clip)
            step, train_loss = step + 1, loss.item()
            writer.add_scalar("rm/loss", train_loss, step)
            writer.add_scalar("rm/accuracy", float(stats["accuracy"]), step)
            writer.add_scalar("rm/margin", float(stats["margin"]), step)
            writer.add_scalar("rm/grad_norm", grad_norm, step)
            writer.add_scalar("charts/learning_rate", schedule.get_last_lr()[0], step)
    val_stats = evaluate_rankings(rm, val, pad_id, cfg.batch_size)
    train_stats = evaluate_rankings(rm, train[:OFFSET_PROMPTS], pad_id, cfg.batch_size)
    rm.offset = -train_stats["mean"]
    if cfg.normalize_std:
        if not train_stats["std"] > 0:
            raise AlignError(f"rm.normalize_std=true: the reward model scores its {len(train[:OFFSET_PROMPTS])} "
                             f"training prompts' completions with standard deviation {train_stats['std']}; "
                             "there is no spread to scale to 1")
        rm.scale = 1.0 / train_stats["std"]
    for k, v in val_stats.items():
        writer.add_scalar(f"val/{k}", v, step)
    writer.close()
    if val[0].gold is None:
        log.info("reward model: val accuracy %.3f on %d held-out rankings; offset %.3f", val_stats["accuracy"],
                 len(val), rm.offset)
    else:
        log.info(
            "reward model: val accuracy %.3f on all pairs, %.3f on pairs of distinct gold score (oracle %.3f),"
            " %.3f against gold; offset %.3f", val_stats["accuracy"], val_stats["distinct_accuracy"],
            val_stats["oracle_accuracy"], val_stats["gold_accuracy"], rm.offset,
        )
    rm.eval()
    rm.save_pretrained(out_dir, tokenizer, k=cfg.k, val=val_stats, reward_std=train_stats["std"], **(metadata or {}))
    return RewardResult(out_dir, step, train_loss, val_stats, rm.offset, train_stats["std"], time.time() - start,
                        rm.scale)
