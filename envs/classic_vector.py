"""Acrobot, MountainCar and Pendulum stepped as one batch of NumPy arrays.

Gymnasium vectorises only CartPole itself (``CartPoleVectorEnv``); for the other classic tasks its
``SyncVectorEnv`` steps one Python env after another, which is most of a small policy's rollout
(16 Acrobots: 0.85 ms a step, benchmarks/RESULTS.md). These envs step all copies with one set of
array operations. They repeat Gymnasium's arithmetic operation for operation, read its constants from
its own classes and seed one generator per copy exactly as ``SyncVectorEnv`` does (``seed + i``), so a
run gives the numbers it gives with ``vectorization=sync`` (tests/test_classic_vector.py checks it step
by step, across resets and time limits). Ended copies reset in the same step (SAME_STEP autoreset);
their real last observation is in ``info["final_obs"]``, an (N, obs_dim) array whose rows are valid where
``info["_final_obs"]`` is true (no ``final_info``: these envs have no per-step info).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from gymnasium.envs.classic_control import utils
from gymnasium.envs.classic_control.acrobot import AcrobotEnv
from gymnasium.envs.classic_control.mountain_car import MountainCarEnv
from gymnasium.envs.classic_control.pendulum import DEFAULT_X, DEFAULT_Y, PendulumEnv, angle_normalize
from gymnasium.error import ResetNeeded
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space


def _array_matches_scalar(array_fn, scalar_fn, dtype: type) -> bool:
    """Whether NumPy's array loop gives what Gymnasium's scalar call gives on this machine. It does on
    baseline x86-64 builds; AVX-512 builds may take Intel SVML's loops for some functions instead."""
    probe = np.random.default_rng(0).uniform(-10.0, 10.0, 4096).astype(dtype)
    return np.array_equal(array_fn(probe), np.array([scalar_fn(v) for v in probe], dtype=dtype))


def _power_of_two(x: np.ndarray) -> np.ndarray:
    return np.power(x, np.full_like(x, 2))


_POWER_AS_SCALAR = {dtype: _array_matches_scalar(_power_of_two, lambda v: v**2, dtype)
                    for dtype in (np.float32, np.float64)}
_COS_AS_MATH = _array_matches_scalar(np.cos, math.cos, np.float64)


def squared(x: np.ndarray) -> np.ndarray:
    """``x ** 2`` as Gymnasium's scalar code gets it: C ``pow``, which differs from ``x * x`` (what
    ``array ** 2`` computes) in the last bit for about one value in a thousand."""
    if _POWER_AS_SCALAR[x.dtype.type]:
        return _power_of_two(x)
    return np.array([v**2 for v in x], dtype=x.dtype)


def math_cos(x: np.ndarray) -> np.ndarray:
    """``math.cos`` of each element (MountainCar calls the C library's cos, not NumPy's)."""
    return np.cos(x) if _COS_AS_MATH else np.array([math.cos(v) for v in x.tolist()])


def rk4_step(derivatives, state, torque, dt: float):
    """One classical Runge-Kutta step of ``acrobot.rk4`` over [0, dt] with the torque held constant, in
    whatever array type ``state`` is (NumPy here, torch in envs/torch_classic), the same operation order."""
    dt2 = dt / 2.0
    k1 = derivatives(state, torque)
    k2 = derivatives(state + dt2 * k1, torque)
    k3 = derivatives(state + dt2 * k2, torque)
    k4 = derivatives(state + dt * k3, torque)
    return state + dt / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)


class BatchedClassicEnv(VectorEnv):
    """N copies of one classic task; subclasses give the start state, the dynamics and the observation."""

    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP}

    def __init__(self, single_env: Any, num_envs: int, max_episode_steps: int | None, state_dim: int):
        if max_episode_steps is not None and (not isinstance(max_episode_steps, int) or max_episode_steps <= 0):
            raise ValueError(f"max_episode_steps={max_episode_steps!r}: expected a positive int, or None for no limit")
        self.task = single_env  # the Gymnasium env whose constants the dynamics read
        self.num_envs = num_envs
        self.max_episode_steps = max_episode_steps
        self.single_observation_space = single_env.observation_space
        self.single_action_space = single_env.action_space
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self.generators: list[np.random.Generator | None] = [None] * num_envs  # one per copy, as sub-envs have
        self.state = np.zeros((num_envs, state_dim))  # float64, as Gymnasium keeps it
        self.elapsed_steps = np.zeros(num_envs, dtype=np.int64)

    # ------------------------------------------------------------------ per task
    def initial_state(self, rng: np.random.Generator, options: dict | None) -> np.ndarray:
        """One copy's start state, drawn with the calls its Gymnasium env makes."""
        raise NotImplementedError

    def dynamics(self, state: np.ndarray, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(B, D) state, (B, ...) actions -> next state (B, D), reward (B,) float64, terminated (B,) bool;
        row by row, so B may hold the copies of several envs of one task."""
        raise NotImplementedError

    def observe(self, state: np.ndarray) -> np.ndarray:
        """(N, D) state -> (N, obs_dim) float32 observation."""
        raise NotImplementedError

    # ------------------------------------------------------------------ vector env
    def _restart(self, rows: np.ndarray, options: dict | None = None) -> np.ndarray:
        """Fresh start states for ``rows``; returns their observations (from the state's own dtype)."""
        fresh = np.stack([self.initial_state(self.generators[i], options) for i in rows])
        self.state[rows] = fresh
        self.elapsed_steps[rows] = 0
        return self.observe(fresh)

    def reset(self, *, seed: int | list[int | None] | None = None, options: dict | None = None):
        """Restart every copy; seed ``s`` seeds copy i with ``s + i``, None continues its generator."""
        if options is not None and "reset_mask" in options:
            raise ValueError("reset(options={'reset_mask': ...}) is not supported by the batched classic envs")
        if seed is None:
            seeds = [None] * self.num_envs
        elif isinstance(seed, int):
            seeds = [seed + i for i in range(self.num_envs)]
        else:
            seeds = list(seed)
            if len(seeds) != self.num_envs:
                raise ValueError(f"reset(seed=...) got {len(seeds)} seeds for {self.num_envs} envs")
        for i, copy_seed in enumerate(seeds):
            if copy_seed is not None or self.generators[i] is None:
                self.generators[i], _ = seeding.np_random(copy_seed)
        return self._restart(np.arange(self.num_envs), options), {}

    def step(self, actions: np.ndarray):
        """(N, ...) actions -> obs (N, obs_dim) float32, reward (N,) float64, terminated (N,), truncated (N,),
        info; ended copies are already restarted in the returned obs."""
        if self.generators[0] is None:
            raise ResetNeeded("call reset() before step()")
        state, reward, terminated = self.dynamics(self.state, np.asarray(actions))
        return self.advance(state, reward, terminated)

    def advance(self, state: np.ndarray, reward: np.ndarray, terminated: np.ndarray):
        """The rest of ``step`` once the dynamics have given the next state (N, D), reward (N,) and
        terminated (N,): time limits and restarts. A seed batch computes the dynamics of all its runs'
        copies at once and hands each run's env its rows (envs/stacked.py)."""
        self.state = state
        obs = self.observe(self.state)
        self.elapsed_steps += 1
        if self.max_episode_steps is None:
            truncated = np.zeros(self.num_envs, dtype=bool)
        else:
            truncated = self.elapsed_steps >= self.max_episode_steps
        ended = terminated | truncated
        info: dict[str, Any] = {}
        if ended.any():
            info = {"final_obs": obs.copy(), "_final_obs": ended}
            rows = np.flatnonzero(ended)
            obs[rows] = self._restart(rows)
        return obs, reward, terminated, truncated, info


class BatchedAcrobot(BatchedClassicEnv):
    """``AcrobotEnv`` (book dynamics, RK4 over one 0.2 s step, no torque noise)."""

    def __init__(self, num_envs: int, max_episode_steps: int | None = 500):
        single = AcrobotEnv()
        if single.torque_noise_max != 0 or single.book_or_nips != "book":
            raise ValueError("BatchedAcrobot implements the book dynamics without torque noise only")
        super().__init__(single, num_envs, max_episode_steps, state_dim=4)
        self.torques = np.asarray(AcrobotEnv.AVAIL_TORQUE, dtype=np.float64)

    def initial_state(self, rng, options):
        low, high = utils.maybe_parse_reset_bounds(options, -0.1, 0.1)
        return rng.uniform(low=low, high=high, size=(4,)).astype(np.float32)

    def derivatives(self, s: np.ndarray, a: np.ndarray) -> np.ndarray:
        """(N, 4) state, (N,) torque -> (N, 4) time derivative; ``AcrobotEnv._dsdt`` term by term."""
        m1, m2 = AcrobotEnv.LINK_MASS_1, AcrobotEnv.LINK_MASS_2
        l1 = AcrobotEnv.LINK_LENGTH_1
        lc1, lc2 = AcrobotEnv.LINK_COM_POS_1, AcrobotEnv.LINK_COM_POS_2
        I1 = I2 = AcrobotEnv.LINK_MOI
        g = 9.8
        theta1, theta2, dtheta1, dtheta2 = s[:, 0], s[:, 1], s[:, 2], s[:, 3]
        cos2, sin2 = np.cos(theta2), np.sin(theta2)
        d1 = m1 * lc1**2 + m2 * (l1**2 + lc2**2 + 2 * l1 * lc2 * cos2) + I1 + I2
        d2 = m2 * (lc2**2 + l1 * lc2 * cos2) + I2
        phi2 = m2 * lc2 * g * np.cos(theta1 + theta2 - np.pi / 2.0)
        phi1 = (
            -m2 * l1 * lc2 * squared(dtheta2) * sin2
            - 2 * m2 * l1 * lc2 * dtheta2 * dtheta1 * sin2
            + (m1 * lc1 + m2 * l1) * g * np.cos(theta1 - np.pi / 2)
            + phi2
        )
        ddtheta2 = (
            a + d2 / d1 * phi1 - m2 * l1 * lc2 * squared(dtheta1) * sin2 - phi2
        ) / (m2 * lc2**2 + I2 - squared(d2) / d1)
        ddtheta1 = -(d2 * ddtheta2 + phi1) / d1
        return np.stack([dtheta1, dtheta2, ddtheta1, ddtheta2], axis=1)

    def dynamics(self, state, actions):
        # acrobot.rk4 over t = [0, dt]; the torque is a constant fifth state there (its derivative is 0)
        ns = rk4_step(self.derivatives, state, self.torques[actions], self.task.dt)
        if (np.abs(ns[:, :2]) > np.pi).any():  # acrobot.wrap: whole turns off, one at a time
            for i in (0, 1):
                while (over := ns[:, i] > np.pi).any():
                    ns[:, i] = np.where(over, ns[:, i] - 2 * np.pi, ns[:, i])
                while (under := ns[:, i] < -np.pi).any():
                    ns[:, i] = np.where(under, ns[:, i] + 2 * np.pi, ns[:, i])
        ns[:, 2] = np.clip(ns[:, 2], -AcrobotEnv.MAX_VEL_1, AcrobotEnv.MAX_VEL_1)
        ns[:, 3] = np.clip(ns[:, 3], -AcrobotEnv.MAX_VEL_2, AcrobotEnv.MAX_VEL_2)
        terminated = -np.cos(ns[:, 0]) - np.cos(ns[:, 1] + ns[:, 0]) > 1.0
        reward = np.where(terminated, 0.0, -1.0)
        return ns, reward, terminated

    def observe(self, state):
        # from a fresh float32 start state the cosines are float32, as in AcrobotEnv._get_ob
        s0, s1 = state[:, 0], state[:, 1]
        observation = [np.cos(s0), np.sin(s0), np.cos(s1), np.sin(s1), state[:, 2], state[:, 3]]
        return np.stack(observation, axis=1).astype(np.float32)


class BatchedMountainCar(BatchedClassicEnv):
    """``MountainCarEnv``: discrete push left, none, right."""

    def __init__(self, num_envs: int, max_episode_steps: int | None = 200, goal_velocity: float = 0):
        super().__init__(MountainCarEnv(goal_velocity=goal_velocity), num_envs, max_episode_steps, state_dim=2)

    def initial_state(self, rng, options):
        low, high = utils.maybe_parse_reset_bounds(options, -0.6, -0.4)
        return np.array([rng.uniform(low=low, high=high), 0])

    def dynamics(self, state, actions):
        c = self.task
        position, velocity = state[:, 0], state[:, 1]
        velocity = velocity + ((actions - 1) * c.force + math_cos(3 * position) * (-c.gravity))
        velocity = np.clip(velocity, -c.max_speed, c.max_speed)
        position = np.clip(position + velocity, c.min_position, c.max_position)
        velocity = np.where((position == c.min_position) & (velocity < 0), 0.0, velocity)
        terminated = (position >= c.goal_position) & (velocity >= c.goal_velocity)
        return np.stack([position, velocity], axis=1), np.full(len(state), -1.0), terminated

    def observe(self, state):
        return state.astype(np.float32)


class BatchedPendulum(BatchedClassicEnv):
    """``PendulumEnv``: torque in [-2, 2], never terminates (200-step time limit)."""

    def __init__(self, num_envs: int, max_episode_steps: int | None = 200, g: float = 10.0):
        super().__init__(PendulumEnv(g=g), num_envs, max_episode_steps, state_dim=2)

    def initial_state(self, rng, options):
        if options is None:
            high = np.array([DEFAULT_X, DEFAULT_Y])
        else:
            x = utils.verify_number_and_cast(options.get("x_init", DEFAULT_X))
            y = utils.verify_number_and_cast(options.get("y_init", DEFAULT_Y))
            high = np.array([x, y])
        return rng.uniform(low=-high, high=high)

    def dynamics(self, state, actions):
        c = self.task
        th, thdot = state[:, 0], state[:, 1]
        g, m, l, dt = c.g, c.m, c.l, c.dt
        u = np.clip(actions[:, 0], -c.max_torque, c.max_torque)  # keeps the action's dtype, as PendulumEnv
        costs = squared(angle_normalize(th)) + 0.1 * squared(thdot) + 0.001 * squared(u)
        newthdot = thdot + (3 * g / (2 * l) * np.sin(th) + 3.0 / (m * l**2) * u) * dt
        newthdot = np.clip(newthdot, -c.max_speed, c.max_speed)
        newth = th + newthdot * dt
        return np.stack([newth, newthdot], axis=1), -costs, np.zeros(len(state), dtype=bool)

    def observe(self, state):
        return np.stack([np.cos(state[:, 0]), np.sin(state[:, 0]), state[:, 1]], axis=1).astype(np.float32)


BATCHED_ENVS: dict[str, type[BatchedClassicEnv]] = {
    "gymnasium.envs.classic_control.acrobot:AcrobotEnv": BatchedAcrobot,
    "gymnasium.envs.classic_control.mountain_car:MountainCarEnv": BatchedMountainCar,
    "gymnasium.envs.classic_control.pendulum:PendulumEnv": BatchedPendulum,
}
"""Batched implementation by the Gymnasium entry point it reproduces."""
