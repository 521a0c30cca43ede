"""Stepping classic-control copies: the batched NumPy envs (envs/classic_vector.py) against Gymnasium's
SyncVectorEnv of the same tasks, in one process, alternating the two round by round.

Each round steps both with the same random actions for ``--steps`` steps (autoresets included) and
checks that they return the same observations, rewards, episode ends and final observations to the bit; the table gives
the median microseconds per vector step over the rounds and the speed-up (sync / batched).

    python benchmarks/classic_env_stepping.py                 # 4, 8 and 16 copies, 7 rounds
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
from gymnasium.vector import AutoresetMode

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from classic_control_study import cpu_name  # noqa: E402
from envs.classic_vector import BatchedAcrobot, BatchedMountainCar, BatchedPendulum  # noqa: E402
from record import record  # noqa: E402

TASKS = {"Acrobot-v1": BatchedAcrobot, "MountainCar-v0": BatchedMountainCar, "Pendulum-v1": BatchedPendulum}


def timed_steps(env: gym.vector.VectorEnv, actions: np.ndarray) -> tuple[float, list[np.ndarray]]:
    """Microseconds per step over ``actions`` (T, N, ...) from a seeded reset, and what came back."""
    outputs = [env.reset(seed=0)[0]]
    start = time.perf_counter()
    for action in actions:
        obs, reward, terminated, truncated, info = env.step(action)
        outputs += [obs, reward, terminated, truncated]
        ended = terminated | truncated
        if ended.any():  # the real last observations of the copies that reset
            outputs.append(np.stack(list(info["final_obs"][ended])))
    return (time.perf_counter() - start) / len(actions) * 1e6, outputs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-envs", type=int, nargs="+", default=[4, 8, 16])
    parser.add_argument("--steps", type=int, default=2000, help="vector steps per round")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--no-record", action="store_true", help="print only; leave RESULTS.md alone")
    args = parser.parse_args()

    rows = ["| task | copies | SyncVectorEnv µs/step | batched µs/step | speed-up | same numbers |",
            "|---|---|---|---|---|---|"]
    rng = np.random.default_rng(0)
    for env_id, batched_class in TASKS.items():
        for n in args.num_envs:
            sync = gym.make_vec(env_id, num_envs=n, vectorization_mode="sync",
                                vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP})
            batched = batched_class(num_envs=n)
            sync.action_space.seed(int(rng.integers(1 << 31)))
            actions = np.stack([sync.action_space.sample() for _ in range(args.steps)])
            times: dict[str, list[float]] = {"sync": [], "batched": []}
            same = True
            for _ in range(args.rounds):
                sync_us, sync_out = timed_steps(sync, actions)
                batched_us, batched_out = timed_steps(batched, actions)
                times["sync"].append(sync_us)
                times["batched"].append(batched_us)
                same &= all(np.array_equal(a, b) for a, b in zip(sync_out, batched_out))
            sync_us, batched_us = statistics.median(times["sync"]), statistics.median(times["batched"])
            rows.append(f"| {env_id} | {n} | {sync_us:.0f} | {batched_us:.0f} | {sync_us / batched_us:.2f}× | "
                        f"{'yes' if same else 'NO'} |")
            print(rows[-1], flush=True)
    command = "python benchmarks/classic_env_stepping.py " + " ".join(sys.argv[1:])
    report = "\n".join([
        f"## Classic control: batched NumPy envs vs Gymnasium's SyncVectorEnv "
        f"({datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC)", "",
        f"Command: `{command.strip()}`",
        f"Machine: {cpu_name()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, numpy {np.__version__}, gymnasium {gym.__version__}; one process, the two "
        f"alternating round by round; {args.rounds} rounds of {args.steps} vector steps with the same random "
        "actions from the same seeded reset (autoresets included); median µs per vector step; load average "
        f"{', '.join(f'{x:.2f}' for x in os.getloadavg())} at the end.", "",
        *rows,
    ])
    print("\n" + report)
    if not args.no_record:
        record("Env stepping: batched NumPy envs vs SyncVectorEnv", report)


if __name__ == "__main__":
    main()
