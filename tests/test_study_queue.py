"""The classic-control study's job queue alternates our runs with the peer's runs of the same seed."""

import importlib.util
import sys
from pathlib import Path

import pytest

STUDY = Path(__file__).resolve().parents[1] / "benchmarks" / "classic_control_study.py"


@pytest.fixture(scope="module")
def study():
    spec = importlib.util.spec_from_file_location("classic_control_study", STUDY)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_queue_alternates_ours_and_peer_seed_by_seed_then_runs_the_unpaired(study):
    jobs = study.study_queue(["ppo", "trpo", "reinforce"], ["cartpole", "pendulum"], ["reinforce_pendulum"],
                             seeds=2, peer_seeds=2, with_peers=True)
    expected = [
        ("ppo", "cartpole", 0), ("sb3_ppo", "cartpole", 0), ("trpo", "cartpole", 0), ("sb3_trpo", "cartpole", 0),
        ("ppo", "cartpole", 1), ("sb3_ppo", "cartpole", 1), ("trpo", "cartpole", 1), ("sb3_trpo", "cartpole", 1),
        ("reinforce", "cartpole", 0), ("reinforce", "cartpole", 1),
        ("ppo", "pendulum", 0), ("sb3_ppo", "pendulum", 0), ("trpo", "pendulum", 0), ("sb3_trpo", "pendulum", 0),
        ("ppo", "pendulum", 1), ("sb3_ppo", "pendulum", 1), ("trpo", "pendulum", 1), ("sb3_trpo", "pendulum", 1),
    ]
    assert jobs == expected


def test_skipping_our_pair_skips_its_peer(study):
    jobs = study.study_queue(["ppo", "trpo"], ["cartpole", "acrobot"], ["ppo_cartpole"], seeds=1, peer_seeds=1,
                             with_peers=True)
    assert jobs == [("trpo", "cartpole", 0), ("sb3_trpo", "cartpole", 0),
                    ("ppo", "acrobot", 0), ("sb3_ppo", "acrobot", 0),
                    ("trpo", "acrobot", 0), ("sb3_trpo", "acrobot", 0)]


def test_queue_with_fewer_peer_seeds_or_no_peers(study):
    fewer = study.study_queue(["trpo"], ["acrobot"], [], seeds=3, peer_seeds=1, with_peers=True)
    assert fewer == [("trpo", "acrobot", 0), ("sb3_trpo", "acrobot", 0), ("trpo", "acrobot", 1),
                     ("trpo", "acrobot", 2)]
    more = study.study_queue(["ppo"], ["acrobot"], [], seeds=1, peer_seeds=2, with_peers=True)
    assert more == [("ppo", "acrobot", 0), ("sb3_ppo", "acrobot", 0), ("sb3_ppo", "acrobot", 1)]
    alone = study.study_queue(["ppo", "reinforce"], ["acrobot"], [], seeds=2, peer_seeds=2, with_peers=False)
    assert alone == [("ppo", "acrobot", 0), ("ppo", "acrobot", 1), ("reinforce", "acrobot", 0),
                     ("reinforce", "acrobot", 1)]


def test_a_failed_run_stops_the_study_with_its_error_output(study):
    failing = [sys.executable, "-c", "import sys; sys.stderr.write('no such env: Foo-v9'); sys.exit(3)"]
    with pytest.raises(RuntimeError, match=r"ppo on foo, seed 0 failed with exit code 3:\nno such env: Foo-v9"):
        study.run_process(failing, "ppo on foo, seed 0")


def test_a_batched_pair_is_one_job_before_its_peers_seeds(study):
    jobs = study.study_queue(["ppo", "trpo"], ["cartpole"], [], seeds=2, peer_seeds=2, with_peers=True,
                             batched=frozenset({"ppo_cartpole"}))
    assert jobs == [("ppo", "cartpole", (0, 1)), ("sb3_ppo", "cartpole", 0), ("trpo", "cartpole", 0),
                    ("sb3_trpo", "cartpole", 0), ("sb3_ppo", "cartpole", 1), ("trpo", "cartpole", 1),
                    ("sb3_trpo", "cartpole", 1)]


def test_the_study_batches_the_presets_a_seed_batch_takes(study):
    pairs = study.batchable_pairs(["ppo", "trpo", "reinforce"], ["cartpole", "pendulum"])
    assert pairs == {"ppo_cartpole", "trpo_cartpole", "trpo_pendulum", "reinforce_cartpole", "reinforce_pendulum"}
    # PPO's Pendulum preset explores with gSDE, which a seed batch does not take


def test_seed_batches_run_first_the_largest_capped_budget_first(study):
    jobs = [("ppo", "cartpole", (0, 1)), ("sb3_ppo", "cartpole", 0), ("trpo", "cartpole", (0, 1)),
            ("ppo", "acrobot", (0, 1)), ("sb3_ppo", "acrobot", 0), ("reinforce", "acrobot", (0, 1)),
            ("reinforce", "acrobot", 2)]
    budgets = {("ppo", "cartpole"): (100_000, 1), ("trpo", "cartpole"): (100_000, 1),
               ("ppo", "acrobot"): (1_000_000, 1), ("reinforce", "acrobot"): (500_000, 1)}
    assert study.batches_first(jobs, budgets, cap=10**9) == [
        ("ppo", "acrobot", (0, 1)), ("reinforce", "acrobot", (0, 1)), ("ppo", "cartpole", (0, 1)),
        ("trpo", "cartpole", (0, 1)), ("sb3_ppo", "cartpole", 0), ("sb3_ppo", "acrobot", 0),
        ("reinforce", "acrobot", 2)]
    # capped at 100k, every batch's budget ties and the queue's order stands
    assert [job[:2] for job in study.batches_first(jobs, budgets, cap=100_000)[:4]] == [
        ("ppo", "cartpole"), ("trpo", "cartpole"), ("ppo", "acrobot"), ("reinforce", "acrobot")]
