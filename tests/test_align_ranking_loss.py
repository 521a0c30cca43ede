"""Ranking loss of the reward model against hand computations and a brute-force double loop."""

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
