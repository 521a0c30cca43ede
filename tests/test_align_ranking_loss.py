"""Ranking loss of the reward model against hand computations and a brute-force double loop, and the
reward model's pair accuracies (overall and per group) against hand counts."""

import itertools
import math

import pytest
import torch

from ppo_core.align.ranking_loss import ranking_loss, ranking_pairs


def log_sigmoid(x: float) -> float:
    return -math.log1p(math.exp(-x))


def brute_force(rewards: list[float]) -> float:
    """−1/C(K,2) Σ_{i<j} log σ(r_i − r_j) for rewards listed best to worst, by a double loop."""
    k, total = len(rewards), 0.0
    for i in range(k):
        for j in range(i + 1, k):
            total += log_sigmoid(rewards[i] - rewards[j])
    return -total / math.comb(k, 2)


def test_k2_hand_computation():
    loss, stats = ranking_loss(torch.tensor([[1.0, 0.0]]))
    assert loss.item() == pytest.approx(math.log1p(math.exp(-1.0)), rel=1e-6)
    assert stats["accuracy"].item() == 1.0


def test_k4_hand_computation():
    r = [2.0, 0.5, 1.0, -1.0]  # best to worst; the pair (0.5 ranked above 1.0) is misordered
    pairs = [(2.0, 0.5), (2.0, 1.0), (2.0, -1.0), (0.5, 1.0), (0.5, -1.0), (1.0, -1.0)]
    expected = -sum(log_sigmoid(w - l) for w, l in pairs) / 6
    loss, stats = ranking_loss(torch.tensor([r]))
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert stats["accuracy"].item() == pytest.approx(5 / 6)


@pytest.mark.parametrize("k", [2, 4, 9])
def test_matches_brute_force(k):
    torch.manual_seed(k)
    rewards = torch.randn(5, k, dtype=torch.float64)
    loss, _ = ranking_loss(rewards)
    expected = sum(brute_force(row) for row in rewards.tolist()) / 5
    assert loss.item() == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("k", [2, 4, 9])
def test_explicit_ranking_equals_sorted_rewards(k):
    torch.manual_seed(0)
    rewards = torch.randn(3, k)
    ranking = torch.stack([torch.randperm(k) for _ in range(3)])  # (B, K): best to worst indices
    loss, _ = ranking_loss(rewards, ranking=ranking)
    in_order = torch.stack([rewards[b, ranking[b]] for b in range(3)])
    assert loss.item() == pytest.approx(ranking_loss(in_order)[0].item(), rel=1e-6)


def test_mask_handles_variable_k():
    rewards = torch.tensor([[1.0, 0.2, -0.3, 0.0], [0.5, 0.1, 2.0, 9.0]])
    mask = torch.tensor([[True, True, True, True], [True, True, True, False]])
    loss, _ = ranking_loss(rewards, mask=mask)
    expected = (brute_force([1.0, 0.2, -0.3, 0.0]) + brute_force([0.5, 0.1, 2.0])) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_each_prompt_weighs_equally_whatever_its_k():
    rewards = torch.tensor([[3.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    mask = torch.tensor([[True, True, False], [True, True, True]])
    loss, _ = ranking_loss(rewards, mask=mask)
    assert loss.item() == pytest.approx((brute_force([3.0, 0.0]) + brute_force([0.0, 1.0, 0.0])) / 2, rel=1e-6)


def test_gradient_pushes_winner_up():
    rewards = torch.zeros(1, 4, requires_grad=True)
    ranking_loss(rewards)[0].backward()
    grad = rewards.grad[0]
    assert grad[0] < 0 < grad[3]  # descending the loss raises the best and lowers the worst


@pytest.mark.parametrize("k", range(2, 10))
def test_ranking_gives_all_ordered_pairs(k):
    ranking = list(torch.randperm(k, generator=torch.Generator().manual_seed(k)).tolist())
    pairs = ranking_pairs(ranking)
    assert len(pairs) == math.comb(k, 2) == len(set(pairs))
    position = {c: i for i, c in enumerate(ranking)}
    assert all(position[w] < position[l] for w, l in pairs)
    assert {frozenset(p) for p in pairs} == {frozenset(p) for p in itertools.combinations(range(k), 2)}


def test_pair_agreement_counts_against_labels_gold_and_oracle():
    from ppo_core.align.reward import pair_agreement

    # labeler order: completions 0 > 1 > 2; gold prefers 1 over 0 (a label flip); 1 and 2 tie in gold
    counts = pair_agreement(rewards=[0.0, 1.0, -1.0], gold=[0.5, 0.8, 0.8])
    assert counts["pairs"] == 3 and counts["hits"] == 2  # (1,2) and (0,2) agree with the labels
    assert counts["distinct"] == 2  # (0,1) and (0,2)
    assert counts["distinct_hits"] == 1 and counts["gold_hits"] == 1 and counts["oracle_hits"] == 0


def test_tied_pairs_leave_the_loss():
    # tiers [0, 1, 1, 2]: the middle two are tied, so 5 of the 6 pairs count
    r = [2.0, 0.5, 1.0, -1.0]
    pairs = [(2.0, 0.5), (2.0, 1.0), (2.0, -1.0), (0.5, -1.0), (1.0, -1.0)]
    loss, stats = ranking_loss(torch.tensor([r]), tiers=torch.tensor([[0, 1, 1, 2]]))
    assert loss.item() == pytest.approx(-sum(log_sigmoid(w - l) for w, l in pairs) / 5, rel=1e-6)
    assert stats["accuracy"].item() == 1.0
    # a prompt whose completions are all tied carries no comparison and does not dilute the others
    both = torch.tensor([[1.0, 0.0], [5.0, -5.0]])
    loss, _ = ranking_loss(both, tiers=torch.tensor([[0, 1], [0, 0]]))
    assert loss.item() == pytest.approx(math.log1p(math.exp(-1.0)), rel=1e-6)
    assert ranking_loss(both, tiers=torch.tensor([[0, 1], [0, 1]]))[0].item() == pytest.approx(
        ranking_loss(both)[0].item())


class LastTokenReward(torch.nn.Module):
    """A stand-in reward model: r(x, y) = the sequence's last real token id (right padding, pad 0)."""

    def __init__(self):
        super().__init__()
        self.unused = torch.nn.Parameter(torch.zeros(()))  # gives the module a device

    def forward(self, input_ids, attention_mask):
        last = attention_mask.sum(1) - 1
        return input_ids[torch.arange(len(input_ids)), last].float()


def test_evaluate_rankings_reports_each_group_against_a_hand_count():
    from ppo_core.align.reward import RankedPrompt, evaluate_rankings

    # completions in the labeler's order; the reward is the completion's last token
    a1 = RankedPrompt([5], [[3], [1], [2]], gold=[1.0, 0.6, 0.8], group="a")  # gold flips (1, 2); RM: 3 > 2 > 1
    a2 = RankedPrompt([5, 5], [[2], [4]], gold=[0.9, 0.4], group="a")  # RM orders against label and gold
    b1 = RankedPrompt([7], [[9], [8]], gold=[0.5, 0.5], group="b")  # tied gold: no distinct pair
    stats = evaluate_rankings(LastTokenReward(), [a1, a2, b1], pad_id=0, batch_size=2)
    # group a: pairs (3,1) (3,2) (1,2) of a1 and (2,4) of a2, all of distinct gold.
    # vs labels: 3>1 yes, 3>2 yes, 1>2 no; 2>4 no -> 2/4.  vs gold: a1 (0,1) yes, (0,2) yes, (1,2) gold
    # prefers 2 (0.8) and the RM does too -> yes; a2 no -> 3/4.  gold vs labels: a1 (1,2) flipped -> 2/3 of
    # a1 + 1/1 of a2 = 3/4.
    assert stats["distinct/a"] == 4 and stats["distinct_fraction/a"] == 1.0
    assert stats["distinct_accuracy/a"] == 0.5
    assert stats["gold_accuracy/a"] == 0.75
    assert stats["oracle_accuracy/a"] == 0.75
    # group b: one pair, tied in gold; the RM agrees with the label (9 > 8); no distinct pair to judge on
    assert stats["distinct/b"] == 0 and stats["accuracy/b"] == 1.0 and stats["distinct_fraction/b"] == 0.0
    assert math.isnan(stats["distinct_accuracy/b"]) and math.isnan(stats["gold_accuracy/b"])
    # all prompts: 5 pairs, 3 hits against the labels; the 4 distinct pairs are group a's
    assert stats["accuracy"] == 3 / 5 and stats["distinct_accuracy"] == 0.5 and stats["gold_accuracy"] == 0.75
    assert stats["mean"] == pytest.approx(sum([3, 1, 2, 2, 4, 9, 8]) / 7)
    # prompts without a group add no per-group keys
    plain = evaluate_rankings(LastTokenReward(), [RankedPrompt([5], [[3], [1]], gold=[1.0, 0.0])], 0, 4)
    assert not any("/" in key for key in plain)


@pytest.mark.parametrize("training", [True, False])
def test_evaluate_rankings_leaves_the_model_in_the_mode_it_found(training):
    from ppo_core.align.reward import RankedPrompt, evaluate_rankings

    model = LastTokenReward().train(training)
    evaluate_rankings(model, [RankedPrompt([5], [[3], [1]], gold=[1.0, 0.0])], 0, 4)
    assert model.training is training
