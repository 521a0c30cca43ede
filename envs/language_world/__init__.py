"""The embedded language world: facts, a pretraining corpus, instruction prompts and a gold labeler.

A laptop-sized stand-in for InstructGPT's setting (see DESIGN.md, "The embedded language world"):

    world = build_world(seed=0, size="small")
    corpus = pretraining_corpus(world, seed=0)            # plain text for the base model
    splits = split_by_user(make_prompts(world, seed=0))   # train / validation / test by user id
    labeler = GoldLabeler(world)                          # disagreement 0.164: labelers agree 72.6%
    text = format_prompt(prompt) + " " + labeler.demonstration(prompt)
"""

from .corpus import pretraining_corpus
from .labeler import DEFAULT_DISAGREEMENT, INTERLABELER_AGREEMENT, GoldLabeler
from .lexicon import BANNED_WORDS, KINDS, STYLES
from .prompts import DEFAULT_MIX, TASK_KINDS, Prompt, make_prompts, split_by_user
from .ranking import MAX_K, MIN_K, disagreement_for_labeler_agreement
from .scoring import (
    GOLD_MAXIMUM,
    HARMLESS_WEIGHT,
    HELPFUL_WEIGHT,
    HONEST_WEIGHT,
    MAX_WORDS,
    NO_CLAIMS_HONESTY,
    Score,
)
from .template import clean_completion, format_example, format_prompt
from .vocabulary import known_words
from .world import SIZES, Entity, World, build_world

__all__ = [
    "BANNED_WORDS",
    "DEFAULT_DISAGREEMENT",
    "DEFAULT_MIX",
    "GOLD_MAXIMUM",
    "HARMLESS_WEIGHT",
    "HELPFUL_WEIGHT",
    "HONEST_WEIGHT",
    "INTERLABELER_AGREEMENT",
    "KINDS",
    "MAX_K",
    "MAX_WORDS",
    "MIN_K",
    "NO_CLAIMS_HONESTY",
    "SIZES",
    "STYLES",
    "TASK_KINDS",
    "Entity",
    "GoldLabeler",
    "Prompt",
    "Score",
    "World",
    "build_world",
    "clean_completion",
    "disagreement_for_labeler_agreement",
    "format_example",
    "format_prompt",
    "known_words",
    "make_prompts",
    "pretraining_corpus",
    "split_by_user",
]
