"""Ten CartPole-v1 PPO seeds: one seed batch (``seeds=[...]``) against SB3 and our single runs, in one run.

Every sweep trains the same 10 seeds at the rl-baselines3-zoo CartPole settings (8 envs × 32 steps,
one minibatch of 256, 20 epochs, linear schedules; no evaluation), each process with one torch thread:

- ours, batched: the 10 seeds as one batch in one process; and as two batches of 5 side by side (two cores);
- ours, single runs: one process per seed, one at a time and two at a time;
- SB3 PPO: one process per seed, one at a time and two at a time.

A sweep's figure is its throughput: the env steps of all its seeds over its wall seconds, from the
first process's start to the last one's end (process start-up and imports included, alike for all).
The ratios compare each sweep with SB3's one-at-a-time and two-at-a-time sweeps of the same run.

    pip install -e ".[bench]"
    python benchmarks/seed_batch_vs_sb3.py                 # 10 seeds × 51,200 env steps, every sweep
    python benchmarks/seed_batch_vs_sb3.py --seeds 4 --steps 12800 --no-record   # a quick check
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from cartpole_vs_sb3 import worker_ours, worker_sb3, zoo_overrides  # noqa: E402
from classic_control_study import cpu_name, load_average, versions  # noqa: E402
from record import record  # noqa: E402

WORKER_ENV = {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PATH": os.environ.get("PATH", "/usr/bin:/bin")}


def worker_batch(seeds: list[int], steps: int, run_dir: str) -> dict:
    """One seed batch at the zoo settings; the batch's training clock and its runs' env steps."""
    from ppo_core.api import make_config
    from ppo_core.build import run_training

    config = make_config(*zoo_overrides(8), "progress=false", f"seeds=[{','.join(map(str, seeds))}]",
                         f"total_timesteps={steps}", "checkpoint_every=0", "eval_every=0", "eval_episodes=0",
                         "torch_threads=1")
    summary = run_training(config, Path(run_dir))
    return {"env_steps": summary["env_steps"], "wall_seconds": summary["wall_seconds"]}


def launch(args: list[str], out: Path) -> dict:
    done = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker", *args, str(out)], cwd=ROOT,
                          capture_output=True, text=True, env=WORKER_ENV)
    if done.returncode != 0:
        raise RuntimeError(f"worker {args} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def sweep(jobs: list[list[str]], parallel: int, out: Path) -> dict:
    """Run ``jobs`` (worker arguments), ``parallel`` at a time; the sweep's wall seconds and env steps."""
    started = time.perf_counter()
    with ThreadPoolExecutor(parallel) as pool:
        results = list(pool.map(lambda job: launch(job[1], out / f"{job[0]}"), enumerate(jobs)))
    wall = time.perf_counter() - started
    steps = sum(r["env_steps"] for r in results)
    return {"wall_seconds": wall, "env_steps": steps, "sps": steps / wall,
            "training_seconds": sum(r["wall_seconds"] for r in results)}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        kind, *rest = sys.argv[2:]
        if kind == "batch":
            seeds, steps, run_dir = rest
            result = worker_batch([int(s) for s in seeds.split(",")], int(steps), run_dir)
        else:
            seed, steps, run_dir = rest
            worker = worker_ours if kind == "ours" else worker_sb3
            result = worker("speed", 8, int(seed), int(steps), run_dir)
        print(json.dumps({"env_steps": result["env_steps"], "wall_seconds": result["wall_seconds"]}))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=10, help="seeds 0 .. N-1")
    parser.add_argument("--steps", type=int, default=51_200, help="env steps per seed")
    parser.add_argument("--out", type=Path, default=ROOT / "artifacts" / "seed_batch_vs_sb3")
    parser.add_argument("--no-record", action="store_true", help="print only; leave benchmarks/RESULTS.md alone")
    args = parser.parse_args()
    seeds, steps = list(range(args.seeds)), str(args.steps)
    half = (len(seeds) + 1) // 2
    started, load_at_start = time.time(), load_average()
    plan = [  # (name, jobs, processes at once); SB3 first and last so a load change shows in both halves
        ("SB3 PPO, one process per seed, one at a time", [["sb3", str(s), steps] for s in seeds], 1),
        ("ours, one seed batch of all seeds, one process", [["batch", ",".join(map(str, seeds)), steps]], 1),
        ("ours, single runs, one at a time", [["ours", str(s), steps] for s in seeds], 1),
        ("ours, two seed batches side by side", [["batch", ",".join(map(str, seeds[:half])), steps],
                                                  ["batch", ",".join(map(str, seeds[half:])), steps]], 2),
        ("ours, single runs, two at a time", [["ours", str(s), steps] for s in seeds], 2),
        ("SB3 PPO, one process per seed, two at a time", [["sb3", str(s), steps] for s in seeds], 2),
    ]
    rows = {}
    for i, (name, jobs, parallel) in enumerate(plan):
        rows[name] = sweep(jobs, parallel, args.out / f"sweep_{i}")
        print(f"{name:50s} {rows[name]['wall_seconds']:7.1f} s  {rows[name]['sps']:8.0f} env steps/s", flush=True)
    sb3_one, sb3_two = rows[plan[0][0]]["sps"], rows[plan[-1][0]]["sps"]
    lines = [f"## 10 CartPole PPO seeds: seed batch vs SB3 and single runs ({datetime.date.today().isoformat()})", "",
             f"Command: `python benchmarks/seed_batch_vs_sb3.py --seeds {args.seeds} --steps {args.steps}`",
             f"Machine: {cpu_name()}, {os.cpu_count()} cores, Python {platform.python_version()}, {versions()}; one "
             f"torch thread per process; load average {load_at_start} at start, {load_average()} at end; "
             f"{time.time() - started:.0f} s in all.",
             f"Each sweep trains seeds 0-{args.seeds - 1} for {args.steps} env steps each at the rl-baselines3-zoo "
             "CartPole settings (8 envs × 32 steps, one minibatch of 256, 20 epochs, linear schedules), no "
             "evaluation. Throughput: env steps of all seeds / wall seconds of the whole sweep (process start to "
             "end, start-up included); ratios against SB3's sweeps of this run.", "",
             "| sweep | wall s | env steps/s (all seeds) | vs SB3 one at a time | vs SB3 two at a time |",
             "|---|---|---|---|---|"]
    for name, row in rows.items():
        lines.append(f"| {name} | {row['wall_seconds']:.1f} | {row['sps']:.0f} | {row['sps'] / sb3_one:.2f}× | "
                     f"{row['sps'] / sb3_two:.2f}× |")
    text = "\n".join(lines)
    print(text)
    if not args.no_record:
        record("Seed batches: 10 CartPole PPO seeds vs SB3", text)


if __name__ == "__main__":
    main()
