"""The comparison CLI on synthetic run directories with hand-computed answers."""

import csv
import json
import statistics

import numpy as np
import pytest
from scipy.stats import trim_mean

from ppo_core import compare

# Final returns of 8 seeds; CartPole's threshold is 475, Pendulum's −200.
CARTPOLE_PPO = [500.0, 480.0, 475.0, 300.0, 120.0, 499.0, 20.0, 476.0]
CARTPOLE_TRPO = [100.0, 200.0, 300.0, 400.0, 500.0, 490.0, 10.0, 250.0]
PENDULUM_PPO = [-150.0, -180.0, -199.0, -201.0, -900.0, -1200.0, -170.0, -160.0]


def history(final: float, threshold: float, seed: int) -> list[dict]:
    """Three evaluations ending at ``final``; runs that end at or above the threshold first reach it
    at the second evaluation, after 2000 + 100·seed env steps and 10 + seed seconds."""
    reached = final >= threshold
    middle = threshold if reached else min(final, threshold - 1)
    steps = [1000, 2000 + 100 * seed, 3000 + 100 * seed]
    seconds = [5.0, 10.0 + seed, 15.0 + seed]
    returns = [threshold - 1000, middle, final]
    return [{"mean_reward": r, "std_reward": 1.0, "mean_length": 10.0, "env_steps": s, "wall_seconds": w}
            for r, s, w in zip(returns, steps, seconds)]


def write_runs(root, algo: str, env_id: str, finals: list[float]) -> None:
    for seed, final in enumerate(finals):
        run = root / f"{algo}_{env_id}_{seed}"
        run.mkdir(parents=True)
        evals = history(final, compare.THRESHOLDS[env_id], seed)
        summary = {"eval_mean_return": final, "eval_std_return": 1.0, "env_steps": evals[-1]["env_steps"],
                   "wall_seconds": evals[-1]["wall_seconds"], "eval_history": evals,
                   "config": {"algo": {"name": algo}, "env": {"id": env_id}, "seed": seed}}
        (run / "summary.json").write_text(json.dumps(summary))


def hand_iqm(values: list[float]) -> float:
    """Sort, drop the lowest and highest quarter, average the rest."""
    ordered = sorted(values)
    cut = len(ordered) // 4
    middle = ordered[cut:len(ordered) - cut]
    return sum(middle) / len(middle)


@pytest.fixture
def results(tmp_path):
    write_runs(tmp_path / "multirun", "ppo", "CartPole-v1", CARTPOLE_PPO)
    write_runs(tmp_path / "multirun", "trpo", "CartPole-v1", CARTPOLE_TRPO)
    write_runs(tmp_path / "peers", "ppo", "Pendulum-v1", PENDULUM_PPO)
    (tmp_path / "multirun" / "no_eval").mkdir()
    (tmp_path / "multirun" / "no_eval" / "summary.json").write_text(json.dumps({"eval_mean_return": None}))
    text_run = {"eval_mean_return": 0.4, "config": {"algo": {"name": "ppo"}, "env": {"kind": "text_bandit"}, "seed": 0}}
    (tmp_path / "multirun" / "text").mkdir()
    (tmp_path / "multirun" / "text" / "summary.json").write_text(json.dumps(text_run))
    out = tmp_path / "out"
    rows, aggregates = compare.compare([tmp_path / "multirun", tmp_path / "peers"], out)
    return {(r.task, r.algo): r for r in rows}, aggregates, out


def test_iqm_success_rate_and_time_to_threshold_by_hand(results):
    assert {task for task, _ in results[0]} == {"CartPole-v1", "Pendulum-v1"}  # runs without an evaluation or a Gymnasium id are skipped
    rows, _, _ = results
    ppo = rows[("CartPole-v1", "ppo")]
    assert ppo.runs == 8 and ppo.successes == 5  # 500, 480, 475, 499, 476
    assert ppo.iqm == pytest.approx(hand_iqm(CARTPOLE_PPO)) == pytest.approx(trim_mean(CARTPOLE_PPO, 0.25))
    assert hand_iqm(CARTPOLE_PPO) == pytest.approx((300 + 475 + 476 + 480) / 4)
    assert ppo.ci_low <= ppo.iqm <= ppo.ci_high and ppo.ci_low < ppo.ci_high
    reached = [seed for seed, final in enumerate(CARTPOLE_PPO) if final >= 475]
    assert ppo.reached == 5
    assert ppo.median_steps_to_threshold == statistics.median(2000 + 100 * s for s in reached)
    assert ppo.median_seconds_to_threshold == statistics.median(10.0 + s for s in reached)
    trpo = rows[("CartPole-v1", "trpo")]
    assert trpo.successes == 2 and trpo.iqm == pytest.approx(hand_iqm(CARTPOLE_TRPO))
    pendulum = rows[("Pendulum-v1", "ppo")]
    assert pendulum.successes == 5 and pendulum.iqm == pytest.approx(hand_iqm(PENDULUM_PPO))
    assert pendulum.ci_low <= pendulum.iqm <= pendulum.ci_high


def test_aggregate_is_the_iqm_of_normalised_scores_over_tasks(results):
    _, aggregates, _ = results
    normalise = lambda x, task: (x - compare.RANDOM_RETURNS[task]) / (compare.THRESHOLDS[task] - compare.RANDOM_RETURNS[task])  # noqa: E731
    pooled = [normalise(x, "CartPole-v1") for x in CARTPOLE_PPO] + [normalise(x, "Pendulum-v1") for x in PENDULUM_PPO]
    point, low, high, tasks = aggregates["ppo"]
    assert tasks == 2 and point == pytest.approx(hand_iqm(pooled))
    assert low <= point <= high
    assert normalise(compare.THRESHOLDS["Pendulum-v1"], "Pendulum-v1") == 1.0
    assert aggregates["trpo"][3] == 1


def test_bootstrap_is_reproducible_and_single_seeds_have_no_interval():
    x = [np.array([1.0, 5.0, 2.0, 8.0, 3.0])]
    assert compare.iqm_with_ci(x) == compare.iqm_with_ci(x)
    point, low, high = compare.iqm_with_ci([np.array([3.0])])
    assert point == 3.0 and np.isnan(low) and np.isnan(high)


def test_writes_tables_and_plots(results, capsys, tmp_path):
    _, _, out = results
    with open(out / "results.csv") as f:
        table = list(csv.DictReader(f))
    assert [(r["task"], r["algo"]) for r in table] == [("CartPole-v1", "ppo"), ("CartPole-v1", "trpo"),
                                                        ("Pendulum-v1", "ppo")]
    assert float(table[0]["success_rate"]) == 5 / 8
    for name in ("results.md", "curves_CartPole-v1.png", "curves_Pendulum-v1.png", "aggregate.png"):
        assert (out / name).stat().st_size > 0
    compare.main([str(tmp_path / "multirun"), "--out", str(tmp_path / "cli")])
    printed = capsys.readouterr().out
    assert "| CartPole-v1 (≥ 475.0) | ppo | 5/8 |" in printed
    with pytest.raises(SystemExit) as exit_info:
        compare.main([str(tmp_path / "empty")])
    assert exit_info.value.code == 2


def test_runs_that_stopped_early_hold_their_last_evaluation_on_the_curve_grid(tmp_path):
    def run(steps: list[int], returns: list[float]) -> compare.Run:
        history = [{"mean_reward": r, "env_steps": s, "wall_seconds": s / 100} for s, r in zip(steps, returns)]
        return compare.Run("ppo", "CartPole-v1", 0, returns[-1], history, tmp_path)

    stopped = run([1000, 2000], [100.0, 500.0])
    full = run([1000, 2000, 3000, 4000], [50.0, 150.0, 250.0, 350.0])
    grid, curves = compare.curves_on_grid([stopped, full])
    np.testing.assert_array_equal(grid, [1000, 2000, 3000, 4000])
    np.testing.assert_array_equal(curves, [[100.0, 500.0, 500.0, 500.0], [50.0, 150.0, 250.0, 350.0]])
    row = compare.summarise("CartPole-v1", "ppo", [stopped, full])
    assert (row.successes, row.reached, row.median_steps_to_threshold) == (1, 1, 2000)


@pytest.mark.parametrize("content, reason", [
    ('{"eval_mean_return": 500.0, "config": {"algo"', "JSONDecodeError"),
    ("", "JSONDecodeError"),
    ('{"eval_mean_return": 500.0}', "missing field 'config'"),
    ('[1, 2, 3]', "AttributeError"),
])
def test_an_unreadable_summary_is_skipped_and_named(tmp_path, capsys, content, reason):
    from ppo_core.compare import load_runs

    write_runs(tmp_path / "multirun", "ppo", "CartPole-v1", CARTPOLE_PPO)
    bad = tmp_path / "multirun" / "broken" / "summary.json"
    bad.parent.mkdir(parents=True)
    bad.write_text(content)
    runs = load_runs([tmp_path / "multirun"])
    assert len(runs) == len(CARTPOLE_PPO)
    err = capsys.readouterr().err
    assert f"skipped {bad}: not a readable run summary" in err and reason in err
