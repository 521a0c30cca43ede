"""The batched classic envs against Gymnasium's own envs stepped by SyncVectorEnv: the same numbers,
bit for bit, across terminations, time limits and autoresets; snapshots; how make_gym_env picks them."""

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode

from envs.classic_vector import BatchedAcrobot, BatchedMountainCar, BatchedPendulum
from envs.make import make_gym_env
from ppo_core.config import EnvConfig
from ppo_core.errors import ConfigError

CPU = torch.device("cpu")


def pump_acrobot(obs, rng):  # torque along the second joint's velocity: swings up, ends episodes
    return np.where(rng.random(len(obs)) < 0.2, rng.integers(0, 3, len(obs)), np.where(obs[:, 5] > 0, 2, 0))


def pump_mountain_car(obs, rng):  # push along the velocity: reaches the flag in about 100 steps
    return np.where(rng.random(len(obs)) < 0.2, rng.integers(0, 3, len(obs)), np.where(obs[:, 1] > 0, 2, 0))


def random_torque(obs, rng):  # beyond ±2 as well, so the clip is exercised
    return rng.uniform(-3.0, 3.0, size=(len(obs), 1)).astype(np.float32)


CASES = {
    "Acrobot-v1": (BatchedAcrobot, pump_acrobot, 150),
    "MountainCar-v0": (BatchedMountainCar, pump_mountain_car, 150),
    "Pendulum-v1": (BatchedPendulum, random_torque, 90),
}


@pytest.mark.parametrize("env_id", CASES)
def test_batched_env_steps_exactly_as_gymnasium(env_id):
    batched_class, policy, limit = CASES[env_id]
    num_envs, steps = 5, 600
    reference = gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="sync",
                             vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP}, max_episode_steps=limit)
    batched = batched_class(num_envs=num_envs, max_episode_steps=limit)
    assert batched.single_observation_space == reference.single_observation_space
    assert batched.single_action_space == reference.single_action_space
    expected, _ = reference.reset(seed=11)
    obs, _ = batched.reset(seed=11)
    np.testing.assert_array_equal(obs, expected)
    rng = np.random.default_rng(0)
    terminations = truncations = 0
    for _ in range(steps):
        action = policy(expected, rng)
        expected, expected_reward, expected_terminated, expected_truncated, expected_info = reference.step(action)
        obs, reward, terminated, truncated, info = batched.step(action)
        np.testing.assert_array_equal(obs, expected)
        np.testing.assert_array_equal(reward, expected_reward)
        np.testing.assert_array_equal(terminated, expected_terminated)
        np.testing.assert_array_equal(truncated, expected_truncated)
        ended = np.flatnonzero(expected_terminated | expected_truncated)
        if len(ended):
            np.testing.assert_array_equal(info["final_obs"][ended], np.stack(expected_info["final_obs"][ended]))
        terminations += int(expected_terminated.sum())
        truncations += int(expected_truncated.sum())
    assert truncations > 0
    if env_id != "Pendulum-v1":  # Pendulum never terminates
        assert terminations > 0


def test_reset_draws_from_one_generator_per_copy_as_gymnasium_seeds_them():
    reference = gym.make_vec("Pendulum-v1", num_envs=3, vectorization_mode="sync")
    batched = BatchedPendulum(num_envs=3)
    for seed in (0, None, [5, 6, 7], None):  # None continues each copy's generator
        expected, _ = reference.reset(seed=seed)
        obs, _ = batched.reset(seed=seed)
        np.testing.assert_array_equal(obs, expected)
    options = {"x_init": 0.5, "y_init": 0.1}
    np.testing.assert_array_equal(batched.reset(seed=2, options=options)[0], reference.reset(seed=2, options=options)[0])


def test_snapshot_through_a_weights_only_checkpoint_continues_the_same_episodes(tmp_path):
    env = make_gym_env(EnvConfig(id="Acrobot-v1", num_envs=3, kwargs={"max_episode_steps": 30}), CPU, 0.99)
    assert isinstance(env.env, BatchedAcrobot)
    env.reset(seed=4)
    actions = torch.randint(0, 3, (100, 3), generator=torch.Generator().manual_seed(0))
    for action in actions[:40]:
        env.step(action)
    torch.save(env.state_dict(), tmp_path / "env.pt")
    first = [env.step(action) for action in actions[40:]]  # two more autoresets per copy
    fresh = make_gym_env(EnvConfig(id="Acrobot-v1", num_envs=3, kwargs={"max_episode_steps": 30}), CPU, 0.99)
    fresh.load_state_dict(torch.load(tmp_path / "env.pt", weights_only=True))
    second = [fresh.step(action) for action in actions[40:]]
    assert sum(int(step.truncated.sum()) for step in first) == 6
    for a, b in zip(first, second):
        assert torch.equal(a.obs, b.obs) and torch.equal(a.reward, b.reward) and torch.equal(a.truncated, b.truncated)


def test_make_gym_env_picks_the_batched_env_only_where_it_applies():
    def built(vectorization="auto", env_id="MountainCar-v0", **kwargs):
        return make_gym_env(EnvConfig(id=env_id, num_envs=2, vectorization=vectorization, kwargs=kwargs), CPU, 0.99).env

    assert isinstance(built(), BatchedMountainCar)
    assert built().max_episode_steps == 200  # the spec's time limit
    assert built(max_episode_steps=7).max_episode_steps == 7
    assert built(env_id="Pendulum-v1", g=9.81).c.g == 9.81
    assert isinstance(built("sync"), gym.vector.SyncVectorEnv)
    assert isinstance(built(render_mode="rgb_array"), gym.vector.SyncVectorEnv)  # only Gymnasium's own renders
    assert not isinstance(built(env_id="CartPole-v1"), BatchedMountainCar)
    with pytest.raises(ConfigError, match="CartPole-v1 has no batched implementation"):
        built("batched", env_id="CartPole-v1")
    with pytest.raises(ConfigError, match=r"does not take env.kwargs \['render_mode'\]"):
        built("batched", render_mode="rgb_array")
    with pytest.raises(ConfigError, match="do not fit MountainCar-v0"):
        built("batched", g=9.81)
