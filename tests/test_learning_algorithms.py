"""Each algorithm learns CartPole-v1 through the one Trainer, in a short run with a fixed seed."""

import pytest

from ppo_core.build import build_trainer
from tests.conftest import make_config

# Budgets keep each run under ~10 s on one core; longer studies live in benchmarks/.
RUNS = {
    "ppo": ("total_timesteps=30720",),
    "trpo": ("total_timesteps=61440", "env.num_envs=8", "algo.num_steps=256"),  # 30 updates: 28 of seeds 0-29 pass (15: 22)
    "reinforce": ("total_timesteps=40960",),
}


@pytest.mark.slow
@pytest.mark.parametrize("algo", sorted(RUNS))
def test_each_algorithm_learns_cartpole(tmp_path, algo):
    config = make_config(f"algo={algo}", *RUNS[algo], "eval_every=0", "eval_episodes=10", "checkpoint_every=0",
                         "seed=0")
    trainer = build_trainer(config, tmp_path)
    initial = trainer.evaluate(0)["mean_reward"]
    final = trainer.train()["eval_mean_return"]
    assert final >= 300 and final >= initial + 150, (algo, initial, final)
