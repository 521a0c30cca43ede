"""The env copies of a seed batch's runs stepped together (ppo_core/batched_trainer.py).

The batch's default steps every run's env in turn (``batched_trainer.step_each``). Where that Python
loop is most of a batch's rollout, the physics of all runs' copies is computed as one set of arrays:

- ``CartPoleStack``: Gymnasium's ``CartPoleVectorEnv.step`` operation for operation (10 runs of 8
  copies stepped in turn: 1.6 ms a step);
- ``ClassicStack``: the batched NumPy Acrobot, MountainCar and Pendulum (envs/classic_vector.py),
  whose dynamics work row by row (REINFORCE Acrobot, 10 runs: 3.5 ms a step in turn, most of it RK4),
  and whose wrappers' bookkeeping (checks, episode counts, normalisers) then runs on stacked arrays
  too (``after_steps``: 1.41 ms a step of 10 runs before, 0.78 after).

Each run's copies reset from that run's own generators with the draws its env makes, each run keeps
its own time limits, and its normalisers and episode counts are its own statistics, gathered from
its env and written back, so every run's numbers stay its own (tests/test_seed_batch.py checks them
against single runs, bit for bit). The runs' env objects keep their state between steps, so
checkpoints, snapshots and evaluations see them as usual.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from gymnasium.envs.classic_control.cartpole import CartPoleVectorEnv
from gymnasium.error import ResetNeeded
from gymnasium.vector import AutoresetMode
from torch import Tensor

from envs.base import EpisodeTracker
from envs.classic_vector import BatchedClassicEnv
from envs.gym_env import GymVecEnv, check_finite
from envs.normalize import ObservationNormalizer, RewardScaler
from ppo_core.batched_trainer import EnvStepper, StackedStep, step_each
from ppo_core.distributed import world_size


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
    S·N rows, then each run's env takes its rows through its own time limits and restarts, and the
    wrappers' bookkeeping of all runs is done on stacked arrays (``after_steps``)."""

    def __init__(self) -> None:
        self._books: tuple[list[int], bool] = ([], False)  # (the envs' ids, books_together of them)

    def __call__(self, envs: Sequence[GymVecEnv], actions: Tensor) -> StackedStep:
        cores: list[BatchedClassicEnv] = [env.env for env in envs]
        ids = [id(env) for env in envs]
        if ids != self._books[0]:  # the first step, or runs left the batch
            self._books = (ids, books_together(envs))
        if any(core.generators[0] is None for core in cores):
            raise ResetNeeded("call reset() before step()")
        bounds = np.cumsum([0, *(core.num_envs for core in cores)])
        action = actions.reshape(bounds[-1], *actions.shape[2:]).cpu().numpy()  # (S·N, ...)
        state, reward, terminated = cores[0].dynamics(np.concatenate([core.state for core in cores]), action)
        steps = [core.advance(state[lo:hi].copy(), reward[lo:hi], terminated[lo:hi])
                 for core, lo, hi in zip(cores, bounds[:-1], bounds[1:])]
        if not self._books[1]:
            return StackedStep.of([env.after_step(*step) for env, step in zip(envs, steps)])
        obs, reward, terminated, truncated = (np.stack(part) for part in list(zip(*steps))[:4])
        return after_steps(envs, obs, reward, terminated, truncated, [step[4] for step in steps])


def books_together(envs: Sequence[GymVecEnv]) -> bool:
    """Whether ``after_steps`` can do these envs' ``after_step``: same-step autoreset, training
    normalisers of one kind and settings in every run or in none, one process."""
    first = envs[0]
    normalizers, scalers = [env.obs_normalizer for env in envs], [env.reward_scaler for env in envs]

    def alike(parts: list, *names: str) -> bool:
        if all(part is None for part in parts):
            return True
        return all(part is not None and part.training for part in parts) and len(
            {tuple(getattr(part, name) for name in names) for part in parts}) == 1

    return (world_size() == 1 and all(env.autoreset_mode == AutoresetMode.SAME_STEP for env in envs)
            and len({env.num_envs for env in envs}) == 1 and first.device.type == "cpu"
            and alike(normalizers, "clip", "epsilon") and alike(scalers, "gamma", "clip", "epsilon"))


def after_steps(envs: Sequence[GymVecEnv], obs: np.ndarray, reward: np.ndarray, terminated: np.ndarray,
                truncated: np.ndarray, infos: Sequence[dict]) -> StackedStep:
    """``GymVecEnv.after_step`` of S runs' envs (same-step autoreset) on their results stacked (S, N, ...):
    the same checks, episode counts, reward scaling and observation normalisation, each run's with its
    own statistics, which are gathered from its env and written back to it. Done run by run, this was
    100 µs of NumPy calls on 8-row arrays per run and step."""
    for env in envs:
        env.steps += 1
    if not (np.isfinite(reward).all() and np.isfinite(obs).all()):
        for env, r, o in zip(envs, reward, obs):  # the first bad run's own message
            check_finite(env.name, env.steps, reward=r, observation=o)
    episode_ends = terminated | truncated
    _count_episodes([env.episodes for env in envs], reward, episode_ends)
    first = envs[0]
    if first.reward_scaler is not None:
        reward = RewardScaler.scale_each([env.reward_scaler for env in envs], reward, episode_ends)
    finals = [None if not t.any() else env._observe(_with_final(o, t, info), update=False)  # before this step's
              for env, o, t, info in zip(envs, obs, truncated, infos)]                      # statistics update
    obs = np.asarray(obs, dtype=np.float32)
    if first.obs_normalizer is not None:
        obs = ObservationNormalizer.normalize_each([env.obs_normalizer for env in envs], obs)
    obs_t = torch.from_numpy(np.ascontiguousarray(obs))  # (S, N, ...)
    truncated_t = torch.from_numpy(truncated)
    final_obs = has_final = None
    if any(final is not None for final in finals):
        final_obs = torch.stack([o if final is None else final for o, final in zip(obs_t, finals)])
        has_final = torch.stack([t if final is not None else torch.zeros_like(t) for t, final in zip(truncated_t, finals)])
    return StackedStep(obs_t, torch.from_numpy(np.asarray(reward, dtype=np.float32)), torch.from_numpy(terminated),
                       truncated_t, torch.ones(truncated.shape, dtype=torch.bool), final_obs, has_final)


def _with_final(obs: np.ndarray, truncated: np.ndarray, info: dict) -> np.ndarray:
    """The observations with the real final ones where truncated, as ``GymVecEnv.after_step`` builds them."""
    final = np.array(obs, copy=True)
    for i in np.flatnonzero(truncated):
        final[i] = info["final_obs"][i]
    return final


def _count_episodes(trackers: Sequence[EpisodeTracker], reward: np.ndarray, episode_ends: np.ndarray) -> None:
    """``EpisodeTracker.update`` of S runs at once (every step valid: same-step autoreset), (S, N)."""
    returns, lengths = np.stack([t.returns for t in trackers]), np.stack([t.lengths for t in trackers])
    returns += reward
    lengths += 1
    for run in np.flatnonzero(episode_ends.any(1)):
        tracker, ended = trackers[run], episode_ends[run]
        tracker.return_sum += float(returns[run][ended].sum())
        tracker.length_sum += int(lengths[run][ended].sum())
        tracker.count += int(ended.sum())
    returns[episode_ends] = 0.0
    lengths[episode_ends] = 0
    for tracker, run_returns, run_lengths in zip(trackers, returns, lengths):
        tracker.returns, tracker.lengths = run_returns, run_lengths


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
