"""The gold labeler: scores, demonstrations, noisy rankings and noise-free comparisons of completions.

It is the ground truth of evaluation; a trained reward model is only a proxy for it. Its rankings
carry label noise (ranking.py): with `disagreement` p, a ranking orders a pair of completions with
distinct gold scores against the gold order with probability p.

The default p matches InstructGPT's inter-labeler agreement (Ouyang et al. 2022, Section 3.4: labelers
agree with each other on 72.6 +/- 1.5% of comparisons). Two labelers who each flip a pair against the
gold order independently with probability p agree on it with probability

    (1 - p)**2 + p**2 = 0.726   =>   p = (1 - sqrt(2 * 0.726 - 1)) / 2 = 0.164   (DEFAULT_DISAGREEMENT).

(With K > 2 the Mallows noise confuses near neighbours more than far ones, so labeler_agreement(K)
is a little higher, 0.73-0.75.) The reward model is scored against one labeler's held-out rankings, so
its ceiling (agreement_ceiling) is what a perfect reward model, the gold score itself, reaches on
them: 1 - p = 0.836 on pairs with distinct gold scores. InstructGPT compares its reward model with the
inter-labeler agreement instead (72.4% against 72.6%); that bar, labeler_agreement(K), is lower: a
second labeler's own noise costs it too.
"""

from __future__ import annotations

import math
import random
from typing import Mapping, Sequence

from . import ranking
from .demonstrations import check_slips, demonstration as write_demonstration
from .prompts import Prompt
from .scoring import GOLD_MAXIMUM, Score, Scorer
from .world import World

RandomLike = random.Random | int | None

INTERLABELER_AGREEMENT = 0.726
"""Share of comparisons on which two InstructGPT labelers agreed (Ouyang et al. 2022, Section 3.4)."""
DEFAULT_DISAGREEMENT = round((1 - math.sqrt(2 * INTERLABELER_AGREEMENT - 1)) / 2, 3)
"""0.164: the per-pair flip rate p with (1 - p)**2 + p**2 = INTERLABELER_AGREEMENT."""


class GoldLabeler:
    """Judges completions of prompts about `world`.

    Args:
        world: the world whose facts are the truth.
        disagreement: probability in [0, 0.5) that a noisy ranking orders a pair with distinct gold
            scores against the gold order.
        seed: seeds the labeler's own rng, used when a call passes no rng.
        slips: {task kind: rate} of the labeler's habits when writing demonstrations for SFT
            (demonstrations.py); none by default, so `demonstration` is ideal unless asked.
    """

    gold_maximum: float = GOLD_MAXIMUM

    def __init__(self, world: World, disagreement: float = DEFAULT_DISAGREEMENT, seed: int = 0,
                 slips: Mapping[str, float] | None = None) -> None:
        ranking.check_disagreement(disagreement)
        self.world = world
        self.disagreement = disagreement
        self.slips = check_slips(slips or {})
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

    def score(self, prompt: Prompt, completion: str, knows_world: bool = True) -> Score:
        """Gold helpful / honest / harmless scores and total (see scoring.py for the definitions);
        ``knows_world=False``: a judge's who knows only what the prompt tells (``Scorer.score``)."""
        return self.scorer.score(prompt, completion, knows_world)

    def shows_habit(self, prompt: Prompt, completion: str) -> bool | None:
        """Whether `completion` shows this labeler's planted habit for the prompt's kind (scoring.py);
        None where the kind has none (so a policy's win can be split into habits fixed and the rest)."""
        return self.scorer.shows_habit(prompt, completion)

    def demonstration(self, prompt: Prompt, rng: RandomLike = None, written: bool = False) -> str:
        """The ideal answer; canonical wording without an rng, varied wording with one (or a seed).
        `written`: as the labeler writes it for SFT, with its slips (needs an rng)."""
        if written and rng is None and any(self.slips.values()):
            raise ValueError("a written demonstration with slips needs an rng to draw them from")
        return write_demonstration(self.world, prompt, None if rng is None else self._random(rng),
                                   self.slips if written else None)

    def rank(self, prompt: Prompt, completions: Sequence[str], rng: RandomLike = None) -> list[int]:
        """Indices of `completions` from best to worst as a noisy labeler orders them (K = 2..9)."""
        ranking.check_k(len(completions))
        scores = [self.score(prompt, completion).total for completion in completions]
        return ranking.noisy_ranking(scores, self.disagreement, self._random(rng))

    def rank_tiers(self, prompt: Prompt, completions: Sequence[str], rng: RandomLike = None) -> list[list[int]]:
        """A noisy ranking with ties marked: tiers of indices, best first, every pair of equal gold score
        in one tier (ranking.noisy_tiers).

        A labeler shown two equally good answers says so rather than picking one at random (with
        `rank`, half of such pairs would teach a reward model a preference that does not exist), wherever
        the noise would have placed them apart. Pairs of distinct gold score are never tied and are
        swapped against the gold order at the same rate `disagreement` as by `rank`.
        """
        ranking.check_k(len(completions))
        scores = [self.score(prompt, completion).total for completion in completions]
        return ranking.noisy_tiers(scores, self.disagreement, self._random(rng))

    def compare(self, prompt: Prompt, a: str, b: str) -> float:
        """1.0 if `a` has the higher gold total, 0.0 if `b` has, 0.5 on a tie (noise-free, for win rates)."""
        difference = self.score(prompt, a).total - self.score(prompt, b).total
        if abs(difference) <= ranking.TIE_TOLERANCE:
            return 0.5
        return 1.0 if difference > 0 else 0.0

    def agreement_ceiling(self, tie_fraction: float = 0.0) -> float:
        """Expected accuracy of a perfect reward model (the gold score) against one labeler's noisy labels.

        1 - disagreement on pairs with distinct gold scores; pairs with tied gold scores are labelled
        at random, so when a share `tie_fraction` of the evaluated pairs is tied, those count 0.5.
        """
        if not 0.0 <= tie_fraction <= 1.0:
            raise ValueError(f"tie_fraction must lie in [0, 1], got {tie_fraction}")
        return (1.0 - tie_fraction) * (1.0 - self.disagreement) + tie_fraction * 0.5

    def labeler_agreement(self, k: int) -> float:
        """Expected share of pairs on which two independent noisy rankings of K distinct completions agree."""
        return ranking.expected_labeler_agreement(k, self.disagreement)
