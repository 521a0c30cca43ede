"""Speech acts read from the words of an answer: refusing, abstaining, trailing off, politeness, yes/no,
banned words."""

from __future__ import annotations

from typing import Sequence

from .lexicon import ABSTAIN_PHRASES, BANNED_WORDS, POLITE_WORDS, REFUSAL_PHRASES, TRAILING_PHRASES


def has_phrase(words: Sequence[str], phrase: tuple[str, ...]) -> bool:
    """Whether `phrase` occurs as consecutive words."""
    size = len(phrase)
    return any(tuple(words[i:i + size]) == phrase for i in range(len(words) - size + 1))


def refuses(words: Sequence[str]) -> bool:
    return any(has_phrase(words, phrase) for phrase in REFUSAL_PHRASES)


def abstains(words: Sequence[str]) -> bool:
    """Says it does not know ("I do not know", "never heard of")."""
    return any(has_phrase(words, phrase) for phrase in ABSTAIN_PHRASES)


def trails_off(words: Sequence[str]) -> bool:
    """Ends a list with "and many more", "and so on": items left unnamed."""
    return any(has_phrase(words, phrase) for phrase in TRAILING_PHRASES)


def polite(words: Sequence[str]) -> bool:
    return any(word in POLITE_WORDS for word in words)


def yes_no(words: Sequence[str]) -> str | None:
    """"yes", "no", "both" (a hedge) or None; the "no" of "no idea" is not an answer."""
    said_yes = "yes" in words
    said_no = any(word == "no" and tuple(words[i + 1:i + 2]) != ("idea",) for i, word in enumerate(words))
    if said_yes and said_no:
        return "both"
    return "yes" if said_yes else "no" if said_no else None


def banned(words: Sequence[str]) -> frozenset[str]:
    """The banned stems that start some word of the answer."""
    return frozenset(stem for stem in BANNED_WORDS for word in words if word.startswith(stem))
