"""The embedded language world as the alignment stages see it: corpus, prompt splits, gold labeler.

Everything is rebuilt deterministically from `WorldConfig`, so every stage sees the same world.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from transformers import PreTrainedTokenizerBase

from envs.language_world import (
    GoldLabeler,
    Prompt,
    World,
    build_world,
    clean_completion,
    format_prompt,
    make_prompts,
    pretraining_corpus,
    split_by_user,
)
from envs.language_world.template import COMPLETION_SEPARATOR
from ppo_core.align.config import WorldConfig
from ppo_core.align.errors import AlignError


@dataclass
class WorldData:
    """A built world with its pretraining corpus, prompt splits by user and gold labeler."""

    world: World
    corpus: list[str]
    splits: dict[str, list[Prompt]]
    labeler: GoldLabeler
    seed: int

    def prompt_text(self, prompt: Prompt) -> str:
        """The prompt as the model sees it ("User: ...\\nAssistant:")."""
        return format_prompt(prompt)

    def completion_text(self, tokenizer: PreTrainedTokenizerBase, ids: Sequence[int]) -> str:
        """The answer the labeler judges in generated token ids (cut at EOS or the end of the turn)."""
        return clean_completion(tokenizer.decode(ids, skip_special_tokens=True))

    def gold_total(self, prompt: Prompt, text: str) -> float:
        """The noiseless gold total of one completion text."""
        return self.labeler.score(prompt, text).total

    def demonstrations(self, split: str) -> list[tuple[str, str]]:
        """(prompt text, completion text) pairs of the labeler's demonstrations for one split, as the
        labeler writes them (with its slips, `WorldConfig.demo_slips`).

        The completion starts with the template's separator, so prompt + completion is the training text.
        """
        rng = random.Random(f"{self.seed}-demonstrations-{split}")
        return [(format_prompt(p), COMPLETION_SEPARATOR + self.labeler.demonstration(p, rng, written=True).strip())
                for p in self.splits[split]]

    def tokenizer_texts(self) -> list[str]:
        """Texts the tokenizer is trained on: the corpus and the train demonstrations with their prompts
        (as written, so `WorldConfig.demo_slips` changes the tokenizer, and the base model, too)."""
        return self.corpus + [prompt + completion for prompt, completion in self.demonstrations("train")]


def load_world(cfg: WorldConfig) -> WorldData:
    """Build the world, corpus, prompts, user-level splits and labeler described by `cfg`."""
    try:
        world = build_world(cfg.seed, cfg.size)
        corpus = pretraining_corpus(world, cfg.seed, cfg.corpus_chars or None)
        prompts = make_prompts(world, cfg.n_prompts or None, cfg.seed)
        splits = split_by_user(prompts, tuple(cfg.split), cfg.seed)
        labeler = GoldLabeler(world, disagreement=cfg.disagreement, seed=cfg.seed, slips=cfg.demo_slips)
    except ValueError as e:
        raise AlignError(f"world settings: {e}") from e
    for name in ("train", "validation", "test"):
        if not splits[name]:
            raise AlignError(f"world split {name!r} is empty; raise world.n_prompts or change world.split")
    return WorldData(world, corpus, splits, labeler, cfg.seed)
