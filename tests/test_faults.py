"""Faults are caught where they enter and reported truly: a non-finite env output names the env copy
and the step; the NaN guard says whether a checkpoint exists; a rounded budget is announced."""

import logging

import gymnasium as gym
import numpy as np
import pytest
import torch

from ppo_core.build import build_trainer
from ppo_core.errors import NonFiniteError
from tests.conftest import make_config


class NaNRewardEnv(gym.Env):
    """CartPole-shaped; the copy built second returns a NaN reward at its third step."""

    built = 0
    observation_space = gym.spaces.Box(-1.0, 1.0, (4,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self):
        self.copy, NaNRewardEnv.built = NaNRewardEnv.built % 2, NaNRewardEnv.built + 1
        self.t = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(4, np.float32), {}

    def step(self, action):
        self.t += 1
        reward = float("nan") if (self.copy == 1 and self.t == 3) else 1.0
        return np.zeros(4, np.float32), reward, False, self.t >= 50, {}


if "NaNRewardEnv-v0" not in gym.registry:
    gym.register(id="NaNRewardEnv-v0", entry_point=NaNRewardEnv)

SMALL = ("total_timesteps=512", "algo.num_steps=32", "env.num_envs=2", "eval_episodes=0", "checkpoint_every=0")


def test_a_non_finite_reward_is_caught_where_the_env_returns_it(tmp_path):
    NaNRewardEnv.built = 0
    trainer = build_trainer(make_config("env=gym", "env.id=tests.test_faults:NaNRewardEnv-v0",
                                        "env.vectorization=sync", *SMALL), tmp_path)
    with pytest.raises(NonFiniteError, match=r"NaNRewardEnv-v0: env copy 1 returned a non-finite reward \(nan\) "
                                             r"at vector step 3; training stopped: no checkpoint had been written"):
        trainer.train()


def nan_after_updates(trainer, good_updates: int):
    real_update, calls = trainer.algorithm.update, []

    def update(batch):
        calls.append(1)
        if len(calls) > good_updates:
            with torch.no_grad():
                trainer.policy.actor.layers[0].weight.fill_(float("nan"))
        return real_update(batch)

    trainer.algorithm.update = update


def test_the_nan_guard_says_no_checkpoint_exists_when_none_does(tmp_path):
    trainer = build_trainer(make_config(*SMALL[:4], "checkpoint_every=256"), tmp_path)
    nan_after_updates(trainer, 0)
    with pytest.raises(NonFiniteError, match="training stopped: no checkpoint had been written yet"):
        trainer.train()
    assert not (tmp_path / "checkpoint.pt").exists()


def test_the_nan_guard_names_the_last_good_checkpoint(tmp_path):
    trainer = build_trainer(make_config(*SMALL[:4], "checkpoint_every=64"), tmp_path)  # one per rollout
    nan_after_updates(trainer, 2)
    with pytest.raises(NonFiniteError, match=rf"the last good checkpoint \({tmp_path / 'checkpoint.pt'}, env step 128\) "
                                             "is untouched"):
        trainer.train()


def test_a_budget_that_is_not_whole_rollouts_is_announced(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="ppo_core.trainer"):
        trainer = build_trainer(make_config("total_timesteps=5000", "algo.num_steps=128", "env.num_envs=8",
                                            "eval_episodes=0"), tmp_path)
    assert trainer.num_iterations == 4
    assert ("total_timesteps=5000 is not a multiple of algo.num_steps × env.num_envs = 1024: training runs 4096 env "
            "steps (4 rollouts)") in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="ppo_core.trainer"):
        build_trainer(make_config("total_timesteps=4096", "algo.num_steps=128", "env.num_envs=8", "eval_episodes=0"),
                      tmp_path / "whole")
    assert "not a multiple" not in caplog.text
