"""A deterministic world of facts: named entities of a few kinds, each with attribute values."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from .lexicon import ATTRIBUTES, BANNED_WORDS, KINDS, NAME_CODAS, NAME_ONSETS, NAME_VOWELS, VALUES
from .vocabulary import phrase_words


@dataclass(frozen=True)
class SizePreset:
    """How big a world is and how much text and how many prompts its defaults produce."""

    per_kind: int
    """Entities of each kind."""
    countries: int
    """Generated country names (values of the "country" attribute)."""
    reserve: int
    """Names that belong to no entity: the unknown things that prompts ask or tell about."""
    corpus_chars: int
    """Default size of the pretraining corpus in characters."""
    prompts: int
    """Default number of instruction prompts."""


SIZES: dict[str, SizePreset] = {
    "tiny": SizePreset(per_kind=6, countries=3, reserve=24, corpus_chars=60_000, prompts=300),
    "small": SizePreset(per_kind=30, countries=6, reserve=120, corpus_chars=2_000_000, prompts=6_000),
}


@dataclass(frozen=True)
class Entity:
    """One thing in the world. `name` is a single lowercase word; `facts` are (attribute, value) pairs."""

    name: str
    kind: str
    facts: tuple[tuple[str, str], ...]

    def get(self, attribute: str) -> str | None:
        """The value of `attribute`, or None when the entity has no such fact."""
        for key, value in self.facts:
            if key == attribute:
                return value
        return None


@dataclass(frozen=True)
class World:
    """Entities, the country names, and reserve names that no entity carries."""

    seed: int
    size: str
    entities: tuple[Entity, ...]
    countries: tuple[str, ...]
    reserve_names: tuple[str, ...]
    _by_name: dict[str, Entity] = field(init=False, repr=False, compare=False)
    _value_attribute: dict[tuple[str, str], str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", {entity.name: entity for entity in self.entities})
        lookup = {(kind, value): attribute for kind in KINDS for attribute in ATTRIBUTES[kind]
                  for value in self.values(kind, attribute)}
        object.__setattr__(self, "_value_attribute", lookup)

    @property
    def preset(self) -> SizePreset:
        return SIZES[self.size]

    def entity(self, name: str) -> Entity | None:
        return self._by_name.get(name.lower())

    def of_kind(self, kind: str) -> tuple[Entity, ...]:
        return tuple(entity for entity in self.entities if entity.kind == kind)

    def values(self, kind: str, attribute: str) -> tuple[str, ...]:
        """The closed vocabulary of `attribute` for entities of `kind`."""
        if attribute == "country":
            return self.countries
        if attribute == "home":
            return tuple(entity.name for entity in self.entities if entity.kind == "city")
        return VALUES[attribute]

    def attribute_of(self, kind: str, value: str) -> str | None:
        """Which attribute of `kind` the word `value` is a value of (vocabularies are disjoint per kind)."""
        return self._value_attribute.get((kind, value))

    def is_proper(self, word: str) -> bool:
        """Whether `word` is written capitalised: people, cities and countries."""
        entity = self._by_name.get(word)
        return word in self.countries or (entity is not None and entity.kind in ("city", "person"))

    def display(self, word: str) -> str:
        """`word` as it is written in running text."""
        return word.capitalize() if self.is_proper(word) else word

    def names(self) -> frozenset[str]:
        return frozenset(self._by_name)


def _name_pool(rng: random.Random, count: int, forbidden: frozenset[str]) -> list[str]:
    names: list[str] = []
    seen = set(forbidden)
    while len(names) < count:
        syllables = rng.choice((2, 2, 2, 3))
        parts = []
        for index in range(syllables):
            coda = rng.choice(NAME_CODAS) if index == syllables - 1 else rng.choice(("", "", "n", "r", "l"))
            parts.append(rng.choice(NAME_ONSETS) + rng.choice(NAME_VOWELS) + coda)
        name = "".join(parts)
        if 4 <= len(name) <= 9 and name not in seen and not name.startswith(BANNED_WORDS):
            seen.add(name)
            names.append(name)
    return names


def build_world(seed: int = 0, size: str = "small") -> World:
    """Generate the world for `seed`; the same seed and size always give the same world."""
    if size not in SIZES:
        raise ValueError(f"unknown world size {size!r}; expected one of {sorted(SIZES)}")
    preset = SIZES[size]
    rng = random.Random(f"language-world:{seed}:{size}")
    total = preset.countries + preset.per_kind * len(KINDS) + preset.reserve
    pool = _name_pool(rng, total, phrase_words())
    countries, pool = tuple(pool[: preset.countries]), pool[preset.countries:]
    cities, pool = pool[: preset.per_kind], pool[preset.per_kind:]
    names = {"city": cities}
    for kind in KINDS:
        if kind != "city":
            names[kind], pool = pool[: preset.per_kind], pool[preset.per_kind:]
    entities = []
    for kind in KINDS:
        for name in names[kind]:
            facts = []
            for attribute in ATTRIBUTES[kind]:
                choices = countries if attribute == "country" else cities if attribute == "home" else VALUES[attribute]
                facts.append((attribute, rng.choice(choices)))
            entities.append(Entity(name=name, kind=kind, facts=tuple(facts)))
    return World(seed=seed, size=size, entities=tuple(entities), countries=countries, reserve_names=tuple(pool))
