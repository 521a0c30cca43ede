"""CartPole-v1: ppo-core against stable-baselines3 PPO, side by side in one run.

Every run is its own process with one torch thread, and runs go one at a time, alternating the two
libraries so that background load hits both alike. Two studies:

- speed: env steps per second of whole training (rollout + update, no evaluation) with the
  rl-baselines3-zoo CartPole hyperparameters, at 8 (the zoo's), 64 and 256 environments.
- solve: evaluation every ~2,048 env steps (10 deterministic episodes, excluded from the clock);
  env steps and training seconds until the first evaluation with mean >= 475 and until three in a
  row, and the final evaluation at the zoo's budget of 100,000 steps. Our tuned preset
  (conf/tuned/ppo_cartpole.yaml) against the zoo's settings for SB3.

    pip install -e ".[bench]"
    python benchmarks/cartpole_vs_sb3.py                   # both studies, seeds 0-4
    python benchmarks/cartpole_vs_sb3.py --study speed --seeds 0 1
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from record import record

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SOLVED = 475.0
EVAL_EVERY = 2048
ZOO_BUDGET = 100_000

# rl-baselines3-zoo hyperparams/ppo.yml, CartPole-v1 (SB3's MlpPolicy: separate 64-64 tanh nets).
ZOO = dict(n_steps=32, batch_size=256, gae_lambda=0.8, gamma=0.98, n_epochs=20, ent_coef=0.0,
           learning_rate=1e-3, clip_range=0.2)


def zoo_overrides(num_envs: int) -> list[str]:
    """The same hyperparameters in our config keys."""
    return [
        "env=cartpole", f"env.num_envs={num_envs}", f"algo.num_steps={ZOO['n_steps']}",
        f"algo.num_minibatches={num_envs * ZOO['n_steps'] // ZOO['batch_size']}",
        f"algo.update_epochs={ZOO['n_epochs']}", f"algo.gamma={ZOO['gamma']}", f"algo.gae_lambda={ZOO['gae_lambda']}",
        f"algo.learning_rate={ZOO['learning_rate']}", "algo.anneal_lr=true", f"algo.clip_eps={ZOO['clip_range']}",
        "algo.anneal_clip=true", f"algo.ent_coef={ZOO['ent_coef']}", "algo.vf_coef=0.5", "algo.max_grad_norm=0.5",
        "agent.hidden_sizes=[64,64]", "agent.activation=tanh",
    ]


# --------------------------------------------------------------------------------------- workers
def worker_ours(study: str, num_envs: int, seed: int, steps: int, run_dir: str) -> dict:
    from ppo_core.api import build_trainer, make_config

    overrides = zoo_overrides(num_envs) if study == "speed" else ["env=cartpole"]  # solve: tuned preset
    evaluating = study == "solve"
    config = make_config(*overrides, "progress=false", f"seed={seed}", f"total_timesteps={steps}", "checkpoint_every=0",
                         f"eval_every={EVAL_EVERY if evaluating else 0}", f"eval_episodes={10 if evaluating else 0}",
                         "torch_threads=1")
    trainer = build_trainer(config, Path(run_dir))
    summary = trainer.train()
    return {"env_steps": summary["env_steps"], "wall_seconds": summary["wall_seconds"], "evals": [
        {"env_steps": e["env_steps"], "wall_seconds": e["wall_seconds"], "mean": e["mean_reward"]}
        for e in summary["eval_history"]]}


def worker_sb3(study: str, num_envs: int, seed: int, steps: int, run_dir: str) -> dict:
    import numpy as np
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.evaluation import evaluate_policy

    torch.set_num_threads(1)
    linear = lambda start: (lambda remaining: remaining * start)  # noqa: E731  zoo's lin_ schedules

    class TimedEval(BaseCallback):
        """Evaluate every EVAL_EVERY env steps; the clock stops while evaluating."""

        def __init__(self) -> None:
            super().__init__()
            self.evals: list[dict] = []
            self.paused = 0.0
            self.next_eval = EVAL_EVERY
            self.start = time.perf_counter()
            self.eval_env = make_vec_env("CartPole-v1", n_envs=1, seed=seed + 1_000_000)

        def _on_step(self) -> bool:
            return True

        def _on_rollout_end(self) -> None:
            if self.num_timesteps >= self.next_eval:
                paused_at = time.perf_counter()
                returns, _ = evaluate_policy(self.model, self.eval_env, n_eval_episodes=10, deterministic=True,
                                             return_episode_rewards=True)
                self.evals.append({"env_steps": self.num_timesteps, "mean": float(np.mean(returns)),
                                   "wall_seconds": paused_at - self.start - self.paused})
                self.paused += time.perf_counter() - paused_at
                self.next_eval = (self.num_timesteps // EVAL_EVERY + 1) * EVAL_EVERY

    env = make_vec_env("CartPole-v1", n_envs=num_envs, seed=seed)
    model = PPO("MlpPolicy", env, n_steps=ZOO["n_steps"], batch_size=ZOO["batch_size"], gae_lambda=ZOO["gae_lambda"],
                gamma=ZOO["gamma"], n_epochs=ZOO["n_epochs"], ent_coef=ZOO["ent_coef"],
                learning_rate=linear(ZOO["learning_rate"]), clip_range=linear(ZOO["clip_range"]),
                seed=seed, device="cpu", verbose=0)
    callback = TimedEval() if study == "solve" else None
    started = time.perf_counter()
    model.learn(steps, callback=callback)
    wall = time.perf_counter() - started - (callback.paused if callback else 0.0)
    return {"env_steps": model.num_timesteps, "wall_seconds": wall, "evals": callback.evals if callback else []}


# --------------------------------------------------------------------------------------- driver
def run_worker(lib: str, study: str, num_envs: int, seed: int, steps: int, out: Path) -> dict:
    run_dir = out / "runs" / f"{lib}_{study}_{num_envs}_{seed}"
    run_dir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", lib, study, str(num_envs), str(seed), str(steps),
           str(run_dir)]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True,
                          env={"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    return json.loads(done.stdout.strip().splitlines()[-1])


def solve_metrics(evals: list[dict]) -> dict:
    """First evaluation >= SOLVED, and the end of the first run of three in a row."""
    first = robust = None
    streak = 0
    for e in evals:
        streak = streak + 1 if e["mean"] >= SOLVED else 0
        if streak >= 1 and first is None:
            first = e
        if streak >= 3 and robust is None:
            robust = e
    return {"first": first, "robust": robust, "final": evals[-1]["mean"] if evals else None}


def median(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if len(known) == len(values) and known else None


def speed_study(seeds: list[int], out: Path) -> list[dict]:
    rows = []
    for num_envs in (8, 64, 256):
        steps = max(51_200, num_envs * ZOO["n_steps"] * 8)
        sps = {"ours": [], "sb3": []}
        for seed in seeds:
            for lib in ("ours", "sb3"):
                result = run_worker(lib, "speed", num_envs, seed, steps, out)
                sps[lib].append(result["env_steps"] / result["wall_seconds"])
        ours, sb3 = statistics.median(sps["ours"]), statistics.median(sps["sb3"])
        rows.append({"num_envs": num_envs, "steps": steps, "ours_sps": ours, "sb3_sps": sb3, "ratio": ours / sb3,
                     "ours_all": sps["ours"], "sb3_all": sps["sb3"]})
        print(f"speed  envs={num_envs:4d}  ours {ours:8.0f} SPS   sb3 {sb3:8.0f} SPS   ratio {ours / sb3:5.2f}x", flush=True)
    return rows


def solve_study(seeds: list[int], out: Path) -> dict:
    results = {"ours": [], "sb3": []}
    for seed in seeds:
        for lib, num_envs in (("ours", 0), ("sb3", 8)):
            result = run_worker(lib, "solve", num_envs, seed, ZOO_BUDGET, out)
            metrics = solve_metrics(result["evals"])
            results[lib].append({"seed": seed, "evals": result["evals"], **metrics})
            f, r = metrics["first"], metrics["robust"]
            print(f"solve  {lib:4s} seed={seed}  first@{f and f['env_steps']} ({f and round(f['wall_seconds'], 1)} s)"
                  f"  robust@{r and r['env_steps']} ({r and round(r['wall_seconds'], 1)} s)  final {metrics['final']:.1f}",
                  flush=True)
    return results


def write_plot(solve: dict, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for lib, color in (("ours", "tab:blue"), ("sb3", "tab:orange")):
        for i, run in enumerate(solve[lib]):
            label = ("ppo-core (tuned)" if lib == "ours" else "SB3 PPO (zoo)") if i == 0 else None
            xs = [e["env_steps"] for e in run["evals"]]
            axes[0].plot(xs, [e["mean"] for e in run["evals"]], color=color, alpha=0.7, label=label)
            axes[1].plot([e["wall_seconds"] for e in run["evals"]], [e["mean"] for e in run["evals"]], color=color,
                         alpha=0.7, label=label)
    for ax, xlabel in zip(axes, ("env steps", "training wall seconds (evaluation excluded)")):
        ax.axhline(SOLVED, color="grey", linestyle="--", linewidth=1)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("evaluation mean return (10 episodes)")
        ax.legend()
    fig.suptitle("CartPole-v1, seeds 0-4: ppo-core vs stable-baselines3")
    fig.tight_layout()
    path = HERE / "figures" / "cartpole_vs_sb3.png"
    path.parent.mkdir(exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


def solve_table(solve: dict) -> list[str]:
    lines = ["| | ppo-core (tuned preset) | SB3 PPO (zoo) | ratio |", "|---|---|---|---|"]

    def row(name: str, get, fmt: str) -> None:
        ours = median([get(r) for r in solve["ours"]])
        sb3 = median([get(r) for r in solve["sb3"]])
        ratio = f"{sb3 / ours:.2f}x" if ours and sb3 else "n/a"
        show = lambda v: "not all seeds" if v is None else format(v, fmt)  # noqa: E731
        lines.append(f"| {name} | {show(ours)} | {show(sb3)} | {ratio} |")

    solved = {lib: sum(r["robust"] is not None and r["final"] >= SOLVED for r in solve[lib]) for lib in solve}
    lines.append(f"| seeds solved (robust rule) and still solved at 100k | {solved['ours']}/{len(solve['ours'])} | "
                 f"{solved['sb3']}/{len(solve['sb3'])} | |")
    row("median env steps to first eval >= 475", lambda r: r["first"] and r["first"]["env_steps"], ".0f")
    row("median env steps to 3 evals in a row >= 475", lambda r: r["robust"] and r["robust"]["env_steps"], ".0f")
    row("median wall s to first eval >= 475", lambda r: r["first"] and r["first"]["wall_seconds"], ".1f")
    row("median wall s to 3 evals in a row >= 475", lambda r: r["robust"] and r["robust"]["wall_seconds"], ".1f")
    row("median final eval return at 100k steps", lambda r: r["final"], ".1f")
    return lines


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        lib, study, num_envs, seed, steps, run_dir = sys.argv[2:8]
        worker = worker_ours if lib == "ours" else worker_sb3
        print(json.dumps(worker(study, int(num_envs), int(seed), int(steps), run_dir)))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--study", choices=("speed", "solve", "both"), default="both")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--out", type=Path, default=ROOT / "artifacts" / "bench_cartpole")
    parser.add_argument("--no-record", action="store_true", help="print only; leave benchmarks/RESULTS.md alone")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    report = [f"## CartPole-v1: ppo-core vs stable-baselines3 PPO ({datetime.date.today().isoformat()})", "",
              f"Command: `python benchmarks/cartpole_vs_sb3.py --study {args.study} --seeds {' '.join(map(str, args.seeds))}`",
              f"Machine: {platform.processor() or platform.machine()}, {_cpu_count()} cores, Python {platform.python_version()},"
              f" one torch thread per run, runs one at a time; load average at start {_load()}.", ""]
    if args.study in ("speed", "both"):
        rows = speed_study(args.seeds, args.out)
        report += ["Speed: env steps/s of whole training, zoo hyperparameters (n_steps 32, batch 256, 20 epochs), "
                   "median over seeds.", "", "| envs | ppo-core SPS | SB3 SPS | ratio |", "|---|---|---|---|"]
        report += [f"| {r['num_envs']} | {r['ours_sps']:.0f} | {r['sb3_sps']:.0f} | {r['ratio']:.2f}x |" for r in rows]
        report.append("")
    if args.study in ("solve", "both"):
        solve = solve_study(args.seeds, args.out)
        (args.out / "solve.json").write_text(json.dumps(solve, indent=1))
        plot = write_plot(solve, args.out)
        report += ["Time to solve (eval every ~2,048 steps, 10 deterministic episodes, eval time excluded).", ""]
        report += solve_table(solve)
        report += ["", f"![CartPole learning curves]({plot.relative_to(HERE)})"]
    report.append(f"\nTotal benchmark wall time: {time.time() - started:.0f} s; load average at end {_load()}.\n")
    text = "\n".join(report)
    print(text)
    if args.no_record:
        return
    if args.study != "both":  # the section holds both studies: a part of them would drop the other
        print("not recorded in RESULTS.md: --study both replaces its section")
        return
    record("CartPole-v1 vs SB3 PPO: speed and time to solve", text)


def _cpu_count() -> int:
    import os

    return os.cpu_count() or 0


def _load() -> str:
    import os

    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


if __name__ == "__main__":
    main()
