"""The batched classic envs against Gymnasium's own envs stepped by SyncVectorEnv: the same numbers,
bit for bit, across terminations, time limits and autoresets; snapshots; how make_gym_env picks them."""

import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.envs.classic_control.cartpole import CartPoleVectorEnv
from gymnasium.vector import AutoresetMode


from envs.classic_vector import BatchedAcrobot, BatchedMountainCar, BatchedPendulum, math_cos, squared
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


def sync_env(env_id, num_envs, **kwargs):
    return gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="sync",
                        vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP}, **kwargs)


CASES = {
    "Acrobot-v1": (BatchedAcrobot, pump_acrobot, 150),
    "MountainCar-v0": (BatchedMountainCar, pump_mountain_car, 150),
    "Pendulum-v1": (BatchedPendulum, random_torque, 90),
}


@pytest.mark.parametrize("env_id", CASES)
def test_batched_env_steps_exactly_as_gymnasium(env_id):
    batched_class, policy, limit = CASES[env_id]
    num_envs, steps = 5, 600
    reference = sync_env(env_id, num_envs, max_episode_steps=limit)
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


@pytest.mark.parametrize("env_id, states", [
    # the velocity bounds of both joints, and angles that leave [-π, π]
    ("Acrobot-v1", [[0.1, 0.2, 4 * np.pi - 0.01, 9 * np.pi - 0.01], [-0.1, 3.1, -4 * np.pi + 0.01, -9 * np.pi + 0.01],
                    [3.1, -3.1, 3.0, -3.0]]),
    # the speed bound both ways, the left wall, the flag
    ("MountainCar-v0", [[-0.5, 0.0699], [0.0, -0.0699], [-1.19, -0.05], [0.49, 0.02]]),
])
def test_the_bounds_from_states_at_the_limits(env_id, states):
    """States the learning tests rarely reach, set in both envs alike; one step each with every action."""
    batched_class = CASES[env_id][0]
    for action in range(3):
        reference, batched = sync_env(env_id, len(states)), batched_class(num_envs=len(states))
        reference.reset(seed=0)
        batched.reset(seed=0)
        for copy, state in zip(reference.envs, states):
            copy.unwrapped.state = np.array(state)
        batched.state[:] = states
        expected = reference.step(np.full(len(states), action))
        got = batched.step(np.full(len(states), action))
        for a, b in zip(got[:4], expected[:4]):
            np.testing.assert_array_equal(a, b)
    if env_id == "MountainCar-v0":
        assert got[2][3]  # the flag ends an episode
    else:  # both joints' bounds were reached
        assert np.isin([4 * np.pi, 9 * np.pi, -9 * np.pi], batched.state[:2, 2:]).all()


def test_reset_draws_from_one_generator_per_copy_as_gymnasium_seeds_them():
    for env_id, options in [("Pendulum-v1", {"x_init": 0.5, "y_init": 0.1}), ("Acrobot-v1", {"low": -0.3, "high": 0.2}),
                            ("MountainCar-v0", {"low": -0.9, "high": -0.1})]:
        reference, batched = sync_env(env_id, 3), CASES[env_id][0](num_envs=3)
        for seed in (0, None, [5, 6, 7], None):  # None continues each copy's generator
            np.testing.assert_array_equal(batched.reset(seed=seed)[0], reference.reset(seed=seed)[0])
        np.testing.assert_array_equal(batched.reset(seed=2, options=options)[0],
                                      reference.reset(seed=2, options=options)[0])


def test_squares_and_cosines_are_the_scalar_ones_gymnasium_computes():
    """C pow and math.cos, elementwise; the values are ones where x * x and C pow differ."""
    x = np.random.default_rng(1).uniform(-10.0, 10.0, 20000)
    differ = x[x * x != np.array([v**2 for v in x])]
    assert len(differ) > 5
    np.testing.assert_array_equal(squared(differ), [v**2 for v in differ])
    x32 = x.astype(np.float32)
    np.testing.assert_array_equal(squared(x32), np.array([v**2 for v in x32], dtype=np.float32))
    assert squared(x32).dtype == np.float32
    np.testing.assert_array_equal(math_cos(x), [math.cos(v) for v in x])


@pytest.mark.parametrize("env_id, vectorization", [("Acrobot-v1", "batched"), ("MountainCar-v0", "batched"),
                                                   ("MountainCar-v0", "sync")])
def test_snapshot_through_a_weights_only_checkpoint_continues_the_same_episodes(tmp_path, env_id, vectorization):
    def make():
        config = EnvConfig(id=env_id, num_envs=3, vectorization=vectorization, kwargs={"max_episode_steps": 30})
        return make_gym_env(config, CPU, 0.99)

    env = make()
    env.reset(seed=4)
    actions = torch.randint(0, 3, (100, 3), generator=torch.Generator().manual_seed(0))
    for action in actions[:40]:
        env.step(action)
    torch.save(env.state_dict(), tmp_path / "env.pt")
    first = [env.step(action) for action in actions[40:]]  # two more autoresets per copy
    fresh = make()
    assert fresh.load_state_dict(torch.load(tmp_path / "env.pt", weights_only=True))
    second = [fresh.step(action) for action in actions[40:]]
    assert sum(int(step.truncated.sum()) for step in first) == 6
    for a, b in zip(first, second):
        assert torch.equal(a.obs, b.obs) and torch.equal(a.reward, b.reward) and torch.equal(a.truncated, b.truncated)


def test_episodes_captured_in_another_kind_of_vector_env_are_restarted_not_restored():
    """A checkpoint from before the batched envs (its Acrobot ran in SyncVectorEnv) still resumes."""
    sync = make_gym_env(EnvConfig(id="Acrobot-v1", num_envs=2, vectorization="sync"), CPU, 0.99)
    sync.reset(seed=0)
    state = sync.state_dict()
    batched = make_gym_env(EnvConfig(id="Acrobot-v1", num_envs=2), CPU, 0.99)
    assert not batched.load_state_dict(state)
    del state["vector_env"]  # as written before the key existed
    assert not batched.load_state_dict(state)
    assert batched.load_state_dict(batched.state_dict())


def test_make_gym_env_picks_the_batched_env_only_where_it_applies():
    def built(vectorization="auto", env_id="MountainCar-v0", **kwargs):
        return make_gym_env(EnvConfig(id=env_id, num_envs=2, vectorization=vectorization, kwargs=kwargs), CPU, 0.99).env

    assert isinstance(built(), BatchedMountainCar)
    assert built().max_episode_steps == 200  # the spec's time limit, as gymnasium.make reads max_episode_steps
    assert built(max_episode_steps=None).max_episode_steps == 200
    assert built(max_episode_steps=7).max_episode_steps == 7
    assert built(max_episode_steps=-1).max_episode_steps is None
    assert built(env_id="Pendulum-v1", g=9.81).task.g == 9.81
    assert isinstance(built("sync"), gym.vector.SyncVectorEnv)
    assert isinstance(built(render_mode="rgb_array"), gym.vector.SyncVectorEnv)  # only Gymnasium's own renders
    assert isinstance(built(env_id="CartPole-v1"), CartPoleVectorEnv)
    with pytest.raises(ConfigError, match="CartPole-v1 has no batched implementation"):
        built("batched", env_id="CartPole-v1")
    with pytest.raises(ConfigError, match=r"does not take env.kwargs \['render_mode'\]"):
        built("batched", render_mode="rgb_array")
    with pytest.raises(ConfigError, match="do not fit MountainCar-v0"):
        built("batched", g=9.81)
    with pytest.raises(ConfigError, match="max_episode_steps=0: expected a positive int"):
        built("batched", max_episode_steps=0)
