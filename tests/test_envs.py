"""The torch-facing Gymnasium adapter: both autoreset modes, normalisation, snapshots."""

import numpy as np
import pytest
import torch

from envs.make import make_gym_env
from envs.normalize import RewardScaler, RunningMeanStd
from ppo_core.config import EnvConfig
from ppo_core.errors import ConfigError

CPU = torch.device("cpu")


def make(vectorization, num_envs=3, **kwargs):
    return make_gym_env(EnvConfig(id="CartPole-v1", num_envs=num_envs, vectorization=vectorization, kwargs=kwargs), CPU, 0.99)


def test_next_step_mode_marks_the_reset_step_invalid_and_keeps_the_final_obs():
    env = make("vector_entry_point", max_episode_steps=5)
    obs = env.reset(seed=0)
    zero = torch.zeros(3, dtype=torch.long)
    for t in range(5):
        result = env.step(zero + (t % 2))
        assert result.valid.all()
    assert result.truncated.all() and result.final_obs is None
    final = result.obs
    assert final.abs().max() > 0.05  # not a reset state: the real last observation
    result = env.step(zero)
    assert not result.valid.any() and (result.reward == 0).all()
    assert result.obs.abs().max() <= 0.05  # now reset
    stats = env.pop_episode_stats()
    assert stats.count == 3 and stats.return_sum == 15.0 and stats.length_sum == 15


def test_same_step_mode_returns_reset_obs_and_final_obs_on_truncation():
    env = make("sync", max_episode_steps=4)
    env.reset(seed=0)
    for _ in range(4):
        result = env.step(torch.ones(3, dtype=torch.long))
    assert result.truncated.all() and result.valid.all()
    assert result.obs.abs().max() <= 0.05  # reset already
    expected = np.stack(result.info["final_obs"])
    torch.testing.assert_close(result.final_obs, torch.as_tensor(expected))
    assert env.pop_episode_stats().count == 3


def test_running_mean_std_matches_numpy():
    rms = RunningMeanStd((2,), epsilon=0.0)
    rng = np.random.default_rng(0)
    batches = [rng.normal(3.0, 2.0, size=(n, 2)) for n in (5, 17, 1, 40)]
    for batch in batches:
        rms.update(batch)
    everything = np.concatenate(batches)
    np.testing.assert_allclose(rms.mean, everything.mean(0), rtol=1e-10)
    np.testing.assert_allclose(rms.var, everything.var(0), rtol=1e-10)



def test_normalised_observations_and_rewards_match_a_naive_recomputation():
    """Acrobot through the adapter with both normalisers against the raw env and hand-kept statistics:
    obs is (o − mean) / sqrt(var + 1e-8) over every observation so far, clipped to ±10; the reward is
    divided by sqrt(var + 1e-8) of every discounted return so far (zeroed after an episode's end).
    Both statistics start from a prior of weight 1e-4 with mean 0 and variance 1."""

    def with_prior(history, prior=1e-4):  # (n, ...) -> mean, var of history plus the prior pseudo-sample
        mean = history.sum(0) / (len(history) + prior)
        m2 = ((history - mean) ** 2).sum(0) + prior * (1.0 + mean**2)
        return mean, m2 / (len(history) + prior)

    gamma, n = 0.9, 2
    short = {"max_episode_steps": 40}  # six episode ends per env in 300 steps
    config = EnvConfig(id="Acrobot-v1", num_envs=n, vectorization="sync", normalize_obs=True, normalize_reward=True,
                       kwargs=short)
    env = make_gym_env(config, CPU, gamma)
    raw = make_gym_env(EnvConfig(id="Acrobot-v1", num_envs=n, vectorization="sync", kwargs=short), CPU, gamma)
    seen = [raw.reset(seed=3).double().numpy()]
    obs = env.reset(seed=3)
    returns, running, all_returns = [], np.zeros(n), []
    actions = torch.randint(0, 3, (300, n), generator=torch.Generator().manual_seed(0))
    for t, action in enumerate(actions):
        raw_step, step = raw.step(action), env.step(action)
        seen.append(raw_step.obs.double().numpy())
        running = running * gamma + raw_step.reward.double().numpy()
        all_returns.append(running.copy())
        running = running * ~(raw_step.terminated | raw_step.truncated).numpy()
        history = np.concatenate(seen)
        mean, var = with_prior(history)
        expected_obs = np.clip((seen[-1] - mean) / np.sqrt(var + 1e-8), -10, 10)
        expected_reward = raw_step.reward.double().numpy() / np.sqrt(with_prior(np.concatenate(all_returns))[1] + 1e-8)
        np.testing.assert_allclose(step.obs.numpy(), expected_obs, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(step.reward.numpy(), np.clip(expected_reward, -10, 10), rtol=1e-4, atol=1e-6)


def test_normaliser_state_survives_a_weights_only_checkpoint(tmp_path):
    rng = np.random.default_rng(1)
    scaler = RewardScaler(num_envs=3, gamma=0.9)
    for _ in range(7):
        scaler(rng.normal(size=3), rng.random(3) < 0.3)
    torch.save(scaler.state_dict(), tmp_path / "state.pt")
    restored = RewardScaler(num_envs=3, gamma=0.9)
    restored.load_state_dict(torch.load(tmp_path / "state.pt", weights_only=True))
    reward, ends = rng.normal(size=3), np.array([False, True, False])
    np.testing.assert_array_equal(restored(reward, ends), scaler(reward, ends))
    np.testing.assert_array_equal(restored.discounted_return, scaler.discounted_return)
    assert restored.stats.count == scaler.stats.count == 8 * 3 + 1e-4  # 8 updates of 3 returns


@pytest.mark.parametrize("vectorization", ["sync", "vector_entry_point"])
def test_snapshot_restores_the_running_episodes(vectorization):
    env = make(vectorization)
    env.reset(seed=1)
    actions = [torch.randint(0, 2, (3,), generator=torch.Generator().manual_seed(i)) for i in range(60)]
    for a in actions[:20]:
        env.step(a)
    state = env.state_dict()
    first = [env.step(a).obs for a in actions[20:]]
    env.load_state_dict(state)
    second = [env.step(a).obs for a in actions[20:]]
    for a, b in zip(first, second):
        assert torch.equal(a, b)


def test_unknown_env_and_vectorization_are_named():
    with pytest.raises(ConfigError, match="NoSuchEnv-v0"):
        make_gym_env(EnvConfig(id="NoSuchEnv-v0"), CPU, 0.99)
    with pytest.raises(ConfigError, match="vectorization='threads'"):
        make_gym_env(EnvConfig(id="CartPole-v1", vectorization="threads"), CPU, 0.99)
    with pytest.raises(ConfigError, match="no vectorised implementation"):
        make_gym_env(EnvConfig(id="Pendulum-v1", vectorization="vector_entry_point"), CPU, 0.99)


def test_user_module_env_id(tmp_path, monkeypatch):
    (tmp_path / "my_pkg_envs.py").write_text(
        "import gymnasium as gym\n"
        "from gymnasium.envs.classic_control import PendulumEnv\n"
        "gym.register('MyPendulum-v0', entry_point=PendulumEnv, max_episode_steps=7)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    env = make_gym_env(EnvConfig(id="my_pkg_envs:MyPendulum-v0", num_envs=2), CPU, 0.99)
    env.reset(seed=0)
    for _ in range(7):
        result = env.step(torch.zeros(2, 1))
    assert result.truncated.all()
