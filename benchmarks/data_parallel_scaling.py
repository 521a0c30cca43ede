"""One fixed-size training run in one process and over two data-parallel processes (torchrun, gloo).

Each case trains the same global batch per update (8 env copies in one process, 4 in each of two) for
the same env steps, without evaluation, one torch thread per process:

- CartPole-v1 PPO at the default settings (64×64 MLP: launch and collective overhead dominate);
- CartPole-v1 PPO with a 512×512 MLP (arithmetic dominates);
- CartPole-v1 TRPO at the default settings (each CG iteration is a collective).

A figure is the training clock of rank 0 (``wall_seconds`` of summary.json: rollouts and updates,
start-up and evaluation excluded) and the process wall (torchrun or python start to end). The ratio
is one process's time over two processes' time: above 1, two processes are faster. One process with
two torch threads is measured too, the other way to spend the second core.

    python benchmarks/data_parallel_scaling.py                  # every case, 102,400 env steps each
    python benchmarks/data_parallel_scaling.py --steps 20480 --no-record   # a quick check
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
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from classic_control_study import cpu_name, load_average, versions  # noqa: E402
from record import record  # noqa: E402

import torch  # noqa: E402

CASES = {
    "CartPole PPO, 64×64": ("env=cartpole", "algo=ppo"),
    "CartPole PPO, 512×512": ("env=cartpole", "algo=ppo", "agent.hidden_sizes=[512,512]"),
    "CartPole TRPO, 64×64": ("env=cartpole", "algo=trpo"),
}
COMMON = ("progress=false", "eval_episodes=0", "eval_every=0", "checkpoint_every=0", "algo.num_steps=128")


def train(overrides: tuple[str, ...], processes: int, threads: int, steps: int, run_dir: Path) -> dict:
    """One run; rank 0's training clock and the whole command's wall seconds."""
    num_envs = 8 // processes
    args = [*overrides, *COMMON, f"env.num_envs={num_envs}", f"total_timesteps={steps}", f"torch_threads={threads}",
            f"hydra.run.dir={run_dir}"]
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes),
                "--master_port", str(29_500 + os.getpid() % 1000)] if processes > 1 else [sys.executable]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(ROOT)}
    started = time.perf_counter()
    done = subprocess.run([*launcher, "-m", "ppo_core.train", *args], cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{done.stderr[-3000:]}")
    summary = json.loads((run_dir / "summary.json").read_text())
    return {"training_seconds": summary["wall_seconds"], "wall_seconds": wall, "env_steps": summary["env_steps"]}


def collective_latency() -> dict:
    """Run under torchrun: seconds per gloo all-reduce of a scalar pair and of a 64×64 and a 512×512 PPO
    policy's gradients, the collectives of every update."""
    import torch.distributed as dist

    dist.init_process_group("gloo")
    figures = {}
    for name, size in (("pair", 2), ("grads 64×64", 9_027), ("grads 512×512", 270_851)):
        x = torch.zeros(size)
        for _ in range(20):
            dist.all_reduce(x)
        repeats = 2000 if size < 10_000 else 200
        started = time.perf_counter()
        for _ in range(repeats):
            dist.all_reduce(x)
        figures[name] = (time.perf_counter() - started) / repeats
    if dist.get_rank() == 0:
        print(json.dumps(figures))
    dist.destroy_process_group()


def measure_latency() -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                           str(28_500 + os.getpid() % 1000), str(Path(__file__).resolve()), "--latency"],
                          cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"latency probe failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    if sys.argv[1:] == ["--latency"]:
        collective_latency()
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=102_400, help="env steps of each run, all processes together")
    parser.add_argument("--out", type=Path, default=ROOT / "artifacts" / "data_parallel_scaling")
    parser.add_argument("--no-record", action="store_true", help="print only; leave benchmarks/RESULTS.md alone")
    args = parser.parse_args()
    started, load_at_start = time.time(), load_average()
    layouts = [("1 process, 1 thread", 1, 1), ("1 process, 2 threads", 1, 2), ("2 processes, 1 thread each", 2, 1)]
    rows = []
    for case, overrides in CASES.items():
        results = {}
        for name, processes, threads in layouts:
            run_dir = args.out / f"{case.split(',')[0].replace(' ', '_')}_{len(rows)}_{processes}x{threads}"
            results[name] = train(overrides, processes, threads, args.steps, run_dir)
            print(f"{case:24s} {name:28s} training {results[name]['training_seconds']:6.1f} s, "
                  f"wall {results[name]['wall_seconds']:6.1f} s", flush=True)
        rows.append((case, results))
    latency = measure_latency()
    lines = [f"## Data-parallel scaling on this machine: 1 vs 2 gloo processes ({datetime.date.today().isoformat()})",
             "", f"Command: `python benchmarks/data_parallel_scaling.py --steps {args.steps}`",
             f"Machine: {cpu_name()}, {os.cpu_count()} cores, Python {platform.python_version()}, {versions()}; "
             f"load average {load_at_start} at start, {load_average()} at end; {time.time() - started:.0f} s in all.",
             f"Each run trains {args.steps} env steps with 8 env copies per update in all (8 in one process, 4 in "
             "each of two), 128 steps per rollout, no evaluation or checkpoints. Training: rank 0's training clock; "
             "wall: the whole command, start-up included. Speed-up: the 1-process, 1-thread time over this row's.", "",
             "| run | layout | training s | wall s | training speed-up | wall speed-up |", "|---|---|---|---|---|---|"]
    for case, results in rows:
        base = results[layouts[0][0]]
        for name, row in results.items():
            lines.append(f"| {case} | {name} | {row['training_seconds']:.1f} | {row['wall_seconds']:.1f} | "
                         f"{base['training_seconds'] / row['training_seconds']:.2f}× | "
                         f"{base['wall_seconds'] / row['wall_seconds']:.2f}× |")
    lines += ["", "Between 2 processes, one gloo all-reduce takes " + ", ".join(
        f"{seconds * 1e6:.0f} µs ({name})" for name, seconds in latency.items()) + " in this run. A PPO minibatch "
        "step makes about ten of them (each batch mean of the loss and its statistics sends its partial sum and "
        "count; the gradient is one more), so where one step's arithmetic takes less than a few milliseconds, as "
        "for these MLPs on a CPU, the collectives cost more than the second process saves; the split can only pay "
        "where a step's arithmetic dominates (language models, GPUs; not measured here)."]
    text = "\n".join(lines)
    print(text)
    if not args.no_record:
        record("Data-parallel scaling: 1 vs 2 gloo processes", text)


if __name__ == "__main__":
    main()
