"""Stepping classic-control copies on the CPU: the batched NumPy envs (envs/classic_vector.py) and the
torch ports (envs/torch_classic, float64) against Gymnasium's SyncVectorEnv of the same tasks, in one
process, alternating round by round.

Each round steps each with the same random actions for ``--steps`` steps (autoresets included) from
the same seeded reset, and checks that they return SyncVectorEnv's observations, rewards, episode ends
and final observations: the batched envs to the bit, the torch ports to float32 rounding (their
rewards come back as float32 tensors). The torch ports run twice: with their start states queued
ahead (the default) and drawing each start when a copy ends, which reads the ended mask back every
step. The table gives the median microseconds per vector step over the rounds and the speed-ups over
SyncVectorEnv. CartPole has no batched NumPy env of SyncVectorEnv's seeding (Gymnasium's own
``CartPoleVectorEnv`` draws every copy's starts from one generator).

    python benchmarks/classic_env_stepping.py                 # 4, 8, 16 and 256 copies, 7 rounds
    python benchmarks/classic_env_stepping.py --num-envs 16 --rounds 3 --no-record
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from classic_control_study import cpu_name  # noqa: E402
from envs.classic_vector import BatchedAcrobot, BatchedMountainCar, BatchedPendulum  # noqa: E402
from envs.torch_classic import TASKS as TORCH_TASKS, TorchClassicVecEnv  # noqa: E402
from envs.torch_classic.starts import StartQueue  # noqa: E402
from record import record  # noqa: E402

TASKS = {"CartPole-v1": None, "Acrobot-v1": BatchedAcrobot, "MountainCar-v0": BatchedMountainCar,
         "Pendulum-v1": BatchedPendulum}


class DrawOnDemand(StartQueue):
    """The naive scheme the start queue replaces: read the ended mask back every step and draw a start
    for each copy that ended, one NumPy call each."""

    def reseed(self, seeds):
        for i, seed in enumerate(seeds):
            if seed is not None or self.generators[i] is None:
                self.generators[i], _ = gym.utils.seeding.np_random(seed)
        return self._drawn(range(self.num_envs))

    def take(self, mask):
        return self._drawn(torch.nonzero(mask).flatten().tolist())  # .tolist(): the sync

    def _drawn(self, copies) -> torch.Tensor:  # (D, N); rows of other copies are never read
        start = torch.zeros(self.state_dim, self.num_envs, dtype=self.dtype, device=self.device)
        if copies:
            draws = np.stack([self.draw(self.generators[i], 1)[0] for i in copies], 1)
            start[:, list(copies)] = torch.as_tensor(draws, dtype=self.dtype)
        return start


def torch_env(env_id: str, n: int, on_demand: bool = False) -> TorchClassicVecEnv:
    spec = gym.spec(env_id)
    env = TorchClassicVecEnv(TORCH_TASKS[spec.entry_point](), n, max_episode_steps=spec.max_episode_steps)
    if on_demand:
        env.starts = DrawOnDemand(env.task.draw_starts, n, env.task.state_dim, 1, env.device, env.dtype)
    return env


def timed_torch_steps(env: TorchClassicVecEnv, actions: np.ndarray) -> tuple[float, list[list[np.ndarray]]]:
    """``timed_steps`` for a torch env: the actions are tensors before the clock starts, the outputs
    become arrays after it stops."""
    actions_t = torch.as_tensor(actions)
    results = []
    obs = env.reset(seed=0)
    start = time.perf_counter()
    for action in actions_t:
        results.append(env.step(action))
    elapsed = (time.perf_counter() - start) / len(actions) * 1e6
    outputs = [[obs.numpy()]]
    for r in results:
        outputs.append([r.obs.numpy(), r.reward.numpy(), r.terminated.numpy(), r.truncated.numpy()])
        ended = (r.terminated | r.truncated).numpy()
        if ended.any():
            outputs[-1].append(r.final_obs.numpy()[ended])
    return elapsed, outputs


def agreement(mine: list[list[np.ndarray]], reference: list[list[np.ndarray]], exact: bool) -> int | None:
    """The first step (0: the reset) where ``mine`` leaves ``reference`` (to the bit, or with equal ends
    and float32 rounding elsewhere); None if it never does."""
    def same(a: np.ndarray, b: np.ndarray) -> bool:
        if exact or a.dtype == bool:
            return np.array_equal(a, b)
        return a.shape == b.shape and np.allclose(a, b, rtol=1e-6, atol=1e-6)

    for step, (a, b) in enumerate(zip(mine, reference)):
        if len(a) != len(b) or not all(same(x, y) for x, y in zip(a, b)):
            return step
    return None


def timed_steps(env: gym.vector.VectorEnv, actions: np.ndarray) -> tuple[float, list[list[np.ndarray]]]:
    """Microseconds per step over ``actions`` (T, N, ...) from a seeded reset, and what came back: the
    reset's observations, then each step's."""
    outputs = [[env.reset(seed=0)[0]]]
    start = time.perf_counter()
    for action in actions:
        obs, reward, terminated, truncated, info = env.step(action)
        outputs.append([obs, reward, terminated, truncated])
        ended = terminated | truncated
        if ended.any():  # the real last observations of the copies that reset
            outputs[-1].append(np.stack(list(info["final_obs"][ended])))
    return (time.perf_counter() - start) / len(actions) * 1e6, outputs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-envs", type=int, nargs="+", default=[4, 8, 16, 256])
    parser.add_argument("--steps", type=int, default=2000, help="vector steps per round")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--no-record", action="store_true", help="print only; leave RESULTS.md alone")
    args = parser.parse_args()
    torch.set_num_threads(1)  # as training runs these small ops

    rows = ["| task | copies | SyncVectorEnv µs/step | batched µs/step | torch µs/step | torch, starts drawn on "
            "demand µs/step | batched speed-up | torch speed-up | same numbers (batched; torch) |",
            "|---|---|---|---|---|---|---|---|---|"]
    rng = np.random.default_rng(0)
    for env_id, batched_class in TASKS.items():
        for n in args.num_envs:
            sync = gym.make_vec(env_id, num_envs=n, vectorization_mode="sync",
                                vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP})
            batched = batched_class(num_envs=n) if batched_class is not None else None
            queued, on_demand = torch_env(env_id, n), torch_env(env_id, n, on_demand=True)
            sync.action_space.seed(int(rng.integers(1 << 31)))
            actions = np.stack([sync.action_space.sample() for _ in range(args.steps)])
            times: dict[str, list[float]] = {"sync": [], "batched": [], "torch": [], "on_demand": []}
            parted: dict[str, list[int | None]] = {"batched": [], "torch": []}  # where each left SyncVectorEnv
            for _ in range(args.rounds):
                sync_us, sync_out = timed_steps(sync, actions)
                times["sync"].append(sync_us)
                if batched is not None:
                    batched_us, batched_out = timed_steps(batched, actions)
                    times["batched"].append(batched_us)
                    parted["batched"].append(agreement(batched_out, sync_out, exact=True))
                for name, env in (("torch", queued), ("on_demand", on_demand)):
                    torch_us, torch_out = timed_torch_steps(env, actions)
                    times[name].append(torch_us)
                    parted["torch"].append(agreement(torch_out, sync_out, exact=False))
            median = {name: statistics.median(t) if t else None for name, t in times.items()}
            batched_cells = (f"{median['batched']:.0f}", f"{median['sync'] / median['batched']:.2f}×") \
                if median["batched"] else ("—", "—")
            same = "; ".join("—" if not steps else "yes" if all(s is None for s in steps)
                             else f"to step {min(s for s in steps if s is not None)}" for steps in parted.values())
            rows.append(f"| {env_id} | {n} | {median['sync']:.0f} | {batched_cells[0]} | {median['torch']:.0f} | "
                        f"{median['on_demand']:.0f} | {batched_cells[1]} | {median['sync'] / median['torch']:.2f}× | "
                        f"{same} |")
            print(rows[-1], flush=True)
    command = "python benchmarks/classic_env_stepping.py " + " ".join(sys.argv[1:])
    report = "\n".join([
        f"## Classic control on the CPU: batched NumPy envs and torch ports vs Gymnasium's SyncVectorEnv "
        f"({datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC)", "",
        f"Command: `{command.strip()}`",
        f"Machine: {cpu_name()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, numpy {np.__version__}, gymnasium {gym.__version__}, torch "
        f"{torch.__version__} (one thread); one process, the envs alternating round by round; {args.rounds} rounds "
        f"of {args.steps} vector steps with the same random actions from the same seeded reset (autoresets "
        "included); median µs per vector step; same numbers: the batched envs to the bit and the torch ports "
        "(float64) to float32 rounding over every step, or up to the first step where one parts from "
        "SyncVectorEnv; load average "
        f"{', '.join(f'{x:.2f}' for x in os.getloadavg())} at the end.", "",
        *rows,
    ])
    print("\n" + report)
    if not args.no_record:
        record("Env stepping: batched NumPy envs vs SyncVectorEnv", report)


if __name__ == "__main__":
    main()
