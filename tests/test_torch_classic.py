"""The torch ports of the classic-control tasks against Gymnasium's own envs stepped by SyncVectorEnv:
the same numbers to float rounding across terminations, time limits and autoresets; normalisation
against GymVecEnv's; snapshots; training and resume; how make_gym_env picks them."""

import dataclasses

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.envs.classic_control.cartpole import CartPoleVectorEnv
from gymnasium.vector import AutoresetMode

from envs.classic_vector import BatchedAcrobot
from envs.make import find_spec, make_gym_env, vectorization_for
from envs.torch_classic import TASKS, TorchClassicVecEnv
from ppo_core import checkpoint
from ppo_core.build import build_trainer
from ppo_core.config import EnvConfig
from ppo_core.errors import ConfigError, NonFiniteError
from ppo_core.validation import validate
from tests.conftest import make_config
from tests.test_trainer import assert_same_parameters, parameters, train_until_first_checkpoint

CPU = torch.device("cpu")
F32 = {"rtol": 1e-6, "atol": 1e-6}  # Gymnasium's observations are float32


def random_action(obs, rng):
    return rng.integers(0, 2, len(obs))


def pump_acrobot(obs, rng):  # torque along the second joint's velocity: swings up, ends episodes
    return np.where(rng.random(len(obs)) < 0.2, rng.integers(0, 3, len(obs)), np.where(obs[:, 5] > 0, 2, 0))


def pump_mountain_car(obs, rng):  # push along the velocity: reaches the flag in about 100 steps
    return np.where(rng.random(len(obs)) < 0.2, rng.integers(0, 3, len(obs)), np.where(obs[:, 1] > 0, 2, 0))


def pump_continuous(obs, rng):  # along the velocity, beyond ±1 at times so the force is clipped
    push = np.where(obs[:, 1:] > 0, 1.0, -1.0) * rng.uniform(0.5, 1.5, (len(obs), 1))
    return push.astype(np.float32)


def random_torque(obs, rng):  # beyond ±2 as well, so the clip is exercised
    return rng.uniform(-3.0, 3.0, size=(len(obs), 1)).astype(np.float32)


CASES = {  # policy, time limit (short, so that copies truncate too)
    "CartPole-v1": (random_action, 40),
    "Acrobot-v1": (pump_acrobot, 150),
    "MountainCar-v0": (pump_mountain_car, 150),
    "MountainCarContinuous-v0": (pump_continuous, 81),
    "Pendulum-v1": (random_torque, 90),
}


def sync_env(env_id, num_envs, **kwargs):
    return gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="sync",
                        vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP}, **kwargs)


def torch_env(env_id, num_envs, limit=None, **kwargs):
    task = TASKS[gym.spec(env_id).entry_point]()
    return TorchClassicVecEnv(task, num_envs, CPU, max_episode_steps=limit, **kwargs)


@pytest.mark.parametrize("env_id", CASES)
def test_torch_env_steps_as_gymnasium(env_id):
    """Float64 state against SyncVectorEnv: observations, rewards, ends and final observations, with a
    start queue of 7 so that it is refilled many times; raw episode returns through the device sums."""
    policy, limit = CASES[env_id]
    num_envs, steps = 5, 700
    reference = sync_env(env_id, num_envs, max_episode_steps=limit)
    env = torch_env(env_id, num_envs, limit, queue_size=7)
    assert env.single_observation_space == reference.single_observation_space
    assert env.single_action_space == reference.single_action_space
    expected, _ = reference.reset(seed=11)
    torch.testing.assert_close(env.reset(seed=11), torch.as_tensor(expected), **F32)
    rng = np.random.default_rng(0)
    returns, running, terminations, truncations = [], np.zeros(num_envs), 0, 0
    for _ in range(steps):
        action = policy(expected, rng)
        expected, reward, terminated, truncated, info = reference.step(action)
        result = env.step(torch.as_tensor(action))
        torch.testing.assert_close(result.obs, torch.as_tensor(expected), **F32)
        torch.testing.assert_close(result.reward, torch.as_tensor(reward, dtype=torch.float32), **F32)
        assert torch.equal(result.terminated, torch.as_tensor(terminated))
        assert torch.equal(result.truncated, torch.as_tensor(truncated))
        ended = np.flatnonzero(terminated | truncated)
        if len(ended):
            torch.testing.assert_close(result.final_obs[ended], torch.as_tensor(np.stack(info["final_obs"][ended])), **F32)
        running += reward
        returns += running[ended].tolist()
        running[ended] = 0.0
        terminations += int(terminated.sum())
        truncations += int(truncated.sum())
    assert truncations > 0
    if env_id != "Pendulum-v1":  # Pendulum never terminates
        assert terminations > 0
    stats = env.pop_episode_stats()
    assert stats.count == len(returns) > num_envs
    assert stats.return_sum == pytest.approx(sum(returns), rel=1e-12)


@pytest.mark.parametrize("env_id", CASES)
def test_float32_state_follows_gymnasium_at_float32_precision(env_id):
    policy, limit = CASES[env_id]
    reference, env = sync_env(env_id, 4, max_episode_steps=limit), torch_env(env_id, 4, limit, dtype=torch.float32)
    expected, _ = reference.reset(seed=3)
    env.reset(seed=3)
    rng = np.random.default_rng(1)
    for _ in range(25):  # before chaotic tasks part ways
        action = policy(expected, rng)
        expected, reward, *_ = reference.step(action)
        result = env.step(torch.as_tensor(action))
        torch.testing.assert_close(result.obs, torch.as_tensor(expected), rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(result.reward, torch.as_tensor(reward, dtype=torch.float32), rtol=1e-4, atol=1e-4)


def test_resets_draw_what_gymnasium_draws_from_each_copys_generator():
    for env_id in CASES:
        reference, env = sync_env(env_id, 3), torch_env(env_id, 3, queue_size=2)
        for seed in (0, None, [5, None, 7], None, None, 9):  # None continues a copy's generator
            torch.testing.assert_close(env.reset(seed=seed), torch.as_tensor(reference.reset(seed=seed)[0]), **F32)


@pytest.mark.parametrize("env_id", ["Acrobot-v1", "Pendulum-v1"])
def test_normalised_observations_and_rewards_are_gym_vec_envs(env_id):
    """Both normalisers on, against GymVecEnv over SyncVectorEnv: the same statistics to float rounding."""
    n, steps = 3, 300
    config = EnvConfig(id=env_id, num_envs=n, normalize_obs=True, normalize_reward=True,
                       kwargs={"max_episode_steps": 40})
    reference = make_gym_env(dataclasses.replace(config, vectorization="sync"), CPU, 0.9)
    env = make_gym_env(dataclasses.replace(config, vectorization="torch"), CPU, 0.9)
    assert isinstance(env, TorchClassicVecEnv)
    torch.testing.assert_close(env.reset(seed=2), reference.reset(seed=2), **F32)
    rng = np.random.default_rng(0)
    policy = CASES[env_id][0]
    for _ in range(steps):
        action = torch.as_tensor(policy(np.zeros((n, 6)), rng))
        expected, result = reference.step(action), env.step(action)
        torch.testing.assert_close(result.obs, expected.obs, **F32)
        torch.testing.assert_close(result.reward, expected.reward, **F32)
        if expected.final_obs is not None:
            truncated = expected.truncated
            torch.testing.assert_close(result.final_obs[truncated], expected.final_obs[truncated], **F32)
    for mine, theirs in ((env.obs_normalizer.stats, reference.obs_normalizer.stats),
                         (env.reward_scaler.stats, reference.reward_scaler.stats)):
        np.testing.assert_allclose(mine.mean.numpy(), theirs.mean, rtol=1e-10)
        np.testing.assert_allclose(mine.var.numpy(), theirs.var, rtol=1e-10)
        assert float(mine.count) == theirs.count
    env.set_training(False)
    frozen = env.obs_normalizer.stats.mean.clone()
    env.step(action)
    assert torch.equal(env.obs_normalizer.stats.mean, frozen)


def test_snapshot_through_a_weights_only_checkpoint_continues_identically(tmp_path):
    def make():
        return torch_env("CartPole-v1", 3, limit=30, queue_size=5, normalize_obs=True, normalize_reward=True)

    env = make()
    env.reset(seed=4)
    actions = torch.randint(0, 2, (100, 3), generator=torch.Generator().manual_seed(0))
    for action in actions[:42]:  # mid-episode, between two refills of the start queue
        env.step(action)
    state = env.state_dict()
    torch.save(state, tmp_path / "env.pt")
    first = [env.step(action) for action in actions[42:]]
    for loaded in (torch.load(tmp_path / "env.pt", weights_only=True), state):  # the saved dict is a copy
        fresh = make()
        assert fresh.load_state_dict(loaded)
        second = [fresh.step(action) for action in actions[42:]]
        for a, b in zip(first, second):
            for field in ("obs", "reward", "terminated", "truncated", "final_obs"):
                assert torch.equal(getattr(a, field), getattr(b, field)), field
    assert sum(int((step.terminated | step.truncated).sum()) for step in first) > 6


def test_episodes_of_another_kind_of_env_are_restarted_not_restored():
    sync = make_gym_env(EnvConfig(id="CartPole-v1", num_envs=2, vectorization="sync"), CPU, 0.99)
    sync.reset(seed=0)
    env = make_gym_env(EnvConfig(id="CartPole-v1", num_envs=2, vectorization="torch"), CPU, 0.99)
    env.reset(seed=0)
    assert not env.load_state_dict(sync.state_dict())
    assert not sync.load_state_dict(env.state_dict())
    assert not torch_env("CartPole-v1", 3).load_state_dict(env.state_dict())  # another count of copies
    assert env.load_state_dict(env.state_dict())


def test_normaliser_statistics_cross_between_gym_vec_env_and_torch_env():
    """A video evaluation (sync) reads a torch run's statistics, and a run that resumes on another
    device kind reads the other env's: the state dicts share their keys and dtypes."""
    def make(vectorization):
        config = EnvConfig(id="CartPole-v1", num_envs=2, vectorization=vectorization, normalize_obs=True,
                           normalize_reward=True)
        return make_gym_env(config, CPU, 0.99)

    source = make("torch")
    source.reset(seed=0)
    for _ in range(20):
        source.step(torch.ones(2, dtype=torch.long))
    for target in (make("sync"), make("torch")):
        assert target.load_state_dict(source.state_dict(), restore_episodes=False)
        target.set_training(False)
        source.set_training(False)
        torch.testing.assert_close(target.reset(seed=3), source.reset(seed=3), **F32)
        source.set_training(True)


def test_episode_statistics_count_every_ended_episode():
    env = torch_env("CartPole-v1", 3, limit=5)
    env.reset(seed=0)
    for _ in range(5):
        env.step(torch.ones(3, dtype=torch.long))
    assert env.pop_episode_stats() == (15.0, 15, 3)
    assert env.pop_episode_stats() == (0.0, 0, 0)


def test_a_non_finite_step_is_named_when_the_statistics_are_read():
    env = torch_env("Pendulum-v1", 3)
    env.reset(seed=0)
    env.step(torch.zeros(3, 1))
    env.step(torch.tensor([[0.0], [float("nan")], [0.0]]))
    with pytest.raises(NonFiniteError, match="Pendulum: env copy 1 returned a non-finite .* at vector step 2"):
        env.pop_episode_stats()


def test_a_non_finite_output_stops_training_at_the_end_of_its_rollout(tmp_path):
    trainer = build_trainer(make_config("env=pendulum", "env.vectorization=torch", "total_timesteps=512",
                                        "algo.num_steps=32", "env.num_envs=2", "eval_episodes=0",
                                        "checkpoint_every=0"), tmp_path)
    trainer.env.task.env.g = float("nan")
    with pytest.raises(NonFiniteError, match=r"Pendulum-v1: env copy 0 returned a non-finite observation or reward "
                                             r"at vector step 1; training stopped: no checkpoint had been written"):
        trainer.train()


TRAIN = ("total_timesteps=4096", "algo.num_steps=64", "env.num_envs=8", "eval_episodes=2", "eval_every=0",
         "env.vectorization=torch")


@pytest.mark.parametrize("algo", ["trpo", "reinforce"])
def test_trpo_and_reinforce_train_on_torch_envs(tmp_path, algo):
    trainer = build_trainer(make_config(*TRAIN, f"algo={algo}"), tmp_path)
    assert isinstance(trainer.env, TorchClassicVecEnv)
    summary = trainer.train()
    assert np.isfinite(summary["eval_mean_return"])


def test_ppo_on_torch_envs_resumes_exactly(tmp_path):
    """With both normalisers on; a run trains through only with finite losses (the trainer's guard)."""
    overrides = (*TRAIN, "total_timesteps=8192", "checkpoint_every=4096", "env.normalize_obs=true",
                 "env.normalize_reward=true")
    full = build_trainer(make_config(*overrides), tmp_path / "full")
    summary = full.train()
    assert summary["eval_mean_return"] > 9 and isinstance(full.env, TorchClassicVecEnv)
    half = train_until_first_checkpoint(make_config(*overrides), tmp_path / "half")
    saved = checkpoint.load(tmp_path / "half" / "checkpoint.pt")
    assert saved["env"]["vector_env"] == "CartPole" and saved["env"]["obs_normalizer"]["count"] > 1
    resumed = build_trainer(make_config(*overrides, f"resume={tmp_path / 'half' / 'checkpoint.pt'}"), tmp_path / "half")
    assert torch.equal(resumed.env.state, half.env.state)
    resumed.train()
    assert_same_parameters(parameters(full.policy), parameters(resumed.policy))


def test_make_gym_env_builds_the_torch_port_where_asked_and_auto_on_cuda():
    def built(vectorization="torch", env_id="MountainCar-v0", **kwargs):
        return make_gym_env(EnvConfig(id=env_id, num_envs=2, vectorization=vectorization, kwargs=kwargs), CPU, 0.99)

    def chosen(env_id, device, **kwargs):
        return vectorization_for(EnvConfig(id=env_id, kwargs=kwargs), find_spec(env_id), torch.device(device))

    assert built().max_episode_steps == 200  # the spec's limit, as gymnasium.make reads max_episode_steps
    assert built(max_episode_steps=7).max_episode_steps == 7
    assert built(max_episode_steps=-1).max_episode_steps is None
    assert built(env_id="Pendulum-v1", g=9.81).task.env.g == 9.81
    assert built(env_id="CartPole-v1", sutton_barto_reward=True).task.env._sutton_barto_reward
    assert built(env_id="MountainCarContinuous-v0").max_episode_steps == 999
    assert isinstance(built("auto", env_id="CartPole-v1").env, CartPoleVectorEnv)  # the CPU keeps its choices
    assert isinstance(built("auto", env_id="Acrobot-v1").env, BatchedAcrobot)
    for env_id in CASES:
        assert chosen(env_id, "cuda") == "torch"
    assert chosen("Acrobot-v1", "cuda", render_mode="rgb_array") == "sync"  # only Gymnasium's own renders
    with pytest.raises(ConfigError, match=r"FrozenLake-v1 has no torch port \(these do: \['Acrobot-v1', 'CartPole-v0'"):
        built(env_id="FrozenLake-v1")
    with pytest.raises(ConfigError, match=r"torch does not take env.kwargs \['render_mode'\]"):
        built(render_mode="rgb_array")
    with pytest.raises(ConfigError, match="do not fit CartPole-v1"):
        built(env_id="CartPole-v1", g=9.81)
    with pytest.raises(ConfigError, match="max_episode_steps=0: expected a positive int"):
        built(max_episode_steps=0)
    with pytest.raises(ConfigError, match="env.vectorization='threads' is invalid; expected one of .*, torch"):
        validate(make_config("env.vectorization=threads"))
