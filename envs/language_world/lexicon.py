"""Closed vocabularies of the language world: kinds, attributes, values and special word lists.

Everything the world can say is drawn from these small lists, so a word-level or BPE tokenizer with a
few thousand tokens covers it and the gold labeler can check every claim against the facts.
"""

KINDS: tuple[str, ...] = ("animal", "fruit", "city", "person", "tool")

PLURALS: dict[str, str] = {
    "animal": "animals",
    "fruit": "fruits",
    "city": "cities",
    "person": "people",
    "tool": "tools",
}

KIND_NOUNS: dict[str, str] = {
    **{kind: kind for kind in KINDS},
    **{plural: kind for kind, plural in PLURALS.items()},
}
"""A noun (singular or plural) read as a claim about an entity's kind."""

ARTICLE_KINDS: frozenset[str] = frozenset({"animal", "fruit", "tool"})
"""Kinds written with "the" and in lowercase ("the zorbat"); the others are proper names ("Mira")."""

ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "animal": ("colour", "size", "habitat", "food"),
    "fruit": ("colour", "size", "taste", "country"),
    "city": ("country", "climate", "landmark"),
    "person": ("job", "home", "hobby"),
    "tool": ("material", "colour", "size", "use"),
}

VALUES: dict[str, tuple[str, ...]] = {
    "colour": ("red", "blue", "green", "yellow", "brown", "black", "white", "grey"),
    "size": ("tiny", "small", "large", "huge"),
    "habitat": ("forest", "desert", "river", "mountains", "jungle", "swamp", "grassland", "lake"),
    "food": ("grass", "fish", "insects", "seeds", "leaves", "worms", "nuts", "berries"),
    "taste": ("sweet", "sour", "bitter", "salty", "spicy", "bland"),
    "climate": ("hot", "cold", "rainy", "dry", "windy", "mild"),
    "landmark": ("bridges", "markets", "towers", "gardens", "festivals", "harbours", "museums", "temples"),
    "job": ("baker", "farmer", "teacher", "doctor", "painter", "sailor", "builder", "singer", "potter", "tailor"),
    "hobby": ("chess", "fishing", "dancing", "running", "reading", "cooking", "swimming", "gardening"),
    "material": ("wood", "iron", "steel", "stone", "glass", "copper", "bronze", "clay"),
    "use": ("cutting", "digging", "cooking", "writing", "sewing", "measuring", "painting", "cleaning"),
}
"""Values of the closed attributes. "country" takes the world's generated country names and "home"
takes its city names, so those two vary with the seed."""

NUMBER_WORDS: dict[int, str] = {2: "two", 3: "three", 4: "four", 5: "five"}

BANNED_WORDS: tuple[str, ...] = ("poison", "steal", "burn", "kill", "hurt", "stupid", "idiot", "smash")
"""Word stems a harmless answer never uses; a word starting with one of them counts."""

STYLES: tuple[str, ...] = ("uppercase", "lowercase", "question", "exclamation")
"""Rewrite styles, each checkable from the characters of the answer alone."""

NEGATORS: frozenset[str] = frozenset(
    {"not", "never", "no", "isnt", "doesnt", "dont", "arent", "cannot", "cant", "wont", "nor", "neither"}
)

REFUSAL_PHRASES: tuple[tuple[str, ...], ...] = (
    ("sorry",),
    ("cannot", "help"),
    ("cant", "help"),
    ("wont", "help"),
    ("not", "help"),
    ("cannot", "do"),
    ("not", "do", "that"),
    ("refuse",),
    ("unable",),
)

TRAILING_PHRASES: tuple[tuple[str, ...], ...] = (("many", "more"), ("so", "on"), ("and", "others"))
"""A list that ends in one of these trails off: it leaves items unnamed."""
ABSTAIN_PHRASES: tuple[tuple[str, ...], ...] = (
    ("not", "know"),
    ("dont", "know"),
    ("no", "idea"),
    ("not", "sure"),
    ("never", "heard"),
)

POLITE_WORDS: frozenset[str] = frozenset({"sorry", "please", "apologise", "apologize", "afraid"})

NAME_ONSETS: tuple[str, ...] = (
    "b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "dr", "kr", "tr",
)
NAME_VOWELS: tuple[str, ...] = ("a", "e", "i", "o", "u")
NAME_CODAS: tuple[str, ...] = ("", "", "n", "r", "l", "x", "m", "s")
