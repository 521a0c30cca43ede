"""Held-out evaluation of an aligned policy against π_SFT and the base model (Ouyang et al. 2022, §4).

On the prompts of one world split, per task kind and overall:

- gold win rate of the policy against SFT and against base: the gold labeler's noiseless totals of the
  two models' completions of one prompt are compared; a higher total wins, equal totals count half
  (noise-free, so the rate measures the models, not the labeler's disagreement);
- the best win rate against SFT that any policy could reach: the gold labeler's ideal answers (the
  gold maximum; not its SFT demonstrations, which carry its habits) against SFT's completions. Where
  SFT already reaches the maximum, even a perfect policy only ties, so this caps ``win_vs_sft`` below 1;
- mean gold total of each model and mean proxy reward-model score of the policy;
- KL(π‖π_SFT) per completion: the exact per-token KL over the vocabulary, summed over completions
  SAMPLED from the policy at the env temperature (greedy completions would give a biased, possibly
  negative, sample KL);
- pretraining loss: mean next-token NLL on the corpus documents the pretrain stage held out, the
  "alignment tax" (InstructGPT's PPO-ptx exists to keep it low).

Completions for the win rates and scores are greedy, so an evaluation is deterministic. The win rates
are also reported for completions SAMPLED at the env temperature (``*_sampled``, one sample per prompt
and model, seeded), the distribution RL actually optimises: a policy can improve its samples while its
greedy answers, often already right, stay the same (Rafailov et al. 2023 report win rates over
sampling temperatures for the same reason).

Everything runs through the text bandit env (``envs/text_bandit.py``): its reward model, frozen π_SFT
and gold labeler score the completions exactly as they scored training.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
from collections.abc import Sequence

import torch
from torch import Tensor

from agents.lm import LMActorCritic
from envs.text_bandit import TextBanditVecEnv
from envs.text_encoding import pad_sequences
from ppo_core.align.data import pack_blocks
from ppo_core.align.pretrain import block_loss, split_documents


@dataclasses.dataclass
class Answers:
    """One model's completions of every evaluation prompt, in prompt order."""

    texts: list[str]
    gold: Tensor  # (M,) gold totals of greedy completions
    scores: Tensor  # (M,) reward-model scores of greedy completions
    kl: Tensor | None  # (M,) exact KL(π‖π_SFT) of sampled completions; None when not sampled
    sampled_gold: Tensor | None = None  # (M,) gold totals of sampled completions; None when not sampled
    sampled_scores: Tensor | None = None  # (M,) reward-model scores of the sampled completions


def outcomes(wins_over: Tensor, against: Tensor) -> Tensor:
    """Per prompt (M,): 1 where ``wins_over``'s gold total beats ``against``'s, ½ on a tie, else 0."""
    return (wins_over > against).double() + 0.5 * (wins_over == against).double()


def win_rate(wins_over: Tensor, against: Tensor) -> float:
    """Fraction of prompts where ``wins_over`` beats ``against`` (both (M,) gold totals), ties half."""
    return float(outcomes(wins_over, against).mean())


BOOTSTRAP_DRAWS = 2000


def bootstrap_interval(values: Tensor, seed: int, level: float = 0.95, draws: int = BOOTSTRAP_DRAWS) -> list[float]:
    """The percentile bootstrap interval [lo, hi] of the mean of ``values`` (M,): the prompts resampled
    with replacement ``draws`` times (Efron & Tibshirani 1993, §13.3), reproducible from ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    resampled = values.double()[torch.randint(len(values), (draws, len(values)), generator=generator)].mean(1)
    tails = torch.tensor([(1 - level) / 2, (1 + level) / 2], dtype=torch.float64)
    return [float(q) for q in torch.quantile(resampled, tails)]


@dataclasses.dataclass
class Sweep:
    """One completion of each of the first M prompts, in prompt order."""

    texts: list[str]
    gold: Tensor  # (M,) gold totals
    scores: Tensor  # (M,) reward-model scores
    kl: Tensor  # (M,) exact KL(π‖π_SFT) summed over the completion's tokens


@torch.no_grad()
def sweep(policy: LMActorCritic, env: TextBanditVecEnv, count: int, deterministic: bool, seed: int) -> Sweep:
    """Completions of the env's first ``count`` prompts, served in order ``env.num_envs`` at a time:
    greedy, or sampled at the env temperature from torch's generators seeded with ``seed``."""
    if not deterministic:
        torch.manual_seed(seed)
    rows, texts = [], []
    obs = env.reset(seed=seed)
    while len(texts) < count:
        step = policy.act(obs, deterministic=deterministic)
        result = env.step(policy.env_action(step))
        keep = min(env.num_envs, count - len(texts))
        rows.append((result.info["gold"][:keep], result.info["scores"][:keep],
                     result.info["kl_estimates"]["kl_exact"][:keep]))
        completions = [tokens[mask] for tokens, mask in zip(step.action[:keep].cpu(), step.mask[:keep].cpu())]
        texts += env.tokenizer.batch_decode(completions, skip_special_tokens=True)
        obs = result.obs
    env.pop_metrics(), env.pop_episode_stats()
    gold, scores, kl = (torch.cat(column).cpu() for column in zip(*rows))
    return Sweep(texts, gold, scores, kl)


def answer_all(policy: LMActorCritic, env: TextBanditVecEnv, count: int, sample: bool, seed: int) -> Answers:
    """Greedy completions (and, with ``sample``, one sampled completion each, for the KL and the sampled
    gold totals) of the env's first ``count`` prompts; the sampled sweep is seeded with ``seed``."""
    greedy = sweep(policy, env, count, deterministic=True, seed=seed)
    sampled = sweep(policy, env, count, deterministic=False, seed=seed) if sample else None
    return Answers(greedy.texts, greedy.gold, greedy.scores, sampled.kl if sampled else None,
                   sampled.gold if sampled else None, sampled.scores if sampled else None)


GAP_BINS = ((0.0, 0.1), (0.1, 0.3), (0.3, math.inf))
"""Bins of the gold gap |gold_a − gold_b| of a pair, for the reward model's accuracy by gap size."""


def reward_model_agreement(scores_a: Tensor, gold_a: Tensor, scores_b: Tensor, gold_b: Tensor,
                           tie: float = 0.0) -> dict[str, float]:
    """How often the reward model orders pairs (a_i, b_i) of completions of one prompt (each (M,)) as the
    gold labeler does, over the pairs of distinct gold total, in all and by size of the gold gap
    (``GAP_BINS``); ``pairs*``: how many pairs each figure counts; a pair the scores tie counts ``tie``.
    Where the pairs come from the RL policy's samples this is the reward model's accuracy where RL
    pushes it (over-optimisation)."""
    gap = (gold_a - gold_b).abs()
    distinct = gap > 1e-6
    agree = ((scores_a - scores_b) * (gold_a - gold_b) > 0).double()
    agree = torch.where((scores_a - scores_b).abs() <= 1e-9, tie, agree)
    result = {"accuracy": float(agree[distinct].mean()) if distinct.any() else math.nan,
              "pairs": int(distinct.sum())}
    for lo, hi in GAP_BINS:
        inside = distinct & (gap > lo) & (gap <= hi)
        name = f"{lo:g}-{hi:g}" if hi != math.inf else f">{lo:g}"
        result[f"accuracy_gap_{name}"] = float(agree[inside].mean()) if inside.any() else math.nan
        result[f"pairs_gap_{name}"] = int(inside.sum())
    return result


def knowledge_blind_agreement(labeler, prompts: Sequence, texts_a: Sequence[str], gold_a: Tensor,
                              texts_b: Sequence[str], gold_b: Tensor) -> dict[str, float]:
    """How often a judge who knows only what each prompt tells (``GoldLabeler.score(knows_world=False)``)
    orders pairs of answers (a_i, b_i) as gold does, ties half, over pairs of distinct gold total, by gold
    gap: the part of gold's judgement a model can see without the world's facts (the world's learnability)."""
    from envs.language_world import clean_completion

    def blind(texts: Sequence[str]) -> Tensor:
        return torch.tensor([labeler.score(p, clean_completion(t), knows_world=False).total
                             for p, t in zip(prompts, texts)], dtype=torch.float64)

    return reward_model_agreement(blind(texts_a), gold_a.double(), blind(texts_b), gold_b.double(), tie=0.5)


def best_of_n_kl(n: int) -> float:
    """KL(π_BoN‖π) of best-of-n sampling, log n − (n − 1)/n (Gao et al. 2023, after Stiennon et al. 2020):
    exact when the n samples are distinct, an upper bound otherwise (Beirami et al. 2024)."""
    return math.log(n) - (n - 1) / n


def best_of_n_table(scores: Tensor, gold: Tensor, against: Tensor, seed: int) -> list[dict]:
    """Best-of-n from a pool of samples, for n = 1, 2, 4, ... up to the pool's size.

    ``scores``, ``gold`` (S, M): reward-model scores and gold totals of S samples per prompt; the first
    n samples are the candidates of best-of-n. Per n: the pick by the reward model (the proxy BoN that RL
    competes with) and by gold (an oracle selection), their mean gold and RM scores, and their win rate
    against ``against`` (M,), another model's sampled gold totals, with a bootstrap interval."""
    rows = []
    prompts = torch.arange(gold.shape[1])
    n = 1
    while n <= gold.shape[0]:
        by_rm = scores[:n].argmax(0)  # (M,) the candidate the reward model prefers
        picked_gold, picked_score = gold[:n][by_rm, prompts], scores[:n][by_rm, prompts]
        oracle = gold[:n].max(0).values
        won = outcomes(picked_gold, against)
        rows.append({"n": n, "kl_bon": best_of_n_kl(n), "gold": float(picked_gold.mean()),
                     "rm_score": float(picked_score.mean()), "win_vs_sft_sampled": float(won.mean()),
                     "win_vs_sft_sampled_ci": bootstrap_interval(won, seed),
                     "gold_oracle": float(oracle.mean()), "win_oracle_vs_sft_sampled": win_rate(oracle, against)})
        n *= 2
    return rows


def sample_pool(policy: LMActorCritic, env: TextBanditVecEnv, count: int, size: int, seed: int) -> tuple[Tensor, Tensor]:
    """``size`` sampled completions of each of the first ``count`` prompts, the i-th seeded ``seed + i``:
    their reward-model scores and gold totals, each (size, M)."""
    sweeps = [sweep(policy, env, count, deterministic=False, seed=seed + i) for i in range(size)]
    return torch.stack([s.scores for s in sweeps]), torch.stack([s.gold for s in sweeps])


@torch.no_grad()
def sentence_log_likelihoods(model, tokenizer, texts: Sequence[str], batch_size: int = 64) -> Tensor:
    """log p(text) under ``model`` of each text (its tokens after the first), (len(texts),) float64."""
    device = next(model.parameters()).device
    training = model.training
    model.eval()
    totals = []
    for start in range(0, len(texts), batch_size):
        ids, mask = pad_sequences([tokenizer(t)["input_ids"] for t in texts[start:start + batch_size]],
                                  tokenizer.pad_token_id, "right")  # (B, T)
        ids, mask = ids.to(device), mask.to(device)
        log_probs = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits[:, :-1].double(), -1)
        picked = log_probs.gather(-1, ids[:, 1:, None]).squeeze(-1)  # (B, T-1)
        totals.append((picked * mask[:, 1:]).sum(1).cpu())
    model.train(training)
    return torch.cat(totals)


def fact_recall(model, tokenizer, world, count: int, seed: int, choices: int = 4) -> float:
    """What the model knows of the world's facts, the capability an alignment tax can take: the share of
    ``count`` facts (drawn with ``seed``) whose statement, with the true value, the model finds more
    likely than with each of ``choices`` − 1 other values of the attribute (chance: 1 / ``choices``).
    The sentences are the corpus's own (render.statement), so a base model that learnt a fact recalls it."""
    from envs.language_world.lexicon import ATTRIBUTES
    from envs.language_world.render import statement

    rng = random.Random(f"fact-recall:{seed}")
    facts = [(e, a) for e in world.entities for a in ATTRIBUTES[e.kind]
             if e.get(a) and len(set(world.values(e.kind, a)) - {e.get(a)}) >= choices - 1]
    texts = []
    for entity, attribute in rng.sample(facts, min(count, len(facts))):
        truth = entity.get(attribute)
        others = rng.sample(sorted(set(world.values(entity.kind, attribute)) - {truth}), choices - 1)
        wording = random.Random(rng.random())  # one wording for every candidate value
        state = wording.getstate()
        for value in (truth, *others):
            wording.setstate(state)
            texts.append(statement(world, entity.name, entity.kind, attribute, value, wording))
    scores = sentence_log_likelihoods(model, tokenizer, texts).view(-1, choices)  # (facts, choices), truth first
    return float((scores[:, 0:1] > scores[:, 1:]).all(1).double().mean())


def heldout_blocks(corpus: Sequence[str], tokenizer, val_fraction: float, block_size: int) -> Tensor:
    """The corpus documents the pretrain stage held out, packed as it packed them: (B, T)."""
    return pack_blocks(tokenizer, split_documents(corpus, val_fraction)[1], block_size)


def pretraining_loss(model, blocks: Tensor, batch_size: int = 32) -> float:
    """Mean next-token NLL of ``blocks`` under ``model``."""
    training = model.training
    loss = block_loss(model, blocks, batch_size)
    model.train(training)
    return loss


@dataclasses.dataclass
class Habits:
    """Which greedy answers show the labeler's planted habit (envs/language_world: ``shows_habit``)."""

    applies: Tensor  # (M,) bool: the prompt's kind has a habit to show
    policy: Tensor  # (M,) bool: the policy's answer shows it
    sft: Tensor  # (M,) bool: SFT's answer shows it


def habit_rows(pick: Tensor, habits: Habits, won: Tensor) -> dict[str, float]:
    """For the prompts ``pick`` (M,) bool: how often each model's answer shows the habit where one
    applies, and the part of win_vs_sft − ½ won on prompts where the two answers differ in it (the
    habit fixed, or taken up); the rest of the win is capability."""
    applies = habits.applies & pick
    count = int(applies.sum())
    differ = applies & (habits.policy != habits.sft)
    return {"habit_policy": float(habits.policy[applies].double().mean()) if count else math.nan,
            "habit_sft": float(habits.sft[applies].double().mean()) if count else math.nan,
            "win_from_habits": float((won[differ] - 0.5).sum()) / max(int(pick.sum()), 1)}


def comparison_table(kinds: Sequence[str], policy: Answers, sft: Answers, base: Answers,
                     best_gold: Tensor | None = None, seed: int = 0, habits: Habits | None = None) -> list[dict]:
    """One row per task kind and one for all prompts: win rates (against SFT with a 95% bootstrap
    interval over the prompts, seeded ``seed``), gold totals, RM score and KL; with ``habits``, the
    split of the win into habits fixed and the rest (``habit_rows``).

    ``best_gold`` (M,): gold totals of the best completions known (the labeler's ideal answers); with
    it, ``best_win_vs_sft`` is their win rate against SFT, the ceiling of ``win_vs_sft``. Where both
    the policy and SFT were sampled, the ``*_sampled`` columns compare their samples.
    """
    sampled = policy.sampled_gold is not None and sft.sampled_gold is not None
    won = outcomes(policy.gold, sft.gold)  # (M,)
    rows = []
    for kind in [*sorted(set(kinds)), "all"]:
        pick = torch.tensor([kind in ("all", k) for k in kinds])
        row = {
            "kind": kind,
            "n": int(pick.sum()),
            "win_vs_sft": float(won[pick].mean()),
            "win_vs_sft_ci": bootstrap_interval(won[pick], seed),
            **({"best_win_vs_sft": win_rate(best_gold[pick], sft.gold[pick])} if best_gold is not None else {}),
            "win_vs_base": win_rate(policy.gold[pick], base.gold[pick]),
            "sft_win_vs_base": win_rate(sft.gold[pick], base.gold[pick]),
            "gold_policy": float(policy.gold[pick].mean()),
            "gold_sft": float(sft.gold[pick].mean()),
            "gold_base": float(base.gold[pick].mean()),
            "rm_score": float(policy.scores[pick].mean()),
            "rm_score_sft": float(sft.scores[pick].mean()),
        }
        if sampled:
            row["win_vs_sft_sampled"] = win_rate(policy.sampled_gold[pick], sft.sampled_gold[pick])
            row["win_vs_sft_sampled_ci"] = bootstrap_interval(
                outcomes(policy.sampled_gold[pick], sft.sampled_gold[pick]), seed)
            if best_gold is not None:
                row["best_win_vs_sft_sampled"] = win_rate(best_gold[pick], sft.sampled_gold[pick])
            row["gold_policy_sampled"] = float(policy.sampled_gold[pick].mean())
            row["gold_sft_sampled"] = float(sft.sampled_gold[pick].mean())
        if policy.kl is not None:
            row["kl"] = float(policy.kl[pick].mean())
        if habits is not None:
            row.update(habit_rows(pick, habits, won))
        rows.append(row)
    return rows


COLUMNS = ("kind", "n", "win_vs_sft", "win_vs_sft_ci", "best_win_vs_sft", "win_vs_base", "sft_win_vs_base",
           "gold_policy", "gold_sft", "gold_base", "rm_score", "rm_score_sft", "win_vs_sft_sampled",
           "win_vs_sft_sampled_ci", "best_win_vs_sft_sampled", "gold_policy_sampled", "gold_sft_sampled", "kl",
           "habit_sft", "habit_policy", "win_from_habits")


COLUMN_MEANINGS = {
    "kind": "task kind of the held-out prompts (all: every prompt)",
    "n": "prompts of that kind",
    "win_vs_sft": "share of prompts where the RL policy's greedy answer has a higher gold score than SFT's (ties count half)",
    "win_vs_sft_ci": "*_ci: 95% percentile bootstrap interval of the win rate over the prompts",
    "best_win_vs_sft": "the same for the labeler's ideal answers: the ceiling of win_vs_sft",
    "win_vs_base": "the RL policy against the pretrained base model",
    "sft_win_vs_base": "SFT against the base model",
    "gold_policy": "mean gold score (the world's true quality) of the policy's answers; gold_sft, gold_base likewise",
    "rm_score": "mean reward-model score of the policy's answers; rm_score_sft of SFT's",
    "win_vs_sft_sampled": "*_sampled: the same comparisons on answers sampled at the training temperature",
    "kl": "mean KL(π‖π_SFT) per answer, summed over its tokens",
    "habit_sft": "share of the answers showing the labeler's planted habit, where the kind has one; habit_policy likewise",
    "win_from_habits": "the part of win_vs_sft − 0.5 won on prompts where the two answers differ in the habit "
                       "(the rest is capability)",
}
"""What each column of the comparison table means, printed under it."""


def legend(rows: list[dict], smoke: bool = False) -> str:
    """The meaning of the table's columns and, for a smoke run, why its numbers say little."""
    present = [c for c in COLUMN_MEANINGS if c in rows[0]]
    lines = ["", "Columns:", *(f"  {c}: {COLUMN_MEANINGS[c]}" for c in present)]
    if smoke:
        lines += ["", "size=tiny is a smoke run: a ~50k-parameter model trained for seconds, so win rates near "
                  "0.500 and flat gold scores only say that every stage ran. size=small (the default) is the demo."]
    return "\n".join(lines)


def table_cell(value) -> str:
    """A table cell: floats to 3 places, an interval as [lo, hi]."""
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, list):
        return "[" + ", ".join(f"{v:.3f}" for v in value) + "]"
    return str(value)


def markdown_table(rows: list[dict], extra: dict[str, float] | None = None, columns: Sequence[str] = COLUMNS) -> str:
    """Rows as a markdown table of ``columns`` (those present), with ``extra`` (e.g. pretraining losses) below it."""
    columns = [c for c in columns if c in rows[0]]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(table_cell(row[c]) for c in columns) + " |")
    for key, value in (extra or {}).items():
        lines.append(f"\n{key}: {value:.3f}")
    return "\n".join(lines)


def samples_table(prompts: Sequence[str], kinds: Sequence[str], policy: Answers, sft: Answers, per_kind: int) -> str:
    """A few prompts per kind with the SFT and policy completions and their gold totals (markdown)."""
    lines = ["| kind | prompt | SFT | policy |", "|---|---|---|---|"]
    shown: dict[str, int] = {}
    for i, kind in enumerate(kinds):
        if shown.get(kind, 0) >= per_kind:
            continue
        shown[kind] = shown.get(kind, 0) + 1

        def cell(text: str) -> str:
            return text.replace("|", "\\|").replace("\n", " ")

        lines.append(f"| {kind} | {cell(prompts[i])} | {cell(sft.texts[i])} ({sft.gold[i]:.2f}) | "
                     f"{cell(policy.texts[i])} ({policy.gold[i]:.2f}) |")
    return "\n".join(lines)


BEST_OF_N_COLUMNS = ("n", "kl_bon", "gold", "rm_score", "win_vs_sft_sampled", "win_vs_sft_sampled_ci", "gold_oracle",
                     "win_oracle_vs_sft_sampled")


def write_report(out_dir: str, rows: list[dict], extra: dict[str, float], samples: str,
                 best_of_n: list[dict] | None = None, reward_model: dict[str, dict] | None = None,
                 learnability: dict[str, dict] | None = None) -> str:
    """``eval.json`` and ``eval.md`` in ``out_dir``; returns the markdown (with the best-of-n baseline's
    table, the reward model's agreement with gold on the evaluated samples and the knowledge-blind
    judge's, where given)."""
    os.makedirs(out_dir, exist_ok=True)
    text = markdown_table(rows, extra)
    if best_of_n:
        text += ("\n\nBest-of-n from SFT's samples (picked by the reward model; gold_oracle: picked by gold), "
                 "at KL(π_BoN‖π_SFT) = kl_bon:\n\n" + markdown_table(best_of_n, columns=BEST_OF_N_COLUMNS))
    if reward_model:
        table = [{"pairs of samples": name, **figures} for name, figures in reward_model.items()]
        text += ("\n\nThe reward model against gold on pairs of sampled completions of one prompt (distinct gold "
                 "totals; by gold gap):\n\n" + markdown_table(table, columns=list(table[0])))
    if learnability:
        table = [{"pairs of greedy answers": name, **figures} for name, figures in learnability.items()]
        text += ("\n\nA judge who knows only what the prompt tells against gold on the pairs the win rates "
                 "compare (distinct gold totals, ties half; by gold gap):\n\n"
                 + markdown_table(table, columns=list(table[0])))
    with open(os.path.join(out_dir, "eval.json"), "w") as f:
        json.dump({"rows": rows, **extra, **({"best_of_n": best_of_n} if best_of_n else {}),
                   **({"reward_model": reward_model} if reward_model else {}),
                   **({"knowledge_blind_judge": learnability} if learnability else {})}, f, indent=2)
    with open(os.path.join(out_dir, "eval.md"), "w") as f:
        f.write(text + "\n\n## Samples (gold totals in brackets)\n\n" + samples + "\n")
    return text
