"""PPO and TRPO make progress on Pendulum-v1 (diagonal Gaussian policy) in a short run."""

import pytest

from ppo_core.build import run_training
from tests.conftest import make_config

# The tuned presets cut to ~25k steps, with reward scaling; cheaper updates (TRPO: batched rollouts,
# fewer critic epochs, a wider trust region) fit each run in ~10-15 s on one core.
RUNS = {
    "ppo": ("algo.num_minibatches=32",),
    "trpo": ("env.num_envs=4", "algo.num_steps=512", "algo.vf_iters=5", "algo.max_kl=0.05"),
}


@pytest.mark.slow
@pytest.mark.parametrize("algo", sorted(RUNS))
def test_pendulum_return_improves_over_the_first_evaluation(tmp_path, algo):
    config = make_config(f"algo={algo}", "env=pendulum", *RUNS[algo], "env.normalize_reward=true",
                         "total_timesteps=24576", "eval_every=4096", "eval_episodes=5", "checkpoint_every=0", "seed=0")
    returns = [e["mean_reward"] for e in run_training(config, tmp_path)["eval_history"]]
    assert len(returns) == 6
    assert (returns[-1] + returns[-2]) / 2 >= returns[0] + 200, (algo, [round(r) for r in returns])
