"""The env copies of a seed batch's runs stepped together (ppo_core/batched_trainer.py).

The batch's default steps every run's env in turn (``batched_trainer.step_each``). For CartPole, where that Python loop is most of
a batch's rollout (10 runs of 8 copies: 1.6 ms a step), ``CartPoleStack`` steps the physics of all
runs' copies as one set of arrays: Gymnasium's ``CartPoleVectorEnv.step`` operation for operation,
each run's copies resetting from that run's own generator with the draws its env makes, so every
run's numbers stay its own (tests/test_seed_batch.py checks them against single runs, bit for bit).
The runs' ``CartPoleVectorEnv`` objects keep their state between steps, so checkpoints, snapshots and
evaluations see them as usual.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from gymnasium.envs.classic_control.cartpole import CartPoleVectorEnv
from torch import Tensor

from envs.gym_env import GymVecEnv, check_finite
from ppo_core.batched_trainer import EnvStepper, StackedStep, step_each


def stacks(envs: Sequence[object]) -> bool:
    """Whether ``CartPoleStack`` can step these envs: plain CartPoleVectorEnvs without normalisation."""
    return all(isinstance(env, GymVecEnv) and type(env.env) is CartPoleVectorEnv and env.obs_normalizer is None
               and env.reward_scaler is None and env.env.kinematics_integrator == "euler"
               and not env.env._sutton_barto_reward for env in envs)


def env_stepper(envs: Sequence[object]) -> EnvStepper:
    """The fastest way to step these runs' envs together."""
    return CartPoleStack(envs) if stacks(envs) else step_each


class CartPoleStack:
    """Steps the CartPoleVectorEnvs of S runs (N copies each) as one (4, S·N) state."""

    def __init__(self, envs: Sequence[GymVecEnv]):
        if not stacks(envs):
            raise ValueError("CartPoleStack steps plain CartPoleVectorEnvs without normalisation only")
        self.envs = list(envs)

    def __call__(self, envs: Sequence[GymVecEnv], actions: Tensor) -> StackedStep:
        if [id(e) for e in envs] != [id(e) for e in self.envs]:  # runs left the batch
            self.envs = list(envs)
        cores = [env.env for env in self.envs]
        first = cores[0]
        sizes = [core.num_envs for core in cores]
        bounds = np.cumsum([0, *sizes])
        action = actions.reshape(-1).cpu().numpy()  # (S·N,)
        x, x_dot, theta, theta_dot = np.concatenate([core.state for core in cores], axis=1)
        # CartPoleVectorEnv.step, line for line (gymnasium 1.x)
        force = np.sign(action - 0.5) * first.force_mag
        costheta = np.cos(theta)
        sintheta = np.sin(theta)
        temp = (force + first.polemass_length * np.square(theta_dot) * sintheta) / first.total_mass
        thetaacc = (first.gravity * sintheta - costheta * temp) / (
            first.length * (4.0 / 3.0 - first.masspole * np.square(costheta) / first.total_mass))
        xacc = temp - first.polemass_length * thetaacc * costheta / first.total_mass
        x = x + first.tau * x_dot
        x_dot = x_dot + first.tau * xacc
        theta = theta + first.tau * theta_dot
        theta_dot = theta_dot + first.tau * thetaacc
        state = np.stack((x, x_dot, theta, theta_dot))  # (4, S·N)
        terminated = ((x < -first.x_threshold) | (x > first.x_threshold)
                      | (theta < -first.theta_threshold_radians) | (theta > first.theta_threshold_radians))
        steps = np.concatenate([core.steps for core in cores]) + 1
        truncated = steps >= np.repeat([core.max_episode_steps for core in cores], sizes)
        reward = np.ones_like(terminated, dtype=np.float32)
        for core, lo, hi in zip(cores, bounds[:-1], bounds[1:]):  # each run's resets from its own generator
            done = core.prev_done
            part = state[:, lo:hi]
            part[:, done] = core.np_random.uniform(low=core.low, high=core.high, size=(4, done.sum()))
            steps[lo:hi][done] = 0
            reward[lo:hi][done] = 0.0
            terminated[lo:hi][done] = False
            truncated[lo:hi][done] = False
        ended = terminated | truncated
        for core, lo, hi in zip(cores, bounds[:-1], bounds[1:]):
            core.state, core.steps, core.prev_done = state[:, lo:hi].copy(), steps[lo:hi].copy(), ended[lo:hi].copy()
        # row-major, as every other observation the batch sees (a reset's, a checkpoint's): ``astype`` would
        # keep the transpose's column-major layout, and a batched matmul rounds differently on each layout
        obs = state.T.astype(np.float32, order="C")  # (S·N, 4)
        return self._wrap(obs, reward, terminated, truncated, bounds)

    def _wrap(self, obs: np.ndarray, reward: np.ndarray, terminated: np.ndarray, truncated: np.ndarray,
              bounds: np.ndarray) -> StackedStep:
        """What each run's GymVecEnv.step does after its env's step (next-step autoreset, no normalisers)."""
        valid = np.empty_like(terminated)
        ended = terminated | truncated
        for env, lo, hi in zip(self.envs, bounds[:-1], bounds[1:]):
            env.steps += 1
            check_finite(env.name, env.steps, reward=reward[lo:hi], observation=obs[lo:hi])
            valid[lo:hi] = ~env._resetting
            env.episodes.update(reward[lo:hi], valid[lo:hi], ended[lo:hi])
            env._resetting = ended[lo:hi]
        shape = (len(self.envs), -1)
        device = self.envs[0].device
        tensor = lambda a, dtype: torch.from_numpy(a).to(device, dtype).reshape(*shape, *a.shape[1:])  # noqa: E731
        return StackedStep(tensor(obs, torch.float32), tensor(reward, torch.float32), tensor(terminated, torch.bool),
                           tensor(truncated, torch.bool), tensor(valid, torch.bool), None, None)
