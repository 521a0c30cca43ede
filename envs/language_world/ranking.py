"""Noisy labeler rankings of K completions, drawn from a Mallows model around the gold order.

Mallows (1957) gives each ordering a probability proportional to phi ** (its number of pairs in the
wrong order). Two completions d places apart in the centre order come out swapped with probability

    q_d(phi) = 1 - [(d + 1) / (1 - phi ** (d + 1)) - d / (1 - phi ** d)],

whatever K is, so near neighbours (similar answers) are confused more often than far ones, as with
people. For each ranking phi is solved so that the mean of q_d over the pairs with distinct gold scores
equals the configured `disagreement`: a labeler then disagrees with the gold order on that share of such
pairs in expectation, for every K and every pattern of ties, and a perfect reward model agrees with the
labels on 1 - disagreement of them. Gold ties are ordered at random (each way half the time).

A labeler who marks ties (``noisy_tiers``) ranks the distinct gold scores instead: completions of equal
score form one tier, every such pair tied wherever the noise would have put it, and the tiers are
drawn from Mallows around the gold order with phi solved so that a pair of completions with distinct
scores is still swapped with probability `disagreement` on average.
"""

from __future__ import annotations

import random
from functools import lru_cache
from typing import Sequence

MIN_K = 2
MAX_K = 9
TIE_TOLERANCE = 1e-9


def check_k(k: int) -> None:
    if not MIN_K <= k <= MAX_K:
        raise ValueError(f"rank() needs between {MIN_K} and {MAX_K} completions (K = {MIN_K}..{MAX_K}), got K = {k}")


def check_disagreement(disagreement: float) -> None:
    if not 0.0 <= disagreement < 0.5:
        raise ValueError(f"disagreement must lie in [0, 0.5), got {disagreement}; 0.5 would be a coin flip")


def swap_probability(distance: int, phi: float) -> float:
    """q_d(phi): how often two completions `distance` places apart in the centre order are swapped."""
    if phi <= 0.0:
        return 0.0
    if phi >= 1.0 - 1e-9:
        return 0.5
    d = distance
    return 1.0 - ((d + 1) / (1.0 - phi ** (d + 1)) - d / (1.0 - phi ** d))


def _distinct_distances(blocks: tuple[int, ...]) -> list[int]:
    """Distances between centre positions that lie in different tie blocks (pairs with distinct scores)."""
    owner = [index for index, size in enumerate(blocks) for _ in range(size)]
    count = len(owner)
    return [j - i for i in range(count) for j in range(i + 1, count) if owner[i] != owner[j]]


@lru_cache(maxsize=4096)
def dispersion(blocks: tuple[int, ...], disagreement: float) -> float:
    """phi such that the mean swap probability over pairs with distinct gold scores is `disagreement`."""
    distances = _distinct_distances(blocks)
    if not distances or disagreement <= 0.0:
        return 0.0
    low, high = 0.0, 1.0
    for _ in range(100):
        phi = (low + high) / 2
        mean = sum(swap_probability(d, phi) for d in distances) / len(distances)
        low, high = (phi, high) if mean < disagreement else (low, phi)
    return (low + high) / 2


def _blocks(scores: Sequence[float], order: Sequence[int]) -> tuple[int, ...]:
    sizes: list[int] = []
    previous: float | None = None
    for index in order:
        if previous is not None and abs(scores[index] - previous) <= TIE_TOLERANCE:
            sizes[-1] += 1
        else:
            sizes.append(1)
        previous = scores[index]
    return tuple(sizes)


def sample_mallows(centre: Sequence[int], phi: float, rng: random.Random) -> list[int]:
    """An ordering of `centre`'s items drawn from Mallows(phi) by repeated insertion (Doignon et al. 2004)."""
    ranking: list[int] = []
    for i, item in enumerate(centre):
        weights = [phi ** (i - j) for j in range(i + 1)]
        position = rng.choices(range(i + 1), weights=weights)[0]
        ranking.insert(position, item)
    return ranking


def gold_order(scores: Sequence[float], rng: random.Random) -> list[int]:
    """Indices from best to worst score, ties in random order."""
    keys = [rng.random() for _ in scores]
    return sorted(range(len(scores)), key=lambda i: (-scores[i], keys[i]))


def noisy_ranking(scores: Sequence[float], disagreement: float, rng: random.Random) -> list[int]:
    """A labeler's ranking (indices best to worst) of completions with gold `scores`."""
    check_disagreement(disagreement)
    centre = gold_order(scores, rng)
    phi = dispersion(_blocks(scores, centre), round(disagreement, 12))
    return sample_mallows(centre, phi, rng)


@lru_cache(maxsize=4096)
def tier_dispersion(sizes: tuple[int, ...], disagreement: float) -> float:
    """phi such that, over pairs of completions in different tiers of `sizes` (the gold order's tiers,
    best first), the mean swap probability of their tiers is `disagreement`: tiers a < b count
    sizes[a] * sizes[b] pairs, swapped with probability q_(b - a)."""
    pairs = [(b - a, sizes[a] * sizes[b]) for a in range(len(sizes)) for b in range(a + 1, len(sizes))]
    if not pairs or disagreement <= 0.0:
        return 0.0
    total = sum(weight for _, weight in pairs)
    low, high = 0.0, 1.0
    for _ in range(100):
        phi = (low + high) / 2
        mean = sum(weight * swap_probability(d, phi) for d, weight in pairs) / total
        low, high = (phi, high) if mean < disagreement else (low, phi)
    return (low + high) / 2


def gold_tiers(scores: Sequence[float]) -> list[list[int]]:
    """Indices grouped by equal score (within TIE_TOLERANCE), best score first, each tier in index order."""
    tiers: list[list[int]] = []
    for index in sorted(range(len(scores)), key=lambda i: (-scores[i], i)):
        if tiers and abs(scores[tiers[-1][0]] - scores[index]) <= TIE_TOLERANCE:
            tiers[-1].append(index)
        else:
            tiers.append([index])
    return tiers


def noisy_tiers(scores: Sequence[float], disagreement: float, rng: random.Random) -> list[list[int]]:
    """A labeler's ranking with ties: tiers of indices of equal gold score, best tier first, their order
    drawn from Mallows around the gold order (``tier_dispersion``), each tier's members in random order."""
    check_disagreement(disagreement)
    tiers = gold_tiers(scores)
    phi = tier_dispersion(tuple(len(tier) for tier in tiers), round(disagreement, 12))
    ranked = [list(tiers[t]) for t in sample_mallows(range(len(tiers)), phi, rng)]
    for tier in ranked:
        rng.shuffle(tier)
    return ranked


def disagreements(ranking: Sequence[int], scores: Sequence[float]) -> tuple[int, int]:
    """(pairs ranked against the gold order, pairs with distinct gold scores)."""
    place = {item: position for position, item in enumerate(ranking)}
    wrong = compared = 0
    for a in range(len(scores)):
        for b in range(a + 1, len(scores)):
            if abs(scores[a] - scores[b]) <= TIE_TOLERANCE:
                continue
            better, worse = (a, b) if scores[a] > scores[b] else (b, a)
            compared += 1
            wrong += place[better] > place[worse]
    return wrong, compared


def ranking_agreement(first: Sequence[int], second: Sequence[int]) -> float:
    """Share of pairs that two rankings of the same items order the same way."""
    place_a = {item: position for position, item in enumerate(first)}
    place_b = {item: position for position, item in enumerate(second)}
    items = list(place_a)
    pairs = [(x, y) for i, x in enumerate(items) for y in items[i + 1:]]
    same = sum((place_a[x] < place_a[y]) == (place_b[x] < place_b[y]) for x, y in pairs)
    return same / len(pairs)


def expected_labeler_agreement(k: int, disagreement: float) -> float:
    """Expected share of pairs on which two independent labelers agree, for K completions of distinct score.

    Each labeler swaps a pair d apart with probability q_d, so they agree with probability
    1 - 2 q_d (1 - q_d); averaged over pairs this is at least 1 - 2p(1 - p) for p = `disagreement`.
    """
    check_k(k)
    check_disagreement(disagreement)
    phi = dispersion((1,) * k, round(disagreement, 12))
    distances = _distinct_distances((1,) * k)
    return sum(1 - 2 * q * (1 - q) for q in (swap_probability(d, phi) for d in distances)) / len(distances)


def disagreement_for_labeler_agreement(agreement: float, k: int) -> float:
    """The `disagreement` at which two independent labelers of K completions agree on `agreement` of the pairs.

    InstructGPT reports 72.6% agreement between labelers; disagreement_for_labeler_agreement(0.726, 2)
    is about 0.164 (0.18 for K = 9): the setting that matches that figure as agreement between labelers
    rather than between a labeler and the gold order.
    """
    if not 0.5 < agreement <= 1.0:
        raise ValueError(f"agreement must lie in (0.5, 1], got {agreement}")
    low, high = 0.0, 0.5 - 1e-9
    for _ in range(60):
        middle = (low + high) / 2
        low, high = (middle, high) if expected_labeler_agreement(k, middle) > agreement else (low, middle)
    return (low + high) / 2
