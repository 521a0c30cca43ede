"""Instruction prompts of six kinds, grouped by user, and splits made by user id.

InstructGPT's prompt mix (Ouyang et al. 2022, Table 1) in miniature: open questions about facts,
brainstorming lists, rewriting, yes/no classification, closed questions over a passage, and harmful
requests. Splitting by user id, never by shuffling prompts, keeps one user's phrasing out of the test set
(ibid., Section 3.2).
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Mapping

from . import phrases
from .lexicon import ATTRIBUTES, KINDS, NUMBER_WORDS, STYLES
from .render import fill, group, statement, subject, wh_question, yes_no_question
from .world import World

TASK_KINDS: tuple[str, ...] = ("open_qa", "brainstorm", "rewrite", "classify", "closed_qa", "harmful")

DEFAULT_MIX: dict[str, float] = {
    "open_qa": 0.2,
    "brainstorm": 0.2,
    "rewrite": 0.15,
    "classify": 0.15,
    "closed_qa": 0.15,
    "harmful": 0.15,
}

UNKNOWN_OPEN_QA = 0.15
"""Share of open questions about a name the world does not know (the honest answer abstains)."""
UNKNOWN_CLOSED_QA = 0.7
"""Share of passages about a name the world does not know (only reading the passage answers them)."""
FILTERED_BRAINSTORM = 0.6
"""Share of list requests restricted by an attribute ("animals that eat fish")."""


@dataclass(frozen=True)
class Prompt:
    """One instruction. `spec` holds what the labeler needs (JSON-compatible values, by kind):

    open_qa: entity, entity_kind, attribute, known. classify: entity, entity_kind, attribute, value,
    answer. brainstorm: kind, n, attribute, value (both None when unfiltered). rewrite: entity,
    entity_kind, attribute, value, style, source. closed_qa: entity, entity_kind, attribute, known,
    facts ({attribute: value} stated by the passage), passage. harmful: target, target_kind, banned,
    redirect (the target's attribute a refusal offers to talk about instead).
    """

    id: int
    user_id: int
    kind: str
    text: str
    spec: dict[str, Any] = field(default_factory=dict, hash=False)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Prompt:
        return cls(id=int(data["id"]), user_id=int(data["user_id"]), kind=str(data["kind"]),
                   text=str(data["text"]), spec=dict(data["spec"]))


Drawn = tuple[str, dict[str, Any]]


def _opened(question: str, rng: random.Random) -> str:
    opening = rng.choice(phrases.QUESTION_OPENINGS)
    return opening + (question[:1].lower() + question[1:] if opening.endswith(", ") else question)


def _open_qa(world: World, rng: random.Random) -> Drawn:
    if rng.random() < UNKNOWN_OPEN_QA:
        name, kind = rng.choice(world.reserve_names), rng.choice(KINDS)
    else:
        entity = rng.choice(world.entities)
        name, kind = entity.name, entity.kind
    attribute = rng.choice(ATTRIBUTES[kind])
    known = world.entity(name) is not None
    spec = {"entity": name, "entity_kind": kind, "attribute": attribute, "known": known}
    return _opened(wh_question(world, name, kind, attribute, rng), rng), spec


def _classify(world: World, rng: random.Random) -> Drawn:
    entity = rng.choice(world.entities)
    attribute = rng.choice(ATTRIBUTES[entity.kind])
    truth = entity.get(attribute)
    others = [v for v in world.values(entity.kind, attribute) if v != truth]
    value = truth if rng.random() < 0.5 else rng.choice(others)
    text = _opened(yes_no_question(world, entity.name, entity.kind, attribute, value, rng), rng)
    text += rng.choice(phrases.INSTRUCTIONS_CLASSIFY_SUFFIX)
    spec = {"entity": entity.name, "entity_kind": entity.kind, "attribute": attribute, "value": value,
            "answer": value == truth}
    return text, spec


def _brainstorm(world: World, rng: random.Random) -> Drawn:
    kind = rng.choice(KINDS)
    n = rng.randint(2, 5)
    attribute = value = None
    if rng.random() < FILTERED_BRAINSTORM:
        members = world.of_kind(kind)
        options = [(a, v) for a in ATTRIBUTES[kind] for v in world.values(kind, a)
                   if sum(entity.get(a) == v for entity in members) >= n]
        if options:
            attribute, value = rng.choice(options)
    desc = group(world, kind, attribute, value)
    text = rng.choice(phrases.INSTRUCTIONS_BRAINSTORM).format(n=NUMBER_WORDS[n], desc=desc)
    return text, {"kind": kind, "n": n, "attribute": attribute, "value": value}


def _rewrite(world: World, rng: random.Random) -> Drawn:
    entity = rng.choice(world.entities)
    attribute = rng.choice(ATTRIBUTES[entity.kind])
    value = entity.get(attribute) or ""
    source = statement(world, entity.name, entity.kind, attribute, value, rng)
    style = rng.choice(STYLES)
    wording = rng.choice(phrases.STYLE_PHRASES[style])
    text = rng.choice(phrases.INSTRUCTIONS_REWRITE).format(style=wording, source=source)
    spec = {"entity": entity.name, "entity_kind": entity.kind, "attribute": attribute, "value": value,
            "style": style, "source": source}
    return text, spec


def _closed_qa(world: World, rng: random.Random) -> Drawn:
    if rng.random() < UNKNOWN_CLOSED_QA:
        name, kind = rng.choice(world.reserve_names), rng.choice(KINDS)
        truth = {a: rng.choice(world.values(kind, a)) for a in ATTRIBUTES[kind]}
    else:
        entity = rng.choice(world.entities)
        name, kind, truth = entity.name, entity.kind, dict(entity.facts)
    told = rng.sample(ATTRIBUTES[kind], k=3)
    facts = {a: truth[a] for a in told}
    passage = " ".join(statement(world, name, kind, a, facts[a], rng) for a in told)
    attribute = rng.choice(told)
    question = wh_question(world, name, kind, attribute, rng)
    text = rng.choice(phrases.INSTRUCTIONS_CLOSED_QA).format(passage=passage, q=question)
    spec = {"entity": name, "entity_kind": kind, "attribute": attribute, "known": world.entity(name) is not None,
            "facts": facts, "passage": passage}
    return text, spec


def _harmful(world: World, rng: random.Random) -> Drawn:
    kind, banned, request, redirect = rng.choice(phrases.HARMFUL_REQUESTS)
    target = rng.choice(world.of_kind(kind))
    extra = {"t": subject(rng.choice(world.of_kind("tool")).name, "tool"),
             "f": subject(rng.choice(world.of_kind("fruit")).name, "fruit"),
             "c": world.display(rng.choice(world.of_kind("city")).name),
             "p": world.display(rng.choice(world.of_kind("person")).name)}
    text = fill(request, world, target.name, kind, **extra)
    return text, {"target": target.name, "target_kind": kind, "banned": banned, "redirect": redirect}


_DRAWERS: dict[str, Callable[[World, random.Random], Drawn]] = {
    "open_qa": _open_qa,
    "brainstorm": _brainstorm,
    "rewrite": _rewrite,
    "classify": _classify,
    "closed_qa": _closed_qa,
    "harmful": _harmful,
}


def _checked_mix(mix: Mapping[str, float] | None) -> dict[str, float]:
    mix = dict(DEFAULT_MIX if mix is None else mix)
    unknown = sorted(set(mix) - set(TASK_KINDS))
    if unknown:
        raise ValueError(f"unknown task kinds {unknown} in mix; expected some of {list(TASK_KINDS)}")
    if any(weight < 0 for weight in mix.values()) or sum(mix.values()) <= 0:
        raise ValueError(f"mix weights must be non-negative with a positive sum, got {mix}")
    return mix


def make_prompts(world: World, n: int | None = None, seed: int = 0, mix: Mapping[str, float] | None = None,
                 max_per_user: int = 8) -> list[Prompt]:
    """`n` prompts with distinct texts (default: the world's preset), drawn by kind from `mix`.

    Users are numbered from 0 and each sends between 1 and `max_per_user` prompts.
    """
    n = world.preset.prompts if n is None else n
    weights = _checked_mix(mix)
    kinds = [kind for kind in TASK_KINDS if weights.get(kind, 0) > 0]
    rng = random.Random(f"prompts:{world.seed}:{world.size}:{seed}")
    prompts: list[Prompt] = []
    seen: set[str] = set()
    user_id = 0
    while len(prompts) < n:
        for _ in range(min(rng.randint(1, max_per_user), n - len(prompts))):
            kind = rng.choices(kinds, weights=[weights[k] for k in kinds])[0]
            for _attempt in range(200):
                text, spec = _DRAWERS[kind](world, rng)
                if text not in seen:
                    break
            else:
                raise ValueError(f"could not draw {n} distinct prompts from a {world.size!r} world; ask for fewer")
            seen.add(text)
            prompts.append(Prompt(id=len(prompts), user_id=user_id, kind=kind, text=text, spec=spec))
        user_id += 1
    return prompts


def split_by_user(prompts: list[Prompt], fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
                  seed: int = 0) -> dict[str, list[Prompt]]:
    """Train / validation / test splits holding about `fractions` of the prompts, sharing no user."""
    if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(f"fractions must be three non-negative numbers summing to 1, got {fractions}")
    by_user: dict[int, list[Prompt]] = {}
    for prompt in prompts:
        by_user.setdefault(prompt.user_id, []).append(prompt)
    users = sorted(by_user)
    random.Random(f"split:{seed}").shuffle(users)
    bounds = (fractions[0] * len(prompts), (fractions[0] + fractions[1]) * len(prompts))
    splits: dict[str, list[Prompt]] = {"train": [], "validation": [], "test": []}
    taken = 0
    for user in users:
        name = "train" if taken < bounds[0] else "validation" if taken < bounds[1] else "test"
        splits[name].extend(by_user[user])
        taken += len(by_user[user])
    return {name: sorted(split, key=lambda p: p.id) for name, split in splits.items()}
