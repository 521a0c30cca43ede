"""Front doors as a user runs them: clear one-line errors, a trained and evaluated checkpoint."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def run(module, *args, cwd):
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=ENV, capture_output=True, text=True)


@pytest.mark.parametrize(
    "override, expected",
    [
        ("foo=1", "Key 'foo' not in 'TrainConfig'"),
        ("seed=abc", "Value 'abc' of type 'str' could not be converted to Integer"),
        ("algo.clip_epz=0.1", "Key 'clip_epz' not in 'PPOConfig'"),
        ("env.id=NoSuchEnv-v0", "env.id='NoSuchEnv-v0' is not a registered Gymnasium environment"),
        ("env.id=FrozenLake-v1", "observation space Discrete(16) is not supported by agent=mlp"),
        ("env.id=CarRacing-v3", "env.id='CarRacing-v3' could not be built"),
        ("env=gym", "env.id is required and has no value"),
        ("algo.target_kl=0.05", "algo.target_kl was renamed algo.early_stop_kl in ppo-core 0.2"),
    ],
)
def test_bad_config_gives_one_clear_line(tmp_path, override, expected):
    result = run("ppo_core.train", override, "total_timesteps=256", "progress=false", cwd=tmp_path)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    if expected is not None:
        assert expected in result.stderr


def test_train_then_evaluate_a_checkpoint(tmp_path):
    result = run("ppo_core.train", "total_timesteps=2048", "eval_episodes=2", "progress=false",
                 "hydra.run.dir=run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    last = result.stdout.strip().splitlines()[-1]  # hydra's console log
    assert "final evaluation" in last and "2048 env steps" in last and f"run saved in {tmp_path / 'run'}" in last
    assert last.split(" - ", 1)[1] in (tmp_path / "run" / "train.log").read_text()  # the log is the run's
    ckpt = tmp_path / "run" / "checkpoint.pt"
    result = run("ppo_core.train", f"resume={ckpt}", "algo.learning_rate=1e-3", cwd=tmp_path)
    assert result.returncode == 2 and "algo.learning_rate cannot change on resume" in result.stderr
    result = run("ppo_core.train", f"resume={ckpt}", "total_timesteps=3072", "progress=false", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "resume: total_timesteps=3072 (the run had 2048)" in result.stdout
    assert "3072 env steps" in result.stdout.strip().splitlines()[-1]
    result = run("ppo_core.evaluate", f"checkpoint={ckpt}", "episodes=3", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "CartPole-v1: mean return" in result.stdout and "over 3 episodes" in result.stdout
    result = run("ppo_core.evaluate", f"checkpoint={ckpt}", "episodes=1", "video=true", "video_dir=videos", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert list((tmp_path / "videos").glob("*.mp4"))
    result = run("ppo_core.evaluate", "checkpoint=nope.pt", cwd=tmp_path)
    assert result.returncode == 2 and "checkpoint 'nope.pt' does not exist" in result.stderr
    result = run("ppo_core.evaluate", f"checkpoint={ckpt}", "episodes=many", cwd=tmp_path)
    assert result.returncode == 2 and "episodes" in result.stderr and "Traceback" not in result.stderr
    result = run("ppo_core.evaluate", f"checkpoint={ckpt}", "episodes=0", cwd=tmp_path)
    assert result.returncode == 2 and "episodes=0 is invalid; expected >= 1" in result.stderr
