"""The gold labeler: scores, demonstrations, noisy rankings and noise-free comparisons of completions.

It is the ground truth of evaluation; a trained reward model is only a proxy for it. Its rankings
carry label noise (ranking.py): with `disagreement` p, a ranking orders a pair of completions with
distinct gold scores against the gold order with probability p, so the best possible reward model
agrees with the labels on 1 - p of such pairs: 0.73 by default, the agreement InstructGPT reports
between its labelers (Ouyang et al. 2022, Section 3.4: 72.6 +/- 1.5%). Two independent noisy rankings
then agree on about 61-63% of pairs (labeler_agreement); to make that figure 73% instead, use
disagreement_for_labeler_agreement(0.726, k), about 0.16-0.18.
"""

from __future__ import annotations

import random
from typing import Sequence

from . import ranking
from .demonstrations import demonstration as write_demonstration
from .prompts import Prompt
from .scoring import GOLD_MAXIMUM, Score, Scorer
from .world import World

RandomLike = random.Random | int | None


class GoldLabeler:
    """Judges completions of prompts about `world`.

    Args:
        world: the world whose facts are the truth.
        disagreement: probability in [0, 0.5) that a noisy ranking orders a pair with distinct gold
            scores against the gold order.
        seed: seeds the labeler's own rng, used when a call passes no rng.
    """

    gold_maximum: float = GOLD_MAXIMUM

    def __init__(self, world: World, disagreement: float = 0.27, seed: int = 0) -> None:
        ranking.check_disagreement(disagreement)
        self.world = world
        self.disagreement = disagreement
        self.scorer = Scorer(world)
        self._rng = random.Random(f"labeler:{seed}")

    def _random(self, rng: RandomLike) -> random.Random:
        if rng is None:
            return self._rng
        if isinstance(rng, random.Random):
            return rng
        if isinstance(rng, int):
            return random.Random(rng)
        integers = getattr(rng, "integers", None)
        if integers is not None:
            return random.Random(int(integers(2**63)))
        raise TypeError(f"rng must be a random.Random, an int seed, a numpy Generator or None, not {type(rng)}")

    def score(self, prompt: Prompt, completion: str) -> Score:
        """Gold helpful / honest / harmless scores and total (see scoring.py for the definitions)."""
        return self.scorer.score(prompt, completion)

    def demonstration(self, prompt: Prompt, rng: RandomLike = None) -> str:
        """The ideal answer; canonical wording without an rng, varied wording with one (or a seed)."""
        return write_demonstration(self.world, prompt, None if rng is None else self._random(rng))

    def rank(self, prompt: Prompt, completions: Sequence[str], rng: RandomLike = None) -> list[int]:
        """Indices of `completions` from best to worst as a noisy labeler orders them (K = 2..9)."""
        ranking.check_k(len(completions))
        scores = [self.score(prompt, completion).total for completion in completions]
        return ranking.noisy_ranking(scores, self.disagreement, self._random(rng))

    def compare(self, prompt: Prompt, a: str, b: str) -> float:
        """1.0 if `a` has the higher gold total, 0.0 if `b` has, 0.5 on a tie (noise-free, for win rates)."""
        difference = self.score(prompt, a).total - self.score(prompt, b).total
        if abs(difference) <= ranking.TIE_TOLERANCE:
            return 0.5
        return 1.0 if difference > 0 else 0.0

    def agreement_ceiling(self, tie_fraction: float = 0.0) -> float:
        """Expected accuracy of a perfect reward model (the gold score) against the noisy labels.

        1 - disagreement on pairs with distinct gold scores; pairs with tied gold scores are labelled
        at random, so when a share `tie_fraction` of the evaluated pairs is tied, those count 0.5.
        """
        if not 0.0 <= tie_fraction <= 1.0:
            raise ValueError(f"tie_fraction must lie in [0, 1], got {tie_fraction}")
        return (1.0 - tie_fraction) * (1.0 - self.disagreement) + tie_fraction * 0.5

    def labeler_agreement(self, k: int) -> float:
        """Expected share of pairs on which two independent noisy rankings of K distinct completions agree."""
        return ranking.expected_labeler_agreement(k, self.disagreement)
