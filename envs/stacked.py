"""The env copies of a seed batch's runs stepped together (ppo_core/batched_trainer.py).

The batch's default steps every run's env in turn (``batched_trainer.step_each``). Where that Python
loop is most of a batch's rollout, the physics of all runs' copies is computed as one set of arrays:

- ``CartPoleStack``: Gymnasium's ``CartPoleVectorEnv.step`` operation for operation (10 runs of 8
  copies stepped in turn: 1.6 ms a step);
- ``ClassicStack``: the batched NumPy Acrobot, MountainCar and Pendulum (envs/classic_vector.py),
  whose dynamics work row by row (REINFORCE Acrobot, 10 runs: 3.5 ms a step in turn, most of it RK4).

Each run's copies reset from that run's own generators with the draws its env makes, and each run's
env does its own bookkeeping (time limits, normalisers, episode counts), so every run's numbers stay
its own (tests/test_seed_batch.py checks them against single runs, bit for bit). The runs' env objects
keep their state between steps, so checkpoints, snapshots and evaluations see them as usual.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from gymnasium.envs.classic_control.cartpole import CartPoleVectorEnv
from gymnasium.error import ResetNeeded
from torch import Tensor

from envs.classic_vector import BatchedClassicEnv
from envs.gym_env import GymVecEnv, check_finite
from ppo_core.batched_trainer import EnvStepper, StackedStep, step_each


def stacks(envs: Sequence[object]) -> bool:
    """Whether ``CartPoleStack`` can step these envs: plain CartPoleVectorEnvs without normalisation."""
    return all(isinstance(env, GymVecEnv) and type(env.env) is CartPoleVectorEnv and env.obs_normalizer is None
               and env.reward_scaler is None and env.env.kinematics_integrator == "euler"
               and not env.env._sutton_barto_reward for env in envs)


def classic_stacks(envs: Sequence[object]) -> bool:
    """Whether ``ClassicStack`` can step these envs: batched NumPy envs of one task with one set of constants."""
    if not envs or not all(isinstance(env, GymVecEnv) and isinstance(env.env, BatchedClassicEnv) for env in envs):
        return False
    return len({(type(env.env), _constants(env.env.task)) for env in envs}) == 1


def _constants(task: object) -> tuple:
    return tuple(sorted((k, v) for k, v in vars(task).items() if isinstance(v, (bool, int, float, str))))


def env_stepper(envs: Sequence[object]) -> EnvStepper:
    """The fastest way to step these runs' envs together."""
    if stacks(envs):
        return CartPoleStack(envs)
    return ClassicStack() if classic_stacks(envs) else step_each


class ClassicStack:
    """Steps the batched classic envs of S runs (N copies each): one call of the task's dynamics on all
    S·N rows, then each run's env takes its rows through its own time limits, restarts and wrapper."""

    def __call__(self, envs: Sequence[GymVecEnv], actions: Tensor) -> StackedStep:
        cores: list[BatchedClassicEnv] = [env.env for env in envs]
        if any(core.generators[0] is None for core in cores):
            raise ResetNeeded("call reset() before step()")
        bounds = np.cumsum([0, *(core.num_envs for core in cores)])
        action = actions.reshape(bounds[-1], *actions.shape[2:]).cpu().numpy()  # (S·N, ...)
        state, reward, terminated = cores[0].dynamics(np.concatenate([core.state for core in cores]), action)
        return StackedStep.of([env.after_step(*core.advance(state[lo:hi].copy(), reward[lo:hi], terminated[lo:hi]))
                               for env, core, lo, hi in zip(envs, cores, bounds[:-1], bounds[1:])])


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
