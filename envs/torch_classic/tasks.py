"""The physics of the five classic-control tasks as batched torch functions.

Each task repeats its Gymnasium env's ``step`` operation for operation on (D, N) state tensors (one
contiguous row per coordinate, as Gymnasium's ``CartPoleVectorEnv`` keeps them), reads
the constants from the Gymnasium env it wraps, and draws start states on the host with the very calls
that env's ``reset`` makes, so that a copy's sequence of start states is the one Gymnasium draws from
the same generator. Terminations and rewards are masks and ``torch.where``, never Python branches on
tensor values, so a step queues its kernels without waiting for the device.

In float64 the numbers are Gymnasium's up to the last bits of ``cos`` and ``sin`` (torch's kernels and
the C library's may round differently); where Gymnasium computes in float32 (the torque of Pendulum,
the stored state of MountainCarContinuous), so do these.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from gymnasium.envs.classic_control.acrobot import AcrobotEnv
from gymnasium.envs.classic_control.cartpole import CartPoleEnv
from gymnasium.envs.classic_control.continuous_mountain_car import Continuous_MountainCarEnv
from gymnasium.envs.classic_control.mountain_car import MountainCarEnv
from gymnasium.envs.classic_control.pendulum import DEFAULT_X, DEFAULT_Y, PendulumEnv
from torch import Tensor

from envs.classic_vector import rk4_step


class ClassicTask:
    """One task: its Gymnasium env (constants and spaces), start-state draws and batched dynamics."""

    state_dim: int

    def __init__(self, env: Any):
        self.env = env
        self.observation_space = env.observation_space
        self.action_space = env.action_space

    def draw_starts(self, rng: np.random.Generator, count: int) -> np.ndarray:
        """(count, D) float64: the next ``count`` start states of one copy, as ``count`` resets draw them."""
        raise NotImplementedError

    def dynamics(self, state: Tensor, action: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(D, N) state, (N,) or (N, 1) action -> next state (D, N), reward (N,), terminated (N,) bool."""
        raise NotImplementedError

    def observe(self, state: Tensor) -> Tensor:
        """(D, N) state -> (N, obs_dim) float32 observation."""
        return state.T.to(torch.float32, memory_format=torch.contiguous_format)


class CartPole(ClassicTask):
    """``CartPoleEnv`` (CartPole-v0/v1): push left or right, ends when the pole or cart leaves its bounds."""

    state_dim = 4

    def __init__(self, sutton_barto_reward: bool = False):
        super().__init__(CartPoleEnv(sutton_barto_reward=sutton_barto_reward))

    def draw_starts(self, rng, count):
        return rng.uniform(low=-0.05, high=0.05, size=(count, 4))

    def dynamics(self, state, action):
        c = self.env
        x, x_dot, theta, theta_dot = state
        force = (2 * action - 1).to(state.dtype) * c.force_mag  # ±force_mag, as CartPoleVectorEnv computes it
        costheta, sintheta = torch.cos(theta), torch.sin(theta)
        temp = (force + c.polemass_length * theta_dot.square() * sintheta) / c.total_mass
        thetaacc = (c.gravity * sintheta - costheta * temp) / (
            c.length * (4.0 / 3.0 - c.masspole * costheta.square() / c.total_mass))
        xacc = temp - c.polemass_length * thetaacc * costheta / c.total_mass
        if c.kinematics_integrator == "euler":
            x, x_dot = x + c.tau * x_dot, x_dot + c.tau * xacc
            theta, theta_dot = theta + c.tau * theta_dot, theta_dot + c.tau * thetaacc
        else:  # semi-implicit Euler
            x_dot = x_dot + c.tau * xacc
            x = x + c.tau * x_dot
            theta_dot = theta_dot + c.tau * thetaacc
            theta = theta + c.tau * theta_dot
        terminated = (x < -c.x_threshold) | (x > c.x_threshold) | (theta < -c.theta_threshold_radians) | (
            theta > c.theta_threshold_radians)
        if c._sutton_barto_reward:  # 0 while balancing, -1 on the step that ends it
            reward = torch.where(terminated, -1.0, 0.0)
        else:
            reward = torch.ones_like(x)
        return torch.stack([x, x_dot, theta, theta_dot]), reward.to(state.dtype), terminated


class Acrobot(ClassicTask):
    """``AcrobotEnv`` (book dynamics, RK4 over one 0.2 s step, no torque noise)."""

    state_dim = 4

    def __init__(self):
        super().__init__(AcrobotEnv())
        if self.env.torque_noise_max != 0 or self.env.book_or_nips != "book":
            raise ValueError("the torch Acrobot implements the book dynamics without torque noise only")

    def draw_starts(self, rng, count):
        # AcrobotEnv.reset draws float32 states; rk4 then integrates in float64
        return rng.uniform(low=-0.1, high=0.1, size=(count, 4)).astype(np.float32).astype(np.float64)

    @staticmethod
    def derivatives(s: Tensor, a: Tensor) -> Tensor:
        """(4, N) state, (N,) torque -> (4, N) time derivative; ``AcrobotEnv._dsdt`` term by term."""
        m1, m2 = AcrobotEnv.LINK_MASS_1, AcrobotEnv.LINK_MASS_2
        l1 = AcrobotEnv.LINK_LENGTH_1
        lc1, lc2 = AcrobotEnv.LINK_COM_POS_1, AcrobotEnv.LINK_COM_POS_2
        I1 = I2 = AcrobotEnv.LINK_MOI
        g = 9.8
        theta1, theta2, dtheta1, dtheta2 = s
        cos2, sin2 = torch.cos(theta2), torch.sin(theta2)
        d1 = m1 * lc1**2 + m2 * (l1**2 + lc2**2 + 2 * l1 * lc2 * cos2) + I1 + I2
        d2 = m2 * (lc2**2 + l1 * lc2 * cos2) + I2
        phi2 = m2 * lc2 * g * torch.cos(theta1 + theta2 - math.pi / 2.0)
        phi1 = (
            -m2 * l1 * lc2 * dtheta2.square() * sin2
            - 2 * m2 * l1 * lc2 * dtheta2 * dtheta1 * sin2
            + (m1 * lc1 + m2 * l1) * g * torch.cos(theta1 - math.pi / 2)
            + phi2
        )
        ddtheta2 = (a + d2 / d1 * phi1 - m2 * l1 * lc2 * dtheta1.square() * sin2 - phi2) / (
            m2 * lc2**2 + I2 - d2.square() / d1)
        ddtheta1 = -(d2 * ddtheta2 + phi1) / d1
        return torch.stack([dtheta1, dtheta2, ddtheta1, ddtheta2])

    @staticmethod
    def wrap(x: Tensor) -> Tensor:
        """``acrobot.wrap(x, -π, π)``: whole turns off one at a time, as its while loops do (two turns
        cover any reachable angle; a closed form brings back anything beyond, without a branch)."""
        turn = 2 * math.pi
        for _ in range(2):
            x = torch.where(x > math.pi, x - turn, x)
            x = torch.where(x < -math.pi, x + turn, x)
        x = torch.where(x > math.pi, x - turn * torch.ceil((x - math.pi) / turn), x)
        return torch.where(x < -math.pi, x + turn * torch.ceil((-math.pi - x) / turn), x)

    def dynamics(self, state, action):
        torque = (action.to(state.dtype) - 1.0)  # AVAIL_TORQUE = [-1, 0, +1]
        ns = rk4_step(self.derivatives, state, torque, self.env.dt)
        theta1, theta2 = self.wrap(ns[0]), self.wrap(ns[1])
        dtheta1 = ns[2].clamp(-AcrobotEnv.MAX_VEL_1, AcrobotEnv.MAX_VEL_1)
        dtheta2 = ns[3].clamp(-AcrobotEnv.MAX_VEL_2, AcrobotEnv.MAX_VEL_2)
        terminated = -torch.cos(theta1) - torch.cos(theta2 + theta1) > 1.0
        reward = torch.where(terminated, 0.0, -1.0).to(state.dtype)
        return torch.stack([theta1, theta2, dtheta1, dtheta2]), reward, terminated

    def observe(self, state):
        s0, s1, ds0, ds1 = state
        return torch.stack([torch.cos(s0), torch.sin(s0), torch.cos(s1), torch.sin(s1), ds0, ds1], 1).float()


class MountainCar(ClassicTask):
    """``MountainCarEnv`` (MountainCar-v0): push left, none or right; -1 a step until the flag."""

    state_dim = 2

    def __init__(self, goal_velocity: float = 0):
        super().__init__(MountainCarEnv(goal_velocity=goal_velocity))

    def draw_starts(self, rng, count):
        return np.stack([rng.uniform(low=-0.6, high=-0.4, size=count), np.zeros(count)], 1)

    def dynamics(self, state, action):
        c = self.env
        position, velocity = state
        velocity = velocity + ((action.to(state.dtype) - 1) * c.force + torch.cos(3 * position) * (-c.gravity))
        velocity = velocity.clamp(-c.max_speed, c.max_speed)
        position = (position + velocity).clamp(c.min_position, c.max_position)
        velocity = torch.where((position == c.min_position) & (velocity < 0), 0.0, velocity)
        terminated = (position >= c.goal_position) & (velocity >= c.goal_velocity)
        return torch.stack([position, velocity]), torch.full_like(position, -1.0), terminated


class MountainCarContinuous(ClassicTask):
    """``Continuous_MountainCarEnv`` (MountainCarContinuous-v0): a force in [-1, 1]; +100 at the flag
    minus 0.1·action² a step. Gymnasium stores its state in float32 after every step; so does this."""

    state_dim = 2

    def __init__(self, goal_velocity: float = 0):
        super().__init__(Continuous_MountainCarEnv(goal_velocity=goal_velocity))

    def draw_starts(self, rng, count):
        return np.stack([rng.uniform(low=-0.6, high=-0.4, size=count), np.zeros(count)], 1)

    def dynamics(self, state, action):
        c = self.env
        position, velocity = state
        action = action[:, 0].float()  # the reward squares the raw action, the physics its clipped force
        force = action.clamp(c.min_action, c.max_action).to(state.dtype)
        velocity = velocity + (force * c.power - 0.0025 * torch.cos(3 * position))
        velocity = velocity.clamp(-c.max_speed, c.max_speed)
        position = (position + velocity).clamp(c.min_position, c.max_position)
        velocity = torch.where((position == c.min_position) & (velocity < 0), 0.0, velocity)
        terminated = (position >= c.goal_position) & (velocity >= c.goal_velocity)
        reward = torch.where(terminated, 100.0, 0.0).to(state.dtype) - action.to(state.dtype).square() * 0.1
        return torch.stack([position, velocity]).float().to(state.dtype), reward, terminated


class Pendulum(ClassicTask):
    """``PendulumEnv`` (Pendulum-v1): a torque in [-2, 2]; the cost of angle, speed and torque; no end
    but the time limit. The torque terms are float32, as Gymnasium computes them from a float32 action."""

    state_dim = 2

    def __init__(self, g: float = 10.0):
        super().__init__(PendulumEnv(g=g))

    def draw_starts(self, rng, count):
        high = np.array([DEFAULT_X, DEFAULT_Y])
        return rng.uniform(low=-high, high=high, size=(count, 2))

    def dynamics(self, state, action):
        c = self.env
        th, thdot = state
        g, m, l, dt = c.g, c.m, c.l, c.dt
        u = action[:, 0].float().clamp(-c.max_torque, c.max_torque)  # (N,) float32
        angle = torch.remainder(th + math.pi, 2 * math.pi) - math.pi  # pendulum.angle_normalize
        costs = angle.square() + 0.1 * thdot.square() + (0.001 * u.square()).to(state.dtype)
        newthdot = thdot + (3 * g / (2 * l) * torch.sin(th) + (3.0 / (m * l**2) * u).to(state.dtype)) * dt
        newthdot = newthdot.clamp(-c.max_speed, c.max_speed)
        newth = th + newthdot * dt
        return torch.stack([newth, newthdot]), -costs, torch.zeros_like(th, dtype=torch.bool)

    def observe(self, state):
        return torch.stack([torch.cos(state[0]), torch.sin(state[0]), state[1]], 1).float()


TASKS: dict[str, type[ClassicTask]] = {
    "gymnasium.envs.classic_control.cartpole:CartPoleEnv": CartPole,
    "gymnasium.envs.classic_control.acrobot:AcrobotEnv": Acrobot,
    "gymnasium.envs.classic_control.mountain_car:MountainCarEnv": MountainCar,
    "gymnasium.envs.classic_control.continuous_mountain_car:Continuous_MountainCarEnv": MountainCarContinuous,
    "gymnasium.envs.classic_control.pendulum:PendulumEnv": Pendulum,
}
"""Torch port by the Gymnasium entry point it reproduces."""

TASK_KWARGS = {"sutton_barto_reward", "goal_velocity", "g"}
"""The Gymnasium constructor arguments the ports take (each port its own: a wrong one is a TypeError)."""
