"""The training loop: determinism, checkpoints, resume after SIGKILL, the NaN guard."""

import copy
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from ppo_core import checkpoint, evaluation
from ppo_core.build import build_trainer, run_training
from ppo_core.errors import NonFiniteError
from ppo_core.losses import clipped_surrogate_loss
from tests.conftest import make_config

SMALL = ("total_timesteps=4096", "algo.num_steps=64", "env.num_envs=8", "eval_episodes=2", "eval_every=0")


def parameters(policy):
    """Weights and buffers, and the MLP policy's gSDE noise state (``_extra_state``: a dict)."""
    return {k: v.clone() if isinstance(v, torch.Tensor) else copy.deepcopy(v) for k, v in policy.state_dict().items()}


def assert_same_parameters(a, b):
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], dict):  # gSDE: the noise matrices (or None) and the steps since their draw
            assert a[key].keys() == b[key].keys(), key
            for name, value in a[key].items():
                same = torch.equal(value, b[key][name]) if isinstance(value, torch.Tensor) else value == b[key][name]
                assert same, (key, name)
        else:
            assert torch.equal(a[key], b[key]), key


def test_same_seed_gives_identical_parameters(tmp_path):
    config = make_config(*SMALL, "env.normalize_obs=true", "env.normalize_reward=true")
    runs = []
    for name in ("a", "b"):
        trainer = build_trainer(config, tmp_path / name)
        trainer.train()
        runs.append(parameters(trainer.policy))
    assert_same_parameters(*runs)
    other = build_trainer(make_config(*SMALL, "seed=1"), tmp_path / "c")
    other.train()
    assert not torch.equal(runs[0]["actor.layers.0.weight"], other.policy.state_dict()["actor.layers.0.weight"])


def train_until_first_checkpoint(config, run_dir):
    """A run that dies right after writing its first checkpoint (to be resumed in a fresh trainer)."""
    trainer = build_trainer(config, run_dir)
    real_save = trainer.save_checkpoint

    def save_then_die():
        real_save()
        raise KeyboardInterrupt

    trainer.save_checkpoint = save_then_die
    with pytest.raises(KeyboardInterrupt):
        trainer.train()
    return trainer


@pytest.mark.parametrize("env_id, vectorization",
                         [("CartPole-v1", "vector_entry_point"), ("CartPole-v1", "sync"), ("Acrobot-v1", "batched")])
def test_resume_from_checkpoint_equals_uninterrupted_run(tmp_path, env_id, vectorization):
    overrides = (*SMALL, "total_timesteps=8192", "checkpoint_every=4096", "env.normalize_obs=true",
                 "env.normalize_reward=true", f"env.id={env_id}", f"env.vectorization={vectorization}")
    full = build_trainer(make_config(*overrides), tmp_path / "full")
    full.train()
    half = train_until_first_checkpoint(make_config(*overrides), tmp_path / "half")
    saved = checkpoint.load(tmp_path / "half" / "checkpoint.pt")
    assert "obs_normalizer" in saved["env"] and saved["env"]["obs_normalizer"]["count"] > 1
    resumed = build_trainer(make_config(*overrides, f"resume={tmp_path / 'half' / 'checkpoint.pt'}"), tmp_path / "half")
    torch.testing.assert_close(resumed.env.obs_normalizer.stats.mean, half.env.obs_normalizer.stats.mean)
    resumed.train()
    assert_same_parameters(parameters(full.policy), parameters(resumed.policy))


def test_gsde_run_resumes_mid_noise_period(tmp_path):
    """gSDE redraws its noise every 3 steps; 64-step rollouts end inside a period, so the resumed run
    must carry the drawn matrices and the count (mlp.get_extra_state) to match the uninterrupted one."""
    overrides = (*SMALL, "total_timesteps=1024", "checkpoint_every=512", "env=pendulum", "algo.num_steps=64",
                 "agent.gsde=true", "agent.sde_sample_freq=3")
    full = build_trainer(make_config(*overrides), tmp_path / "full")
    full.train()
    half = train_until_first_checkpoint(make_config(*overrides), tmp_path / "half")
    assert half.policy.acts_since_draw % 3 != 0  # the checkpoint falls inside a noise period
    resumed = build_trainer(make_config(*overrides, f"resume={tmp_path / 'half' / 'checkpoint.pt'}"), tmp_path / "half")
    assert torch.equal(resumed.policy.exploration, half.policy.exploration)
    resumed.train()
    assert_same_parameters(parameters(full.policy), parameters(resumed.policy))


def test_async_run_resumes_with_new_episodes(tmp_path):
    """Sub-envs in other processes cannot be captured: the resumed run resets them (a reset CartPole
    state is within ±0.05) and trains to its budget."""
    overrides = (*SMALL, "total_timesteps=2048", "env.num_envs=2", "checkpoint_every=1024", "env.vectorization=async")
    half = train_until_first_checkpoint(make_config(*overrides), tmp_path)
    half.env.close()
    resumed = build_trainer(make_config(*overrides, f"resume={tmp_path / 'checkpoint.pt'}"), tmp_path)
    assert resumed.global_step == 1024 and resumed.obs.abs().max() <= 0.05
    resumed.train()
    assert resumed.global_step == 2048
    resumed.env.close()


def full_killed_and_resumed(args: list[str], tmp_path: Path) -> tuple[Path, Path, int]:
    """Run the training CLI ``args`` uninterrupted into ``full/``; again into ``killed/``, SIGKILLed as
    soon as its first checkpoint exists; then resume that one in a fresh process. Returns both
    checkpoints and the env step the killed run had reached."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    subprocess.run([*args, f"hydra.run.dir={tmp_path / 'full'}"], check=True, env=env, capture_output=True)
    victim = subprocess.Popen([*args, f"hydra.run.dir={tmp_path / 'killed'}"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = tmp_path / "killed" / "checkpoint.pt"
    deadline = time.time() + 120
    while not ckpt.exists() and time.time() < deadline:
        time.sleep(0.02)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    killed_at = checkpoint.load(ckpt)["global_step"]
    subprocess.run([*args, f"resume={ckpt}"], check=True, env=env, capture_output=True, cwd=tmp_path)  # hydra's dir
    return tmp_path / "full" / "checkpoint.pt", ckpt, killed_at


def test_sigkilled_run_resumes_to_identical_parameters(tmp_path):
    args = [sys.executable, "-m", "ppo_core.train", "progress=false", "total_timesteps=40960", "algo.num_steps=128",
            "checkpoint_every=4096", "eval_episodes=2", "eval_every=0", "env.normalize_obs=true"]
    full_path, ckpt, killed_at = full_killed_and_resumed(args, tmp_path)
    assert killed_at < 40960, "the run finished before it could be killed"
    full, resumed = checkpoint.load(full_path), checkpoint.load(ckpt)
    assert resumed["global_step"] == full["global_step"] == 40960
    assert_same_parameters(full["model"], resumed["model"])
    assert json.loads((tmp_path / "killed" / "summary.json").read_text())["env_steps"] == 40960


def test_non_finite_loss_stops_before_overwriting_the_checkpoint(tmp_path):
    trainer = build_trainer(make_config(*SMALL, "checkpoint_every=512"), tmp_path)
    real_update = trainer.algorithm.update
    calls = []

    def update(batch):
        calls.append(1)
        if len(calls) == 3:
            with torch.no_grad():
                trainer.policy.actor.layers[0].weight.fill_(float("nan"))
        return real_update(batch)

    trainer.algorithm.update = update
    with pytest.raises(NonFiniteError, match="non-finite"):
        trainer.train()
    saved = checkpoint.load(tmp_path / "checkpoint.pt")
    assert saved["iteration"] == 2
    weights = [v for v in saved["model"].values() if isinstance(v, torch.Tensor)]  # beside gSDE's noise state
    assert weights and all(torch.isfinite(v).all() for v in weights)


def test_first_minibatch_of_an_update_has_ratio_one(tmp_path):
    trainer = build_trainer(make_config(*SMALL), tmp_path)
    batch = trainer.compute_batch(trainer.collect_rollout())
    evaluation = trainer.policy.evaluate(batch.obs, batch.actions)
    _, stats = clipped_surrogate_loss(evaluation.log_prob, batch.log_probs, batch.advantages, 0.2, batch.mask)
    assert stats["ratio"].item() == 1.0 and stats["approx_kl"].item() == 0.0


def test_summary_json_has_the_documented_keys(tmp_path):
    summary = run_training(make_config(*SMALL, "eval_episodes=3"), tmp_path)
    written = json.loads((tmp_path / "summary.json").read_text())
    for key in ("eval_mean_return", "eval_std_return", "env_steps", "wall_seconds", "config"):
        assert key in written
    assert written["env_steps"] == 4096 and written["config"]["env"]["id"] == "CartPole-v1"
    assert summary["eval_mean_return"] == written["eval_mean_return"]
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))


@pytest.mark.parametrize("threshold, evaluations, env_steps", [(-1e9, 3, 3 * 512), (1e9, 8, 4096)])
def test_early_stop_after_consecutive_evaluations_at_threshold(tmp_path, threshold, evaluations, env_steps):
    # 64 steps × 8 envs = 512 env steps per iteration, one evaluation each; a threshold every evaluation
    # reaches ends the run after exactly stop_after_evals of them, an unreachable one never does
    config = make_config(*SMALL, "eval_every=512", f"stop_at_return={threshold}", "stop_after_evals=3")
    summary = run_training(config, tmp_path)
    assert len(summary["eval_history"]) == evaluations and summary["env_steps"] == env_steps
    assert summary["stopped_early"] == (env_steps < 4096)
    assert summary["eval_mean_return"] == summary["eval_history"][-1]["mean_reward"]
    assert checkpoint.load(tmp_path / "checkpoint.pt")["global_step"] == env_steps


def test_every_evaluation_draws_new_start_states(tmp_path, monkeypatch):
    seeds = []
    real = evaluation.evaluate_policy
    monkeypatch.setattr(evaluation, "evaluate_policy",
                        lambda policy, env, seed: seeds.append(seed) or real(policy, env, seed))
    run_training(make_config(*SMALL, "eval_every=1024", "eval_episodes=3", "seed=7"), tmp_path)
    # 4096 steps, one evaluation per 1024: episodes seeded 1_000_007.. then 3 further on each time
    assert seeds == [1_000_007, 1_000_010, 1_000_013, 1_000_016]


def test_early_stop_needs_the_evaluations_in_a_row(tmp_path):
    trainer = build_trainer(make_config(*SMALL, "eval_every=512", "stop_at_return=475", "stop_after_evals=3"),
                            tmp_path)
    scripted = iter([500.0, 480.0, 400.0, 475.0, 490.0, 500.0, 500.0, 500.0])
    trainer.evaluate = lambda number: {"mean_reward": next(scripted)}
    summary = trainer.train()
    # the dip at the third evaluation restarts the count: the run ends at the sixth, 6 × 512 steps
    assert [e["mean_reward"] for e in summary["eval_history"]] == [500.0, 480.0, 400.0, 475.0, 490.0, 500.0]
    assert summary["env_steps"] == 6 * 512 and summary["stopped_early"]
