"""Every algorithm × task composes with its tuned preset; bad algorithm settings fail with one line."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ppo_core.build import build_trainer
from ppo_core.config import ReinforceConfig, TRPOConfig
from ppo_core.errors import ConfigError
from tests.conftest import make_config

ROOT = Path(__file__).resolve().parents[1]
ALGOS = ("ppo", "trpo", "reinforce")
ENVS = {"cartpole": "CartPole-v1", "acrobot": "Acrobot-v1", "mountaincar": "MountainCar-v0",
        "mountaincar_continuous": "MountainCarContinuous-v0", "pendulum": "Pendulum-v1"}


@pytest.mark.parametrize("algo", ALGOS)
@pytest.mark.parametrize("env", sorted(ENVS))
def test_every_pair_composes_with_a_marked_tuned_preset(algo, env):
    config = make_config(f"algo={algo}", f"env={env}")
    assert config.algo.name == algo and config.env.id == ENVS[env]
    preset = ROOT / "conf" / "tuned" / f"{algo}_{env}.yaml"
    header = "".join(preset.read_text().splitlines(keepends=True)[:3])
    assert preset.read_text().startswith("# @package _global_") and "erified" in header


def test_tuned_values_land_and_command_line_overrides_win():
    config = make_config("algo=trpo", "env=cartpole")
    assert isinstance(config.algo, TRPOConfig)
    assert (config.env.num_envs, config.algo.num_steps, config.algo.damping, config.algo.vf_iters) == (8, 128, 1e-3, 20)
    assert config.total_timesteps == 100_000
    assert make_config("algo=trpo", "env=cartpole", "total_timesteps=1024").total_timesteps == 1024
    acrobot = make_config("algo=reinforce", "env=acrobot")
    assert isinstance(acrobot.algo, ReinforceConfig) and acrobot.algo.gae_lambda == 1.0
    assert acrobot.env.normalize_obs and acrobot.env.normalize_reward


def run_train(*overrides: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "ppo_core.train", *overrides, "total_timesteps=256", "progress=false"],
                          cwd=cwd, env=env, capture_output=True, text=True)


@pytest.mark.parametrize(
    "overrides, expected",
    [
        (("algo=trpo", "algo.max_kl=abc"), "full_key: algo.max_kl"),
        (("algo=trpo", "algo.clip_eps=0.1"), "Key 'clip_eps' not in 'TRPOConfig'"),
        (("algo=reinforce", "algo.baseline=maybe"), "full_key: algo.baseline"),
        (("env=text_bandit", "agent=lm", "agent.top_k=5"), "Key 'top_k' not in 'LMAgentConfig'"),
    ],
)
def test_mistyped_algorithm_settings_name_the_key(tmp_path, overrides, expected):
    result = run_train(*overrides, cwd=tmp_path)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert expected in result.stderr, result.stderr


@pytest.mark.parametrize(
    "overrides, expected",
    [
        (("algo=trpo", "algo.max_kl=-1"), r"algo.max_kl=-1.0 is invalid; expected > 0"),
        (("algo=reinforce", "algo.num_minibatches=0"), r"algo.num_minibatches=0 is invalid; expected >= 1"),
        (("algo=reinforce", "agent.shared_trunk=true"), r"algo=reinforce fits the critic with its own optimiser"),
        (("stop_at_return=475", "stop_after_evals=0"), r"stop_at_return=475.0 needs stop_after_evals >= 1"),
        (("algo.num_minibatches=0",), r"algo.num_minibatches=0 is invalid; expected >= 1"),
        (("algo.update_epochs=0",), r"algo.update_epochs=0 is invalid; expected >= 1"),
        (("algo.num_steps=0",), r"algo.num_steps=0 is invalid; expected >= 1"),
        (("env.num_envs=0",), r"env.num_envs=0 is invalid; expected >= 1"),
        (("algo.objective=kl_penalty", "algo.kl_target=0"), r"algo.kl_target=0.0 is invalid; expected > 0"),
        (("agent.activation=sigmoid",), r"agent.activation='sigmoid' is unknown; expected one of"),
        (("env=pendulum", "agent.gsde=true", "agent.sde_sample_freq=0"), r"agent.sde_sample_freq=0 must be >= 1"),
    ],
)
def test_unusable_algorithm_settings_are_config_errors(tmp_path, overrides, expected):
    with pytest.raises(ConfigError, match=expected):
        build_trainer(make_config(*overrides, "eval_episodes=0"), tmp_path)


def test_kl_target_is_only_read_by_the_kl_penalty_objective(tmp_path):
    trainer = build_trainer(make_config("algo.kl_target=0", "eval_episodes=0"), tmp_path)
    assert trainer.algorithm.kl_controller is None and "kl_controller" not in trainer.algorithm.state_dict()
