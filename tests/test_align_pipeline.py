"""pretrain -> SFT -> reward model on the tiny language world, through the functions the CLI calls."""

import dataclasses
import json
import math
import os
import shutil

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from agents.reward_model import RewardModel
from envs.language_world import TASK_KINDS
from ppo_core.align import evaluation
from ppo_core.align.config import compose_align_config
from ppo_core.align.data import pad_sequences
from ppo_core.align.errors import AlignError
from ppo_core.align.evaluation import (Answers, Habits, best_of_n_kl, best_of_n_table, bootstrap_interval, comparison_table,
                                       pretraining_loss, reward_model_agreement, win_rate)
from ppo_core.align.stages import SUMMARY_FILE, run_stage



@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("artifacts"))
    summary = run_stage(compose_align_config(["size=tiny", "stage=all_supervised", f"paths.root={root}"]))
    return root, summary


def test_each_stage_writes_hugging_face_outputs(artifacts):
    root, summary = artifacts
    assert set(summary) == {"pretrain", "sft", "rm"}
    for stage in ("base", "sft"):
        path = os.path.join(root, stage)
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path)
        assert tokenizer.pad_token_id != tokenizer.eos_token_id
        assert model.config.vocab_size == len(tokenizer)
        assert json.load(open(os.path.join(path, SUMMARY_FILE)))["config"]["paths"]["root"] == root
        assert os.listdir(os.path.join(path, "tb"))
    assert summary["sft"]["steps"] >= summary["sft"]["best_step"] >= 0


def test_reward_model_is_normalised_and_scores_batches(artifacts):
    root, summary = artifacts
    rm = RewardModel.from_pretrained(os.path.join(root, "rm"))
    assert rm.offset == pytest.approx(summary["rm"]["offset"])
    assert 0.0 <= summary["rm"]["val"]["distinct_accuracy"] <= 1.0
    assert summary["rm"]["agreement_ceiling"] == pytest.approx(0.836)
    val = summary["rm"]["val"]  # per task kind too; weighted by their pairs, the kinds give the whole
    kinds = [key.split("/")[1] for key in val if key.startswith("distinct/")]
    assert kinds and set(kinds) <= set(TASK_KINDS)
    judged = [k for k in kinds if val[f"distinct/{k}"] > 0]  # a kind without such pairs reports NaN
    assert all(math.isnan(val[f"distinct_accuracy/{k}"]) for k in kinds if k not in judged)
    pairs = sum(val[f"distinct/{k}"] for k in judged)
    assert sum(val[f"distinct_accuracy/{k}"] * val[f"distinct/{k}"] for k in judged) / pairs == pytest.approx(
        val["distinct_accuracy"])
    tokenizer = AutoTokenizer.from_pretrained(os.path.join(root, "rm"))
    ids, mask = pad_sequences([tokenizer("User: hi\nAssistant: hello")["input_ids"], [5, 6]],
                              tokenizer.pad_token_id, "left")
    with torch.no_grad():
        assert rm.score(ids, mask).shape == (2,)


def test_sft_reads_a_missing_base_as_a_clear_error(tmp_path):
    with pytest.raises(AlignError, match="does not exist"):
        run_stage(compose_align_config(["size=tiny", "stage=sft", f"paths.root={tmp_path}"]))


def test_k_outside_range_fails_before_any_work(artifacts, tmp_path):
    root, _ = artifacts
    with pytest.raises(AlignError, match="rm.k=12"):
        run_stage(compose_align_config(["size=tiny", "stage=rm", "rm.k=12", f"paths.root={root}",
                                        f"paths.rm={tmp_path}/rm"]))


def test_rl_and_eval_stages_compare_the_policy_with_sft_and_base(artifacts):
    root, _ = artifacts
    cfg = compose_align_config(["size=tiny", f"paths.root={root}"])
    rl = run_stage(dataclasses.replace(cfg, stage="rl"))
    assert rl["env_steps"] == 64 and os.path.isfile(os.path.join(root, "rl", "policy", "config.json"))
    summary = run_stage(dataclasses.replace(cfg, stage="eval"))
    report = json.load(open(os.path.join(root, "eval", "eval.json")))
    assert report["rows"][-1]["kind"] == "all" and report["rows"][-1]["n"] == summary["n"] > 0
    assert 0.0 <= summary["win_vs_sft"] <= 1.0 and summary["kl"] >= 0.0
    assert {"pretraining_loss_policy", "pretraining_loss_sft", "pretraining_loss_base"} <= set(report)
    assert "| kind | prompt | SFT | policy |" in open(os.path.join(root, "eval", "eval.md")).read()


def test_eval_of_sft_against_itself_ties_everywhere_with_zero_kl(artifacts, tmp_path):
    """With the SFT model as the "policy", every prompt is a tie and the exact KL to SFT is 0."""
    root, _ = artifacts
    shutil.copytree(os.path.join(root, "sft"), tmp_path / "rl" / "policy")
    cfg = compose_align_config(["size=tiny", "stage=eval", f"paths.root={root}", f"paths.rl={tmp_path / 'rl'}",
                                f"paths.eval={tmp_path / 'eval'}"])
    summary = run_stage(cfg)
    assert summary["win_vs_sft"] == 0.5 and summary["kl"] == pytest.approx(0.0, abs=1e-5)
    assert 0.5 <= summary["best_win_vs_sft"] <= 1.0  # the demonstrations score the gold maximum
    assert summary["win_vs_sft_sampled"] == 0.5  # seeded sampling: the same samples from the same model
    assert summary["gold_policy_sampled"] == summary["gold_sft_sampled"]
    assert summary["pretraining_loss_policy"] == pytest.approx(summary["pretraining_loss_sft"])
    assert summary["fact_recall_policy"] == summary["fact_recall_sft"]
    report = json.load(open(tmp_path / "eval" / "eval.json"))
    assert report["reward_model"]["policy_vs_sft_samples"]["pairs"] == 0  # the same samples: every pair tied
    assert report["reward_model"]["sft_vs_sft_samples"]["pairs"] > 0
    best_of = report["best_of_n"]
    assert [row["n"] for row in best_of] == [1, 2, 4, 8, 16]
    # each n picks from a longer prefix of one pool: the best RM score and the best gold never fall
    for smaller, larger in zip(best_of, best_of[1:]):
        assert larger["rm_score"] >= smaller["rm_score"] - 1e-6 and larger["gold_oracle"] >= smaller["gold_oracle"]
    assert best_of[0]["gold"] == best_of[0]["gold_oracle"]  # one candidate: both picks are it
    assert "Best-of-n from SFT's samples" in open(tmp_path / "eval" / "eval.md").read()


def test_the_win_splits_into_habits_fixed_and_the_rest_by_hand():
    """Prompts 0-2 have a habit: SFT shows it on 0 and 1, the policy on 1 and 2 (fixed on 0, taken up on 2).
    The policy wins 0, 3 and 4, ties 1, loses 2: win_vs_sft − ½ = (½ + 0 − ½ + ½ + ½)/5, of which the
    prompts that differ in the habit (0 and 2) give (½ − ½)/5 = 0."""
    gold = lambda values: Answers([""] * 5, torch.tensor(values), torch.zeros(5), None)  # noqa: E731
    policy, sft = gold([1.0, 0.5, 0.2, 0.9, 0.8]), gold([0.5, 0.5, 0.6, 0.1, 0.4])
    habits = Habits(torch.tensor([True, True, True, False, False]), torch.tensor([False, True, True, False, False]),
                    torch.tensor([True, True, False, False, False]))
    row = comparison_table(["a"] * 5, policy, sft, gold([0.0] * 5), habits=habits)[-1]
    assert row["win_vs_sft"] == 0.5 + (0.5 + 0 - 0.5 + 0.5 + 0.5) / 5
    assert row["habit_sft"] == 2 / 3 and row["habit_policy"] == 2 / 3
    assert row["win_from_habits"] == 0.0
    fixed = Habits(habits.applies, torch.tensor([False, True, False, False, False]), habits.sft)  # 0 fixed only
    assert comparison_table(["a"] * 5, policy, sft, gold([0.0] * 5), habits=fixed)[-1]["win_from_habits"] == 0.5 / 5


def test_reward_model_agreement_counts_pairs_of_distinct_gold_by_hand():
    """Five pairs: one tied in gold (left out); gaps 0.05 (RM agrees), 0.2 (disagrees), 0.2 (agrees), 0.5 (agrees)."""
    gold_a, gold_b = torch.tensor([0.5, 0.55, 0.8, 0.4, 1.0]), torch.tensor([0.5, 0.5, 0.6, 0.6, 0.5])
    scores_a, scores_b = torch.tensor([3.0, 1.0, -1.0, 0.0, 2.0]), torch.tensor([0.0, 0.0, 1.0, 1.0, 1.0])
    result = reward_model_agreement(scores_a, gold_a, scores_b, gold_b)
    assert result["pairs"] == 4 and result["accuracy"] == 3 / 4
    assert (result["pairs_gap_0-0.1"], result["pairs_gap_0.1-0.3"], result["pairs_gap_>0.3"]) == (1, 2, 1)
    assert (result["accuracy_gap_0-0.1"], result["accuracy_gap_0.1-0.3"], result["accuracy_gap_>0.3"]) == (1.0, 0.5, 1.0)


def test_the_knowledge_blind_judge_sees_behaviour_and_the_passage_but_not_the_worlds_facts():
    """By hand on three prompts: a wrong yes and a wrong open answer fool the judge who knows only the
    prompt (gold sees them, it ties them with the right answers: half each); a closed answer that
    contradicts its own passage does not; ties count half only where asked."""
    from envs.language_world import GoldLabeler, build_world, make_prompts
    from ppo_core.align.evaluation import knowledge_blind_agreement

    world = build_world(0, "small")
    labeler = GoldLabeler(world)
    prompts = make_prompts(world, None, 0)
    classify = next(p for p in prompts if p.kind == "classify" and p.spec["answer"])
    open_qa = next(p for p in prompts if p.kind == "open_qa" and p.spec["known"])
    closed = next(p for p in prompts if p.kind == "closed_qa" and not p.spec["known"])
    right = [labeler.demonstration(p) for p in (classify, open_qa, closed)]

    def swapped(text, kind, attribute, value):  # the answer with another value of the attribute
        other = next(v for v in world.values(kind, attribute) if v != value and v not in text)
        return text.replace(world.display(value), world.display(other))

    known = world.entity(open_qa.spec["entity"])
    wrong = ["No" + right[0][3:],
             swapped(right[1], known.kind, open_qa.spec["attribute"], known.get(open_qa.spec["attribute"])),
             swapped(right[2], closed.spec["entity_kind"], closed.spec["attribute"],
                     closed.spec["facts"][closed.spec["attribute"]])]
    gold = lambda texts: torch.tensor([labeler.score(p, t).total for p, t in zip((classify, open_qa, closed), texts)])  # noqa: E731
    assert (gold(right) > gold(wrong)).all()
    blind = [labeler.score(p, t, knows_world=False).total for p, t in zip((classify, open_qa, closed), wrong)]
    assert blind[0] == blind[1] == 1.0 and blind[2] < 1.0
    result = knowledge_blind_agreement(labeler, [classify, open_qa, closed], right, gold(right), wrong, gold(wrong))
    assert result["pairs"] == 3 and result["accuracy"] == (0.5 + 0.5 + 1) / 3
    assert reward_model_agreement(torch.ones(3), gold(right), torch.ones(3), gold(wrong))["accuracy"] == 0.0


def test_sentence_log_likelihoods_are_those_of_unpadded_forwards(artifacts):
    root, _ = artifacts
    model = AutoModelForCausalLM.from_pretrained(os.path.join(root, "base"))
    tokenizer = AutoTokenizer.from_pretrained(os.path.join(root, "base"))
    texts = ["The zorbat eats fish.", "Mira lives in a big city with a river.", "Hi."]
    expected = []
    for text in texts:
        ids = torch.tensor([tokenizer(text)["input_ids"]])
        with torch.no_grad():
            log_probs = torch.log_softmax(model(input_ids=ids).logits[0, :-1].double(), -1)
        expected.append(float(log_probs.gather(-1, ids[0, 1:, None]).sum()))
    got = evaluation.sentence_log_likelihoods(model, tokenizer, texts, batch_size=2)
    assert got.tolist() == pytest.approx(expected, rel=1e-5)


def test_fact_recall_asks_each_fact_against_false_values_in_one_wording(monkeypatch):
    """Each group of candidate sentences states one fact with its true value first and false values after,
    as the world's fact checker reads them; a model that scores true sentences higher recalls every fact,
    one that cannot tell them apart none."""
    from envs.language_world import build_world
    from envs.language_world.claims import FactChecker

    world = build_world(0, "tiny")
    checker = FactChecker(world)
    seen = []

    def truthful(model, tokenizer, texts, batch_size=64):
        seen.extend(texts)
        verdicts = [checker.read(t, None, {}, frozenset()).claims for t in texts]
        return torch.tensor([float(bool(c) and all(claim.true for claim in c)) for c in verdicts])

    monkeypatch.setattr(evaluation, "sentence_log_likelihoods", truthful)
    assert evaluation.fact_recall(None, None, world, count=40, seed=0) == 1.0
    groups = [seen[i:i + 4] for i in range(0, len(seen), 4)]
    assert len(groups) == 40 and all(len(set(g)) == 4 for g in groups)
    assert all(len(set(g[0].split())) - len(set(g[0].split()) & set(g[1].split())) <= 3 for g in groups)
    monkeypatch.setattr(evaluation, "sentence_log_likelihoods", lambda m, t, texts, batch_size=64: torch.zeros(len(texts)))
    assert evaluation.fact_recall(None, None, world, count=40, seed=0) == 0.0


def test_bootstrap_interval_matches_the_normal_approximation_of_a_proportion():
    """400 prompts won with probability 0.3: the 95% interval is p ± 1.96·√(p(1−p)/n), to a few percent."""
    wins = (torch.rand(400, generator=torch.Generator().manual_seed(0)) < 0.3).double()
    p = float(wins.mean())
    lo, hi = bootstrap_interval(wins, seed=1)
    half_width = 1.96 * math.sqrt(p * (1 - p) / 400)
    assert lo < p < hi and (hi - lo) / 2 == pytest.approx(half_width, rel=0.08)
    assert bootstrap_interval(torch.full((50,), 0.5), seed=1) == [0.5, 0.5]
    assert bootstrap_interval(wins, seed=1) == [lo, hi]  # reproducible from its seed


def test_best_of_n_picks_by_the_reward_model_from_a_growing_prefix_of_the_pool():
    scores = torch.tensor([[0.1, 0.9, 0.0], [0.5, 0.2, 0.3], [0.4, 0.1, 0.8], [0.9, 0.0, 0.1]])  # (S=4, M=3)
    gold = torch.tensor([[0.2, 0.6, 0.4], [0.8, 0.9, 0.1], [0.3, 1.0, 0.7], [0.6, 0.3, 1.0]])
    against = torch.tensor([0.5, 0.6, 0.7])
    rows = {row["n"]: row for row in best_of_n_table(scores, gold, against, seed=0)}
    assert sorted(rows) == [1, 2, 4]
    picks = {1: [0.2, 0.6, 0.4], 2: [0.8, 0.6, 0.1], 4: [0.6, 0.6, 0.7]}  # gold of each prompt's RM pick, by hand
    oracle = {1: [0.2, 0.6, 0.4], 2: [0.8, 0.9, 0.4], 4: [0.8, 1.0, 1.0]}
    for n, row in rows.items():
        assert row["gold"] == pytest.approx(sum(picks[n]) / 3) and row["gold_oracle"] == pytest.approx(sum(oracle[n]) / 3)
        assert row["win_vs_sft_sampled"] == win_rate(torch.tensor(picks[n]), against)
        assert row["kl_bon"] == best_of_n_kl(n)
    assert rows[4]["rm_score"] == pytest.approx((0.9 + 0.9 + 0.8) / 3)


def test_best_of_n_kl_is_the_exact_kl_of_best_of_n_over_many_distinct_outcomes():
    """π uniform over K outcomes with distinct rewards: best-of-n picks the i-th best with probability
    (i/K)^n − ((i−1)/K)^n, and its exact KL to π tends to log n − (n − 1)/n as K grows."""
    K = 100_000
    ranks = torch.arange(1, K + 1, dtype=torch.float64) / K
    for n in (1, 2, 4, 16):
        p = ranks**n - (ranks - 1 / K) ** n
        exact = float((p * torch.log(p * K)).sum())
        assert exact == pytest.approx(best_of_n_kl(n), abs=1e-3)


def test_eval_needs_an_rl_policy_and_a_known_split(artifacts, tmp_path):
    root, _ = artifacts
    with pytest.raises(AlignError, match="no RL policy in .*run `python -m ppo_core.align stage=rl` first"):
        run_stage(compose_align_config(["size=tiny", "stage=eval", f"paths.root={root}", f"paths.rl={tmp_path}"]))
    with pytest.raises(AlignError, match="eval.split='dev' is unknown"):
        run_stage(compose_align_config(["size=tiny", "stage=eval", f"paths.root={root}", "eval.split=dev"]))


def test_win_rate_counts_ties_half():
    policy = torch.tensor([0.9, 0.5, 0.2, 0.7])
    other = torch.tensor([0.8, 0.5, 0.3, 0.7])
    assert win_rate(policy, other) == (1 + 0.5 + 0 + 0.5) / 4


def test_comparison_table_caps_the_win_rate_with_the_best_known_answers():
    """Where SFT already scores the maximum, the best answers only tie: best_win_vs_sft by hand."""
    def answers(gold, sampled=None):
        sampled = None if sampled is None else torch.tensor(sampled)
        return Answers([""] * len(gold), torch.tensor(gold), torch.zeros(len(gold)), None, sampled)

    kinds = ["a", "a", "b", "b"]
    sft = answers([1.0, 0.6, 1.0, 0.2], sampled=[0.4, 0.6, 1.0, 0.2])
    policy = answers([1.0, 0.8, 0.9, 0.2], sampled=[1.0, 0.5, 1.0, 0.3])
    best = torch.tensor([1.0] * 4)
    rows = {row["kind"]: row for row in comparison_table(kinds, policy, sft, answers([0.0] * 4), best)}
    assert rows["a"]["best_win_vs_sft"] == (0.5 + 1) / 2 and rows["b"]["best_win_vs_sft"] == (0.5 + 1) / 2
    assert rows["all"]["best_win_vs_sft"] == 0.75
    assert rows["all"]["win_vs_sft"] == (0.5 + 1 + 0 + 0.5) / 4
    assert rows["all"]["win_vs_sft_sampled"] == (1 + 0 + 0.5 + 1) / 4
    assert rows["all"]["best_win_vs_sft_sampled"] == (1 + 1 + 0.5 + 1) / 4
    assert rows["a"]["gold_sft_sampled"] == pytest.approx(0.5)
    greedy_only = comparison_table(kinds, answers([1.0] * 4), answers([0.5] * 4), answers([0.0] * 4))
    assert "win_vs_sft_sampled" not in greedy_only[-1] and "best_win_vs_sft" not in greedy_only[-1]


def test_pretraining_loss_is_the_mean_next_token_nll(artifacts):
    root, _ = artifacts
    model = AutoModelForCausalLM.from_pretrained(os.path.join(root, "base"))
    blocks = torch.randint(0, model.config.vocab_size, (3, 10))
    log_probs = torch.log_softmax(model(input_ids=blocks).logits[:, :-1].double(), -1)
    expected = -log_probs.gather(-1, blocks[:, 1:, None]).mean().item()
    assert pretraining_loss(model, blocks, batch_size=2) == pytest.approx(expected, rel=1e-5)
