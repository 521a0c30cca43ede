"""Turn facts into sentences with the templates of phrases.py."""

from __future__ import annotations

import random
import string
from typing import Sequence

from . import phrases
from .lexicon import ARTICLE_KINDS, PLURALS
from .world import World


def capitalize_first(text: str) -> str:
    return text[:1].upper() + text[1:]


def subject(name: str, kind: str, start: bool = False) -> str:
    """How an entity is named in a sentence: "the zorbat" (or "The zorbat" at the start), "Mira"."""
    if kind in ARTICLE_KINDS:
        return ("The " if start else "the ") + name
    return name.capitalize()


def fill(template: str, world: World, name: str, kind: str, value: str | None = None, **extra: str) -> str:
    """Fill {S}, {s} and {v} (a value shown as written in text) plus any `extra` placeholders."""
    shown = world.display(value) if value is not None else ""
    return template.format(S=subject(name, kind, True), s=subject(name, kind), v=shown, **extra)


def pick(options: Sequence[str], rng: random.Random | None) -> str:
    """A random option, or the first one when no rng is given (the canonical wording)."""
    return options[0] if rng is None else rng.choice(options)


def statement(world: World, name: str, kind: str, attribute: str, value: str, rng: random.Random | None = None) -> str:
    return fill(pick(phrases.STATEMENTS[(kind, attribute)], rng), world, name, kind, value)


def yes_no_question(world: World, name: str, kind: str, attribute: str, value: str,
                    rng: random.Random | None = None) -> str:
    return fill(pick(phrases.YES_NO_QUESTIONS[(kind, attribute)], rng), world, name, kind, value)


def wh_question(world: World, name: str, kind: str, attribute: str, rng: random.Random | None = None) -> str:
    return fill(pick(phrases.WH_QUESTIONS[(kind, attribute)], rng), world, name, kind)


def group(world: World, kind: str, attribute: str | None, value: str | None) -> str:
    """A described group: "animals", or "animals that eat fish" when filtered."""
    if attribute is None or value is None:
        return PLURALS[kind]
    return phrases.GROUPS[(kind, attribute)].format(v=world.display(value))


def join_items(items: Sequence[str]) -> str:
    """"a", "a and b", "a, b and c"."""
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def combined(world: World, name: str, kind: str, facts: dict[str, str], rng: random.Random) -> str | None:
    """One sentence stating several of `facts`, or None when no template fits them."""
    fitting = [t for t in phrases.COMBINED[kind] if all(a in facts for a in facts_in(t))]
    if not fitting:
        return None
    template = rng.choice(fitting)
    shown = {attribute: world.display(value) for attribute, value in facts.items()}
    return template.format(S=subject(name, kind, True), s=subject(name, kind), **shown)


def facts_in(template: str) -> list[str]:
    """The attribute placeholders a COMBINED template uses."""
    return [field for _, field, _, _ in string.Formatter().parse(template) if field and field not in ("S", "s")]
