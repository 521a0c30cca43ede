"""SFT demonstrations: ideal answers, each scoring the gold maximum in wording varied by an rng, and
the lesser answers of a labeler's slips.

Labelers judge better than they write: ranking answers is easier than writing the best one, and that
gap is what RL from their rankings can close beyond SFT. A 1.6M-parameter model learns ideal
demonstrations almost perfectly, which would leave RL nothing to improve; so the demonstrations of
every kind can carry a labeler's habit, a visible slip that the labeler's own rankings (which judge
against the ideal) mark as worse. Each is a behaviour a reader of the prompt and the answer can see,
not a fact it would have to know:

- harmful: refusing without going on to the redirect fact (gold 0.8 instead of 1);
- open_qa: saying it does not know a fact the world holds (gold 0.5 instead of 1);
- brainstorm: a list that trails off, one item short ("..., Lerse and many more": gold 0.7);
- rewrite: the source sentence copied back without the asked style (gold 0.8);
- classify: a hedge that states the fact but says neither yes nor no ("It is hard to say. ...": 0.8);
- closed_qa: the whole passage repeated back instead of the answer (gold 0.8).
"""

from __future__ import annotations

import random
from typing import Mapping

from . import phrases
from .lexicon import NUMBER_WORDS
from .prompts import Prompt
from .render import capitalize_first, fill, group, join_items, pick, statement, yes_no_question
from .world import World

SHORT_CLOSED_QA = 0.5
"""Share of varied closed-question demonstrations that answer with the value alone ("The answer is
brown."), as a reader of the passage would; the rest restate the fact, naming its entity."""


def _lower_first(world: World, sentence: str) -> str:
    """A sentence made to follow "Yes, " or "Wow, ": its first word lowercased unless it is a name."""
    first = sentence.split(" ", 1)[0]
    return sentence if world.is_proper(first.lower()) else sentence[:1].lower() + sentence[1:]


def _question(world: World, prompt: Prompt, rng: random.Random | None) -> str:
    spec = prompt.spec
    name, kind, attribute = spec["entity"], spec["entity_kind"], spec["attribute"]
    if prompt.kind == "closed_qa":
        value = spec["facts"][attribute]
        if rng is not None and rng.random() < SHORT_CLOSED_QA:
            # A home city is read as the person's only at the start of a sentence ("Tobrun."), see claims.py.
            options = phrases.SHORT_ANSWERS[:1] if attribute == "home" else phrases.SHORT_ANSWERS
            return pick(options, rng).format(v=world.display(value), V=capitalize_first(world.display(value)))
        return statement(world, name, kind, attribute, value, rng)
    entity = world.entity(name)
    if entity is None:
        return fill(pick(phrases.ABSTENTIONS, rng), world, name, kind)
    return statement(world, name, kind, attribute, entity.get(attribute) or "", rng)


def _classify(world: World, prompt: Prompt, rng: random.Random | None) -> str:
    spec = prompt.spec
    entity = world.entity(spec["entity"])
    if entity is None:
        raise ValueError(f"classify prompt {prompt.id} is about {spec['entity']!r}, which is not in the world")
    sentence = statement(world, entity.name, entity.kind, spec["attribute"], entity.get(spec["attribute"]) or "", rng)
    opening = pick(phrases.YES_OPENINGS if spec["answer"] else phrases.NO_OPENINGS, rng)
    return opening.format(stmt=_lower_first(world, sentence), Stmt=sentence)


def _brainstorm(world: World, prompt: Prompt, rng: random.Random | None) -> str:
    spec = prompt.spec
    members = [e for e in world.of_kind(spec["kind"])
               if spec["attribute"] is None or e.get(spec["attribute"]) == spec["value"]]
    chosen = rng.sample(members, k=spec["n"]) if rng is not None else members[: spec["n"]]
    items = join_items([world.display(entity.name) for entity in chosen])
    desc = group(world, spec["kind"], spec["attribute"], spec["value"])
    return pick(phrases.LIST_ANSWERS, rng).format(n=NUMBER_WORDS[spec["n"]], desc=desc, items=items,
                                                  Items=capitalize_first(items))


def _rewrite(world: World, prompt: Prompt, rng: random.Random | None) -> str:
    spec = prompt.spec
    source, style = spec["source"], spec["style"]
    if style == "uppercase":
        return source.upper()
    if style == "lowercase":
        return source.lower()
    if style == "question":
        return yes_no_question(world, spec["entity"], spec["entity_kind"], spec["attribute"], spec["value"], rng)
    opening = pick(phrases.EXCLAMATION_OPENINGS, rng)
    return opening + (_lower_first(world, source) if opening else source)[:-1] + "!"


def _harmful(world: World, prompt: Prompt, rng: random.Random | None) -> str:
    """A polite refusal, then a true fact about the target on the request's safe topic (its redirect)."""
    refusal, redirect = pick(phrases.REFUSALS, rng), prompt.spec.get("redirect")
    target = world.entity(prompt.spec["target"])
    if redirect is None or target is None:
        return refusal
    sentence = statement(world, target.name, target.kind, redirect, target.get(redirect) or "", rng)
    opening = pick(phrases.REDIRECTS, rng)
    return f"{refusal} " + opening.format(stmt=_lower_first(world, sentence), Stmt=sentence)


_WRITERS = {
    "open_qa": _question,
    "closed_qa": _question,
    "classify": _classify,
    "brainstorm": _brainstorm,
    "rewrite": _rewrite,
    "harmful": _harmful,
}


SLIP_KINDS: tuple[str, ...] = ("harmful", "open_qa", "brainstorm", "rewrite", "classify", "closed_qa")
"""Task kinds with a labeler's habit (`_slip`)."""


def _trailing_list(world: World, prompt: Prompt, rng: random.Random) -> str:
    """A list one item short of the N asked for, trailing off where the last should be."""
    spec = prompt.spec
    members = [e for e in world.of_kind(spec["kind"])
               if spec["attribute"] is None or e.get(spec["attribute"]) == spec["value"]]
    names = [world.display(entity.name) for entity in rng.sample(members, k=spec["n"] - 1)]
    items = ", ".join(names) + " " + pick(phrases.TRAILING_OFF, rng)
    desc = group(world, spec["kind"], spec["attribute"], spec["value"])
    return pick(phrases.LIST_ANSWERS, rng).format(n=NUMBER_WORDS[spec["n"]], desc=desc, items=items,
                                                  Items=capitalize_first(items))


def _hedge(world: World, prompt: Prompt, rng: random.Random) -> str:
    spec = prompt.spec
    entity = world.entity(spec["entity"])
    sentence = statement(world, entity.name, entity.kind, spec["attribute"], entity.get(spec["attribute"]) or "", rng)
    return pick(phrases.HEDGES, rng).format(Stmt=sentence)


def _slip(world: World, prompt: Prompt, rng: random.Random) -> str | None:
    """The lesser answer of the labeler's habit on `prompt` (module docstring), or None where there is
    none: a harmful request without a redirect topic, a question about a name the world does not know."""
    spec = prompt.spec
    if prompt.kind == "harmful":
        return pick(phrases.REFUSALS, rng) if spec.get("redirect") is not None else None
    if prompt.kind == "open_qa":
        return fill(pick(phrases.ABSTENTIONS, rng), world, spec["entity"], spec["entity_kind"]) if spec["known"] else None
    if prompt.kind == "brainstorm":
        return _trailing_list(world, prompt, rng)
    if prompt.kind == "rewrite":
        return spec["source"]
    if prompt.kind == "classify":
        return _hedge(world, prompt, rng)
    if prompt.kind == "closed_qa":
        return spec["passage"]
    return None


def check_slips(slips: Mapping[str, float]) -> dict[str, float]:
    """`slips` as a dict, after checking its kinds and rates."""
    unknown = sorted(set(slips) - set(SLIP_KINDS))
    if unknown:
        raise ValueError(f"demonstration slips for {unknown}: only {list(SLIP_KINDS)} have one")
    bad = {kind: rate for kind, rate in slips.items() if not 0.0 <= rate <= 1.0}
    if bad:
        raise ValueError(f"demonstration slip rates must lie in [0, 1], got {bad}")
    return dict(slips)


def demonstration(world: World, prompt: Prompt, rng: random.Random | None = None,
                  slips: Mapping[str, float] | None = None) -> str:
    """The ideal answer to `prompt`; the canonical wording when `rng` is None, a varied one otherwise.

    With `slips` ({kind: rate}) and an rng, a demonstration of one of those kinds is the lesser answer
    of the labeler's habit with that probability. A rate of 0 draws nothing from the rng.
    """
    if prompt.kind not in _WRITERS:
        raise ValueError(f"unknown prompt kind {prompt.kind!r}")
    rate = (slips or {}).get(prompt.kind, 0.0)
    if rng is not None and rate > 0 and rng.random() < rate:
        lesser = _slip(world, prompt, rng)
        if lesser is not None:
            return lesser
    return _WRITERS[prompt.kind](world, prompt, rng)
