"""Read free-form text as claims about entities and check each one against the world.

The reading is deliberately simple and robust (any string parses):
- a value word ("brown", "fish", "Velmar") is a claim about the most recently named entity whose kind
  has that value (the prompt's focal entity counts as named first, so "It eats fish." is read);
- a kind noun ("animal", "cities") is a claim about the last entity named in the same sentence;
- a city named in the same sentence after a person, or right at the start of a sentence that follows
  one ("In Tobrun."), is where that person lives;
- "not", "no", "never"... negate the claims that follow until the clause ends (",", "and", "but");
- a word the world cannot produce, or an unknown name the prompt did not give, is an invented name:
  it is itself a false claim, and so is every value claimed about it or about any unknown name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from .lexicon import KIND_NOUNS, NEGATORS, VALUES
from .vocabulary import CLAUSE_MARKS, SENTENCE_MARKS, known_words, tokens
from .world import World


@dataclass(frozen=True)
class Claim:
    """`subject`'s `attribute` (or "kind") is (or, when negated, is not) `value`; `true` in the world."""

    subject: str
    attribute: str
    value: str
    negated: bool
    true: bool


@dataclass(frozen=True)
class Told:
    """An entity a prompt describes but the world does not hold: its kind and the stated facts."""

    name: str
    kind: str
    facts: dict[str, str] = field(hash=False)


@dataclass(frozen=True)
class Reading:
    claims: tuple[Claim, ...]
    mentions: tuple[str, ...]
    """Names in order of appearance: entities, reserve names and invented words."""
    invented: tuple[str, ...]
    """Distinct names nothing in the world or the prompt accounts for."""


class FactChecker:
    """Extracts claims from answers about one world."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.known = known_words(world)
        self.reserve = frozenset(world.reserve_names)
        self.names = world.names()
        self.value_words = frozenset(v for vocabulary in VALUES.values() for v in vocabulary) | set(world.countries)

    def kind_of(self, name: str, told: Mapping[str, Told]) -> str | None:
        entity = self.world.entity(name)
        if entity is not None:
            return entity.kind
        return told[name].kind if name in told else None

    def _true(self, subject: str, attribute: str, value: str, negated: bool, told: Mapping[str, Told]) -> bool:
        entity = self.world.entity(subject)
        if entity is not None:
            kind, facts = entity.kind, dict(entity.facts)
        elif subject in told:
            kind, facts = told[subject].kind, told[subject].facts
        else:
            return False
        actual = kind if attribute == "kind" else facts.get(attribute)
        return actual is not None and (actual == value) != negated

    def _claim(self, subject: str, attribute: str, value: str, negated: bool, told: Mapping[str, Told]) -> Claim:
        return Claim(subject, attribute, value, negated, self._true(subject, attribute, value, negated, told))

    def _attribute(self, name: str, word: str, told: Mapping[str, Told]) -> str | None:
        kind = self.kind_of(name, told)
        return "unknown" if kind is None else self.world.attribute_of(kind, word)

    def read(self, text: str, focal: str | None = None, told: Mapping[str, Told] | None = None,
             prompt_words: frozenset[str] = frozenset()) -> Reading:
        """Claims in `text`; `focal` is the entity the prompt is about (the subject of "It is brown")."""
        told = told or {}
        recent: list[str] = [focal] if focal else []
        in_sentence: list[str] = []
        claims: list[Claim] = []
        mentions: list[str] = []
        invented: list[str] = []
        position, negated = 0, False
        for token in tokens(text):
            if token in SENTENCE_MARKS:
                in_sentence, position, negated = [], 0, False
                continue
            if token in CLAUSE_MARKS or token in ("and", "but"):
                negated = False
                continue
            position += 1
            if token in NEGATORS:
                negated = True
            elif token in self.names or token in told or token in self.reserve or token == focal:
                kind = self.kind_of(token, told)
                person = recent[-1] if recent else None
                if (kind == "city" and person is not None and self.kind_of(person, told) == "person"
                        and (person in in_sentence or position <= 2)):
                    claims.append(self._claim(person, "home", token, negated, told))
                if kind is None and token not in prompt_words and token != focal and token not in invented:
                    invented.append(token)
                recent.append(token)
                in_sentence.append(token)
                mentions.append(token)
            elif token in self.value_words:
                for name in reversed(recent):
                    attribute = self._attribute(name, token, told)
                    if attribute is not None:
                        claims.append(self._claim(name, attribute, token, negated, told))
                        break
            elif token in KIND_NOUNS:
                if in_sentence:
                    claims.append(self._claim(in_sentence[-1], "kind", KIND_NOUNS[token], negated, told))
            elif token not in self.known and token not in prompt_words and not token.isdigit():
                recent.append(token)
                in_sentence.append(token)
                mentions.append(token)
                if token not in invented:
                    invented.append(token)
        return Reading(tuple(claims), tuple(mentions), tuple(invented))
