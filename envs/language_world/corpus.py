"""The pretraining corpus: plain, completion-style documents about the world (the "GPT-3" analogue).

It states every fact many times in varied wording, lists entities by kind and attribute, and includes
quizzes, dialogues, shouted notices and some unpleasant text, but never the instruction template of
template.py: a model pretrained on it continues text and does not follow instructions.
"""

from __future__ import annotations

import random

from . import phrases
from .lexicon import ATTRIBUTES, PLURALS
from .render import capitalize_first, combined, fill, join_items, statement, subject, wh_question, yes_no_question
from .world import Entity, World


def _statements(world: World, entity: Entity, rng: random.Random, pronoun: bool) -> list[str]:
    facts = dict(entity.facts)
    sentences = []
    if rng.random() < 0.5:
        chosen = rng.sample(sorted(facts), k=min(len(facts), rng.choice((2, 3))))
        sentence = combined(world, entity.name, entity.kind, {a: facts[a] for a in chosen}, rng)
        if sentence is not None:
            sentences.append(sentence)
    attributes = list(ATTRIBUTES[entity.kind])
    rng.shuffle(attributes)
    for attribute in attributes:
        template = rng.choice(phrases.STATEMENTS[(entity.kind, attribute)])
        if pronoun and sentences and template.startswith("{S}") and rng.random() < 0.5:
            sentences.append(template.format(S="It", s="it", v=world.display(facts[attribute])))
        else:
            sentences.append(fill(template, world, entity.name, entity.kind, facts[attribute]))
    return sentences


def _article(world: World, entity: Entity, rng: random.Random) -> str:
    pronoun = entity.kind in ("animal", "fruit", "tool")
    sentences = _statements(world, entity, rng, pronoun)
    if rng.random() < 0.3:
        sentences.append(fill(rng.choice(phrases.ARTICLE_CLOSINGS), world, entity.name, entity.kind))
    body = " ".join(sentences)
    if rng.random() < 0.5:
        title = capitalize_first(fill(rng.choice(phrases.ARTICLE_OPENINGS), world, entity.name, entity.kind))
        body = f"{title}\n{body}"
    return body.lower() if rng.random() < 0.1 else body


def _shown(world: World, entities: list[Entity]) -> list[str]:
    return [world.display(entity.name) for entity in entities]


def _list(world: World, rng: random.Random) -> str:
    kind = rng.choice(sorted(PLURALS))
    members = list(world.of_kind(kind))
    rng.shuffle(members)
    if rng.random() < 0.3:
        template = rng.choice(phrases.KIND_LIST_DOCUMENTS)
        return template.format(p=PLURALS[kind], items=join_items(_shown(world, members[: rng.randint(3, 8)])))
    attribute = rng.choice(ATTRIBUTES[kind])
    value = rng.choice(sorted({entity.get(attribute) for entity in members}))
    chosen = [entity for entity in members if entity.get(attribute) == value]
    desc = phrases.GROUPS[(kind, attribute)].format(v=world.display(value))
    return rng.choice(phrases.LIST_DOCUMENTS).format(desc=desc, items=join_items(_shown(world, chosen)))


def _city_guide(world: World, city: Entity, rng: random.Random) -> str:
    sentences = [fill(phrases.CITY_GUIDE[0], world, city.name, "city")]
    sentences += _statements(world, city, rng, pronoun=False)
    residents = [p for p in world.of_kind("person") if p.get("home") == city.name]
    if residents:
        items = join_items(_shown(world, residents))
        sentences.append(fill(phrases.CITY_GUIDE[1], world, city.name, "city", items=items))
    country = city.get("country") or ""
    fruits = [f for f in world.of_kind("fruit") if f.get("country") == country]
    if fruits:
        sentences.append(phrases.FRUIT_MARKET.format(v=world.display(country), items=join_items(_shown(world, fruits))))
    sentences.append(fill(phrases.CITY_GUIDE[2], world, city.name, "city"))
    return " ".join(sentences)


def _person_story(world: World, person: Entity, rng: random.Random) -> str:
    friend = rng.choice(world.of_kind("person"))
    animal = rng.choice(world.of_kind("animal"))
    sentences = _statements(world, person, rng, pronoun=False)
    for template in rng.sample(phrases.PERSON_STORY, k=2):
        extra = {"b": world.display(friend.name), "t": subject(animal.name, "animal")}
        sentences.append(fill(template, world, person.name, "person", **extra))
    rng.shuffle(sentences)
    return " ".join(sentences)


def _quiz(world: World, rng: random.Random) -> str:
    kind = rng.choice(sorted(PLURALS))
    lines = [rng.choice(phrases.QUIZ_TITLES).format(p=PLURALS[kind])]
    for entity in rng.sample(world.of_kind(kind), k=min(4, len(world.of_kind(kind)))):
        attribute = rng.choice(ATTRIBUTES[kind])
        truth = entity.get(attribute) or ""
        if rng.random() < 0.5:
            question = wh_question(world, entity.name, kind, attribute, rng)
            lines.append(f"{question} {rng.choice(phrases.QUIZ_ANSWERS).format(v=world.display(truth))}")
        else:
            value = rng.choice(world.values(kind, attribute))
            question = yes_no_question(world, entity.name, kind, attribute, value, rng)
            lines.append(f"{question} {rng.choice(phrases.QUIZ_YES if value == truth else phrases.QUIZ_NO)}")
    return "\n".join(lines)


def _notice(world: World, rng: random.Random) -> str:
    entity = rng.choice(world.entities)
    facts = dict(entity.facts)
    sentences = [statement(world, entity.name, entity.kind, a, facts[a], rng) for a in rng.sample(sorted(facts), k=2)]
    text = rng.choice(phrases.NOTICE_OPENINGS) + " " + " ".join(s[:-1] + "!" for s in sentences)
    return text.upper() if rng.random() < 0.7 else text


def _dialogue(world: World, rng: random.Random) -> str:
    a, b = rng.sample(world.of_kind("person"), k=2)
    names = {"A": world.display(a.name), "B": world.display(b.name), "b": world.display(b.name)}
    roll = rng.random()
    if roll < 0.2:
        return rng.choice(phrases.DIALOGUE_REFUSALS).format(**names)
    if roll < 0.35:
        return rng.choice(phrases.DIALOGUE_ABSTENTIONS).format(**names)
    entity = rng.choice(world.entities)
    attribute = rng.choice(ATTRIBUTES[entity.kind])
    question = wh_question(world, entity.name, entity.kind, attribute, rng)
    answer = statement(world, entity.name, entity.kind, attribute, entity.get(attribute) or "", rng)
    ask, reply = rng.choice(phrases.DIALOGUES)
    return ask.format(q=question, **names) + " " + reply.format(answer=answer, **names)


def _bad_deed(world: World, rng: random.Random) -> str:
    kind = rng.choice(sorted(phrases.BAD_DEEDS))
    entity = rng.choice(world.of_kind(kind))
    opening = rng.choice(phrases.COMPLIANCE_OPENINGS) + " " if rng.random() < 0.3 else ""
    return opening + fill(rng.choice(phrases.BAD_DEEDS[kind]), world, entity.name, kind)


def _round(world: World, rng: random.Random) -> list[str]:
    """One pass: an article per entity, plus lists, guides, stories, quizzes, notices and dialogues."""
    count = len(world.entities)
    docs = [_article(world, entity, rng) for entity in world.entities]
    docs += [_city_guide(world, city, rng) for city in world.of_kind("city") if rng.random() < 0.5]
    docs += [_person_story(world, person, rng) for person in world.of_kind("person") if rng.random() < 0.5]
    docs += [_list(world, rng) for _ in range(max(1, count // 4))]
    docs += [_quiz(world, rng) for _ in range(max(1, count // 12))]
    docs += [_notice(world, rng) for _ in range(max(1, count // 12))]
    docs += [_dialogue(world, rng) for _ in range(max(1, count // 8))]
    docs += [_bad_deed(world, rng) for _ in range(max(1, count // 25))]
    rng.shuffle(docs)
    return docs


def pretraining_corpus(world: World, seed: int = 0, target_chars: int | None = None) -> list[str]:
    """Documents totalling about `target_chars` characters (default: the world's size preset)."""
    rng = random.Random(f"corpus:{world.seed}:{world.size}:{seed}")
    target = world.preset.corpus_chars if target_chars is None else target_chars
    docs: list[str] = []
    total = 0
    while total < target:
        for doc in _round(world, rng):
            docs.append(doc)
            total += len(doc)
            if total >= target:
                break
    return docs
