"""Text normalisation and the set of words the world can produce.

A word outside that set (and outside the prompt) in an answer is something the model made up, which
is how the labeler recognises invented names.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Iterable

from . import lexicon, phrases

if TYPE_CHECKING:
    from .world import World

_POSSESSIVE = re.compile(r"(\w)['’`]s\b")
_APOSTROPHE = re.compile(r"['’`]")
_PLACEHOLDER = re.compile(r"\{[^}]*\}")
_TOKEN = re.compile(r"[a-z0-9]+|[.!?;:,\n]")
_WORD = re.compile(r"[a-z0-9]+")

SENTENCE_MARKS = frozenset(".!?;\n")
CLAUSE_MARKS = frozenset(",:")


def normalize(text: str) -> str:
    """Lowercase, drop possessive 's and apostrophes ("Mira's" -> "mira", "don't" -> "dont")."""
    text = _POSSESSIVE.sub(r"\1", text.lower())
    return _APOSTROPHE.sub("", text)


def tokens(text: str) -> list[str]:
    """Words and the punctuation marks that end clauses and sentences, in order."""
    return _TOKEN.findall(normalize(text))


def words(text: str) -> list[str]:
    return _WORD.findall(normalize(text))


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(key)
            yield from _strings(item)
    elif isinstance(value, (tuple, list, frozenset, set)):
        for item in value:
            yield from _strings(item)


@lru_cache(maxsize=1)
def phrase_words() -> frozenset[str]:
    """Every word of every template and closed vocabulary (names excluded)."""
    found: set[str] = set()
    for module in (lexicon, phrases):
        for name, value in vars(module).items():
            if name.isupper() and not name.startswith("NAME_"):
                for text in _strings(value):
                    found.update(words(_PLACEHOLDER.sub(" ", text)))
    return frozenset(found)


def known_words(world: World) -> frozenset[str]:
    """Words that the corpus, the prompts and the demonstrations of `world` can contain."""
    names = {entity.name for entity in world.entities}
    return phrase_words() | names | set(world.countries) | set(world.reserve_names)
