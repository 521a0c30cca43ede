"""Short learning runs with fixed seeds (long studies live in benchmarks/)."""

import pytest

from ppo_core.build import run_training
from tests.conftest import make_config


@pytest.mark.slow
def test_ppo_learns_cartpole(tmp_path):
    summary = run_training(make_config("total_timesteps=50000", "eval_every=0", "seed=0"), tmp_path)
    first_eval_free_return = summary["eval_mean_return"]
    assert first_eval_free_return >= 400, summary
