"""The public Python API: the same composition, training, resumption and evaluation as the CLIs."""

import json

import pytest

from ppo_core import api, checkpoint
from ppo_core.errors import ConfigError
from tests.test_trainer import assert_same_parameters, train_until_first_checkpoint

SHORT = ("env=cartpole", "algo=ppo", "total_timesteps=2048", "algo.num_steps=64", "env.num_envs=4",
         "eval_every=1024", "eval_episodes=2", "checkpoint_every=1024", "progress=false", "seed=3")


def final_parameters(run_dir):
    return checkpoint.load(run_dir / "checkpoint.pt")["model"]


def test_train_returns_the_summary_it_writes(tmp_path):
    summary = api.train(api.make_config(*SHORT), run_dir=tmp_path / "run")
    written = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["env_steps"] == written["env_steps"] == 2048
    assert summary["eval_mean_return"] == written["eval_mean_return"] == summary["eval_history"][-1]["mean_reward"]
    assert written["config"]["algo"]["name"] == "ppo" and written["config"]["objective"]["name"] == "none"


def test_resume_finishes_a_killed_run_as_if_it_never_stopped(tmp_path):
    api.train(api.make_config(*SHORT), run_dir=tmp_path / "full")
    train_until_first_checkpoint(api.make_config(*SHORT), tmp_path / "half")
    assert checkpoint.load(tmp_path / "half" / "checkpoint.pt")["global_step"] == 1024
    summary = api.resume(tmp_path / "half" / "checkpoint.pt")
    assert summary["env_steps"] == 2048
    assert_same_parameters(final_parameters(tmp_path / "full"), final_parameters(tmp_path / "half"))


def test_evaluate_scores_the_saved_policy_on_fresh_episodes(tmp_path):
    api.train(api.make_config(*SHORT), run_dir=tmp_path / "run")
    result = api.evaluate(tmp_path / "run" / "checkpoint.pt", episodes=3, seed=7)
    assert len(result.returns) == 3 and all(1 <= r <= 500 for r in result.returns)
    assert result.returns == api.evaluate(tmp_path / "run" / "checkpoint.pt", episodes=3, seed=7).returns
    with pytest.raises(ConfigError, match="episodes=0 is invalid; expected >= 1"):
        api.evaluate(tmp_path / "run" / "checkpoint.pt", episodes=0)


def test_make_config_applies_overrides_and_the_tuned_preset():
    config = api.make_config("env=pendulum", "algo=trpo", "seed=4", "algo.max_kl=0.02")
    assert (config.env.id, config.algo.name, config.seed, config.algo.max_kl) == ("Pendulum-v1", "trpo", 4, 0.02)
    assert config.total_timesteps == 200_000  # conf/tuned/trpo_pendulum.yaml, not the default 100,000
    with pytest.raises(ConfigError, match="algo.target_kl was renamed algo.early_stop_kl"):
        api.make_config("algo.target_kl=0.1")


def test_resume_extends_a_finished_run_and_refuses_settings_it_was_built_with(tmp_path):
    api.train(api.make_config(*SHORT), run_dir=tmp_path / "run")
    path = tmp_path / "run" / "checkpoint.pt"
    with pytest.raises(ConfigError, match=r"algo.learning_rate, env.num_envs cannot change on resume \(only "
                                          r"total_timesteps, eval_every"):
        api.resume(path, "algo.learning_rate=1e-3", "env.num_envs=8")
    with pytest.raises(ConfigError, match=r"env.kwargs.max_episode_steps cannot change on resume"):
        api.resume(path, "+env.kwargs.max_episode_steps=50")
    with pytest.raises(ConfigError, match=r"env cannot change on resume"):
        api.resume(path, "env=acrobot")
    summary = api.resume(path, "total_timesteps=3072", "env=cartpole", "algo=ppo")  # the run's own options
    assert summary["env_steps"] == 3072 and summary["config"]["total_timesteps"] == 3072
    assert summary["config"]["seed"] == 3 and summary["config"]["env"]["num_envs"] == 4  # the run's own
