"""The embedded language world as the alignment stages see it: corpus, prompt splits, gold labeler.

Everything is rebuilt deterministically from `WorldConfig`, so every stage sees the same world.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from envs.language_world import (
    GoldLabeler,
    Prompt,
    build_world,
    format_prompt,
    make_prompts,
    pretraining_corpus,
    split_by_user,
)
from ppo_core.align.config import WorldConfig
from ppo_core.align.errors import AlignError

COMPLETION_PREFIX = " "
"""Separator between the prompt's final "Assistant:" and the completion text."""


@dataclass
class WorldData:
    """A built world with its pretraining corpus, prompt splits by user and gold labeler."""

    world: Any
    corpus: list[str]
    splits: dict[str, list[Prompt]]
    labeler: GoldLabeler
    seed: int

    def prompt_text(self, prompt: Prompt) -> str:
        """The prompt as the model sees it (`format_prompt`)."""
        return format_prompt(prompt)

    def demonstrations(self, split: str) -> list[tuple[str, str]]:
        """(prompt text, demonstration) pairs written by the gold labeler for one split."""
        rng = random.Random(f"{self.seed}-demonstrations-{split}")
        return [
            (format_prompt(p), COMPLETION_PREFIX + self.labeler.demonstration(p, rng).strip())
            for p in self.splits[split]
        ]

    def tokenizer_texts(self) -> list[str]:
        """Texts the tokenizer is trained on: corpus, train prompts and their demonstrations."""
        return self.corpus + [prompt + completion for prompt, completion in self.demonstrations("train")]


def load_world(cfg: WorldConfig) -> WorldData:
    """Build the world, corpus, prompts, user-level splits and labeler described by `cfg`."""
    if len(cfg.split) != 3 or any(f < 0 for f in cfg.split) or abs(sum(cfg.split) - 1.0) > 1e-6:
        raise AlignError(f"world.split={list(cfg.split)} must be three non-negative fractions summing to 1")
    world = build_world(cfg.seed, cfg.size)
    corpus = pretraining_corpus(world, cfg.seed)
    prompts = make_prompts(world, cfg.n_prompts, cfg.seed)
    splits = split_by_user(prompts, tuple(cfg.split), cfg.seed)
    for name in ("train", "validation", "test"):
        if not splits.get(name):
            raise AlignError(f"world split {name!r} is empty; raise world.n_prompts or change world.split")
    labeler = GoldLabeler(world, disagreement=cfg.disagreement, seed=cfg.seed)
    return WorldData(world, corpus, splits, labeler, cfg.seed)
