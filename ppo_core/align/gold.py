"""Gold-labeler evaluation of a causal LM on held-out prompts, by task kind."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ppo_core.align.data import encode_prompt
from ppo_core.align.generation import generate_completions
from ppo_core.align.world import WorldData

COMPONENTS = ("helpful", "honest", "harmless", "total")


@dataclass
class GoldReport:
    """Mean gold score components per task kind (and "all"), with the completions scored."""

    means: dict[str, dict[str, float]]
    counts: dict[str, int]
    completions: list[str]


def summarize(kinds: Sequence[str], scores: Sequence[object]) -> tuple[dict[str, dict[str, float]], dict[str, int]]:
    """Mean of each score component per kind and over all prompts."""
    groups: dict[str, list[object]] = {"all": list(scores)}
    for kind, score in zip(kinds, scores):
        groups.setdefault(kind, []).append(score)
    means = {k: {c: sum(getattr(s, c) for s in v) / len(v) for c in COMPONENTS} for k, v in groups.items()}
    return means, {k: len(v) for k, v in groups.items()}


def gold_report(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    world: WorldData,
    split: str = "test",
    temperature: float = 0.0,
    max_new_tokens: int = 28,
    max_prompt_tokens: int = 96,
    batch_size: int = 128,
) -> GoldReport:
    """Generate one completion per prompt of `split` (greedy when `temperature` is 0) and score it."""
    prompts = world.splits[split]
    ids = [encode_prompt(tokenizer, world.prompt_text(p), max_prompt_tokens)[0] for p in prompts]
    samples = generate_completions(model, tokenizer, ids, 1, max_new_tokens, temperature, batch_size)
    texts = [world.completion_text(tokenizer, s[0]) for s in samples]
    means, counts = summarize([p.kind for p in prompts], [world.labeler.score(p, t) for p, t in zip(prompts, texts)])
    return GoldReport(means, counts, texts)


def demonstration_report(world: WorldData, split: str = "test") -> GoldReport:
    """Gold scores of the labeler's own demonstrations: the reference an SFT model imitates."""
    prompts = world.splits[split]
    texts = [completion.strip() for _, completion in world.demonstrations(split)]
    means, counts = summarize([p.kind for p in prompts], [world.labeler.score(p, t) for p, t in zip(prompts, texts)])
    return GoldReport(means, counts, texts)
