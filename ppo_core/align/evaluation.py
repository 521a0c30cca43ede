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
import os
from collections.abc import Sequence

import torch
from torch import Tensor

from agents.lm import LMActorCritic
from envs.text_bandit import TextBanditVecEnv
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


def win_rate(wins_over: Tensor, against: Tensor) -> float:
    """Fraction of prompts where ``wins_over`` beats ``against`` (both (M,) gold totals), ties half."""
    return float(((wins_over > against).double() + 0.5 * (wins_over == against).double()).mean())


@torch.no_grad()
def answer_all(policy: LMActorCritic, env: TextBanditVecEnv, count: int, sample: bool, seed: int) -> Answers:
    """Greedy completions (and, with ``sample``, one sampled completion each, for the KL and the sampled
    gold totals) of the env's first ``count`` prompts, served in order ``env.num_envs`` at a time. The
    sampled sweep seeds torch's generators with ``seed``, so it is reproducible."""

    def sweep(deterministic: bool) -> tuple[list[dict], list[str]]:
        rows, texts = [], []
        obs = env.reset(seed=seed)
        while len(texts) < count:
            step = policy.act(obs, deterministic=deterministic)
            result = env.step(policy.env_action(step))
            keep = min(env.num_envs, count - len(texts))
            rows.append({"gold": result.info["gold"][:keep], "scores": result.info["scores"][:keep],
                         "kl": result.info["kl_estimates"]["kl_exact"][:keep]})
            completions = [tokens[mask] for tokens, mask in zip(step.action[:keep].cpu(), step.mask[:keep].cpu())]
            texts += env.tokenizer.batch_decode(completions, skip_special_tokens=True)
            obs = result.obs
        env.pop_metrics(), env.pop_episode_stats()
        return rows, texts

    rows, texts = sweep(deterministic=True)
    kl = sampled_gold = None
    if sample:
        torch.manual_seed(seed)
        sampled = sweep(deterministic=False)[0]
        kl = torch.cat([row["kl"] for row in sampled]).cpu()
        sampled_gold = torch.cat([row["gold"] for row in sampled]).cpu()
    return Answers(texts, torch.cat([row["gold"] for row in rows]).cpu(),
                   torch.cat([row["scores"] for row in rows]).cpu(), kl, sampled_gold)


def heldout_blocks(corpus: Sequence[str], tokenizer, val_fraction: float, block_size: int) -> Tensor:
    """The corpus documents the pretrain stage held out, packed as it packed them: (B, T)."""
    return pack_blocks(tokenizer, split_documents(corpus, val_fraction)[1], block_size)


def pretraining_loss(model, blocks: Tensor, batch_size: int = 32) -> float:
    """Mean next-token NLL of ``blocks`` under ``model``."""
    training = model.training
    loss = block_loss(model, blocks, batch_size)
    model.train(training)
    return loss


def comparison_table(kinds: Sequence[str], policy: Answers, sft: Answers, base: Answers,
                     best_gold: Tensor | None = None) -> list[dict]:
    """One row per task kind and one for all prompts: win rates, gold totals, RM score and KL.

    ``best_gold`` (M,): gold totals of the best completions known (the labeler's ideal answers); with
    it, ``best_win_vs_sft`` is their win rate against SFT, the ceiling of ``win_vs_sft``. Where both
    the policy and SFT were sampled, the ``*_sampled`` columns compare their samples.
    """
    sampled = policy.sampled_gold is not None and sft.sampled_gold is not None
    rows = []
    for kind in [*sorted(set(kinds)), "all"]:
        pick = torch.tensor([kind in ("all", k) for k in kinds])
        row = {
            "kind": kind,
            "n": int(pick.sum()),
            "win_vs_sft": win_rate(policy.gold[pick], sft.gold[pick]),
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
            if best_gold is not None:
                row["best_win_vs_sft_sampled"] = win_rate(best_gold[pick], sft.sampled_gold[pick])
            row["gold_policy_sampled"] = float(policy.sampled_gold[pick].mean())
            row["gold_sft_sampled"] = float(sft.sampled_gold[pick].mean())
        if policy.kl is not None:
            row["kl"] = float(policy.kl[pick].mean())
        rows.append(row)
    return rows


COLUMNS = ("kind", "n", "win_vs_sft", "best_win_vs_sft", "win_vs_base", "sft_win_vs_base", "gold_policy", "gold_sft",
           "gold_base", "rm_score", "rm_score_sft", "win_vs_sft_sampled", "best_win_vs_sft_sampled",
           "gold_policy_sampled", "gold_sft_sampled", "kl")


COLUMN_MEANINGS = {
    "kind": "task kind of the held-out prompts (all: every prompt)",
    "n": "prompts of that kind",
    "win_vs_sft": "share of prompts where the RL policy's greedy answer has a higher gold score than SFT's (ties count half)",
    "best_win_vs_sft": "the same for the labeler's ideal answers: the ceiling of win_vs_sft",
    "win_vs_base": "the RL policy against the pretrained base model",
    "sft_win_vs_base": "SFT against the base model",
    "gold_policy": "mean gold score (the world's true quality) of the policy's answers; gold_sft, gold_base likewise",
    "rm_score": "mean reward-model score of the policy's answers; rm_score_sft of SFT's",
    "win_vs_sft_sampled": "*_sampled: the same comparisons on answers sampled at the training temperature",
    "kl": "mean KL(π‖π_SFT) per answer, summed over its tokens",
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


def markdown_table(rows: list[dict], extra: dict[str, float] | None = None) -> str:
    """The comparison as a markdown table, with ``extra`` (e.g. pretraining losses) below it."""
    columns = [c for c in COLUMNS if c in rows[0]]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = [f"{row[c]:.3f}" if isinstance(row[c], float) else str(row[c]) for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
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


def write_report(out_dir: str, rows: list[dict], extra: dict[str, float], samples: str) -> str:
    """``eval.json`` and ``eval.md`` in ``out_dir``; returns the markdown."""
    os.makedirs(out_dir, exist_ok=True)
    text = markdown_table(rows, extra)
    with open(os.path.join(out_dir, "eval.json"), "w") as f:
        json.dump({"rows": rows, **extra}, f, indent=2)
    with open(os.path.join(out_dir, "eval.md"), "w") as f:
        f.write(text + "\n\n## Samples (gold totals in brackets)\n\n" + samples + "\n")
    return text
