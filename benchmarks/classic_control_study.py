"""Classic control study: REINFORCE, PPO and TRPO on five tasks, against SB3 PPO and sb3-contrib TRPO.

Runs, for every algorithm × task, N seeds of our tuned preset (conf/tuned/<algo>_<env>.yaml) and of
its peer at rl-baselines3-zoo settings (with gSDE where the zoo uses it), from one joblib queue. Our
seeds of a pair whose preset can be batched train as one seed batch, one process (``seeds=[...]``),
and the batches run first, the largest budget first; every other run has its own process, and our runs
and the peer's alternate seed by seed: both sides of a wall-time ratio run at about the same time, so a change of machine load during a study lands on both alike. Then
``python -m ppo_core.compare`` reads them all. Every run evaluates deterministically at the preset's
``eval_every`` (evaluation time is excluded from the training clock) and, ours and peers alike, stops
once ``--stop-after-evals`` evaluations in a row reach the task's standard threshold
(``stop_at_return``; 0 trains every run for its whole budget). ``--timesteps-scale`` shrinks budgets
and evaluation intervals alike, for a quick check of the pipeline.

    pip install -e ".[bench]"
    python benchmarks/classic_control_study.py                       # 3 algos × 5 tasks × 10 seeds + peers
    python benchmarks/classic_control_study.py --seeds 10 --peer-seeds 5 --n-jobs 1   # fewer peer seeds
    python benchmarks/classic_control_study.py --seeds 1 --timesteps-scale 0.02 --no-record   # smoke check
    python benchmarks/classic_control_study.py --no-batch            # every seed of ours in its own process

Prints the comparison table and appends command, machine, date, table and figures to
benchmarks/RESULTS.md (``--results`` to write elsewhere, ``--no-record`` to skip).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

ALGOS = ("ppo", "trpo", "reinforce")
ENVS = {"cartpole": "CartPole-v1", "acrobot": "Acrobot-v1", "mountaincar": "MountainCar-v0",
        "mountaincar_continuous": "MountainCarContinuous-v0", "pendulum": "Pendulum-v1"}
WORKER_ENV = {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE",
              "PATH": os.environ.get("PATH", "/usr/bin:/bin")}

# rl-baselines3-zoo hyperparams/ppo.yml and hyperparams/trpo.yml; keys left out take the library defaults.
ZOO = {
    "sb3_ppo": {
        "CartPole-v1": dict(n_envs=8, n_timesteps=1e5, n_steps=32, batch_size=256, gae_lambda=0.8, gamma=0.98,
                            n_epochs=20, ent_coef=0.0, learning_rate="lin_0.001", clip_range="lin_0.2"),
        "Acrobot-v1": dict(normalize=True, n_envs=16, n_timesteps=1e6, n_steps=256, gae_lambda=0.94, gamma=0.99,
                           n_epochs=4, ent_coef=0.0),
        "MountainCar-v0": dict(normalize=True, n_envs=16, n_timesteps=1e6, n_steps=16, gae_lambda=0.98, gamma=0.99,
                               n_epochs=4, ent_coef=0.0),
        "MountainCarContinuous-v0": dict(normalize=True, n_envs=1, n_timesteps=20000, batch_size=256, n_steps=8,
                                         gamma=0.9999, learning_rate=7.77e-05, ent_coef=0.00429, clip_range=0.1,
                                         n_epochs=10, gae_lambda=0.9, max_grad_norm=5, vf_coef=0.19, use_sde=True,
                                         policy_kwargs=dict(log_std_init=-3.29, ortho_init=False)),
        "Pendulum-v1": dict(n_envs=4, n_timesteps=1e5, n_steps=1024, gae_lambda=0.95, gamma=0.9, n_epochs=10,
                            ent_coef=0.0, learning_rate=1e-3, clip_range=0.2, use_sde=True, sde_sample_freq=4),
    },
    "sb3_trpo": {
        "CartPole-v1": dict(n_envs=2, n_timesteps=1e5, n_steps=512, batch_size=512, cg_damping=1e-3, gae_lambda=0.98,
                            gamma=0.99, learning_rate=1e-3, n_critic_updates=20),
        "Acrobot-v1": dict(normalize=True, n_envs=2, n_timesteps=1e5, n_steps=1024),
        "MountainCar-v0": dict(normalize=True, n_envs=2, n_timesteps=1e5, n_steps=1024, n_critic_updates=20),
        "MountainCarContinuous-v0": dict(normalize=True, n_envs=2, n_timesteps=50000, use_sde=True,
                                         sde_sample_freq=4),
        "Pendulum-v1": dict(n_envs=2, n_timesteps=1e5, n_steps=1024, gamma=0.9, n_critic_updates=15, use_sde=True,
                            sde_sample_freq=4),
    },
}
PEER_OF = {"sb3_ppo": "ppo", "sb3_trpo": "trpo"}  # whose preset sets the peer's evaluation interval


# --------------------------------------------------------------------------------------- budgets
def preset_gsde(algo: str, env: str) -> bool:
    """Whether our tuned preset explores with gSDE."""
    from ppo_core.api import make_config

    agent = make_config(f"algo={algo}", f"env={env}").agent
    return bool(getattr(agent, "gsde", False))


def preset_budget(algo: str, env: str) -> tuple[int, int]:
    """(total_timesteps, eval_every) of the tuned preset, as the training app composes them."""
    from ppo_core.api import make_config

    config = make_config(f"algo={algo}", f"env={env}")
    return config.total_timesteps, config.eval_every


def scaled(value: float, scale: float) -> int:
    return max(1, round(value * scale))


# --------------------------------------------------------------------------------------- our runs
def stop_overrides(env_id: str, stop_after_evals: int) -> list[str]:
    if stop_after_evals <= 0:
        return []
    from ppo_core.compare import THRESHOLDS

    return [f"stop_at_return={THRESHOLDS[env_id]}", f"stop_after_evals={stop_after_evals}"]


def run_process(command: list[str], what: str) -> None:
    """Run one process of the study; if it fails, raise with the end of its error output (the study stops)."""
    result = subprocess.run(command, cwd=ROOT, env=WORKER_ENV, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{what} failed with exit code {result.returncode}:\n{result.stderr[-4000:]}")


def run_ours(algo: str, env: str, seed: int | tuple[int, ...], budget: tuple[int, int], scale: float, cap: int,
             eval_episodes: int, stop_after_evals: int, out: Path) -> None:
    """One seed of one algorithm × task, a single training-app run in ``out/<algo>_<env>/<seed>``; or, for
    a tuple of seeds, their seed batch (``seeds=[...]``) in ``out/<algo>_<env>/batch/seed_<s>``. ``budget``
    is the preset's (total_timesteps, eval_every)."""
    total, eval_every = budget
    total = min(total, cap)
    batch = isinstance(seed, tuple)
    which = f"seeds=[{','.join(map(str, seed))}]" if batch else f"seed={seed}"
    run_dir = out / f"{algo}_{env}" / ("batch" if batch else str(seed))
    command = [sys.executable, "-m", "ppo_core.train", f"algo={algo}", f"env={env}", which,
               f"total_timesteps={scaled(total, scale)}", f"eval_every={scaled(eval_every, scale)}",
               f"eval_episodes={eval_episodes}", "checkpoint_every=0", "torch_threads=1", "progress=false",
               *stop_overrides(ENVS[env], stop_after_evals), f"hydra.run.dir={run_dir}"]
    run_process(command, f"{algo} on {env}, {'seeds' if batch else 'seed'} {seed}")


# --------------------------------------------------------------------------------------- peers
def peer_worker(peer: str, env_id: str, seed: int, scale: float, cap: int, eval_every: int, eval_episodes: int,
                stop_after_evals: int, run_dir: Path) -> None:
    """Train one SB3 peer at zoo settings, evaluating every ``eval_every`` env steps and stopping as ours
    do (``stop_after_evals`` evaluations in a row at the task's threshold; 0: never); writes summary.json
    with the keys ppo_core.compare reads."""
    from ppo_core.compare import THRESHOLDS

    import numpy as np
    import torch
    from sb3_contrib import TRPO
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.vec_env import VecNormalize, sync_envs_normalization

    torch.set_num_threads(1)
    settings = dict(ZOO[peer][env_id])
    n_envs, normalize = settings.pop("n_envs"), settings.pop("normalize", False)
    budget = min(settings.pop("n_timesteps"), cap)
    for key in ("learning_rate", "clip_range"):  # the zoo's lin_<x> schedules: x · progress_remaining
        if isinstance(settings.get(key), str):
            start = float(settings[key].removeprefix("lin_"))
            settings[key] = lambda remaining, start=start: remaining * start
    gamma = settings.get("gamma", 0.99)
    env = make_vec_env(env_id, n_envs=n_envs, seed=seed)
    eval_env = make_vec_env(env_id, n_envs=1, seed=seed + 1_000_000)
    if normalize:
        env = VecNormalize(env, gamma=gamma)
        eval_env = VecNormalize(eval_env, training=False, norm_reward=False, gamma=gamma)

    class TimedEval(BaseCallback):
        """Evaluate every eval_every env steps and at the end; the clock stops while evaluating. It
        evaluates when a rollout starts, so the policy has been updated on every step counted, as ours
        is; SB3's StopTrainingOnRewardThreshold stops on one evaluation, this one after several in a row."""

        def __init__(self) -> None:
            super().__init__()
            self.history: list[dict] = []
            self.paused = 0.0
            self.next_eval = eval_every
            self.start = time.perf_counter()

        def _on_step(self) -> bool:
            return not self.solved()

        def solved(self) -> bool:
            recent = self.history[-stop_after_evals:]
            return (stop_after_evals > 0 and len(recent) == stop_after_evals
                    and all(e["mean_reward"] >= THRESHOLDS[env_id] for e in recent))

        def evaluate(self) -> None:
            paused_at = time.perf_counter()
            if normalize:
                sync_envs_normalization(self.model.get_env(), eval_env)
            returns, lengths = evaluate_policy(self.model, eval_env, n_eval_episodes=eval_episodes,
                                               deterministic=True, return_episode_rewards=True)
            self.history.append({"mean_reward": float(np.mean(returns)), "std_reward": float(np.std(returns)),
                                 "mean_length": float(np.mean(lengths)), "env_steps": int(self.num_timesteps),
                                 "wall_seconds": paused_at - self.start - self.paused})
            self.paused += time.perf_counter() - paused_at

        def _on_rollout_start(self) -> None:
            if self.num_timesteps >= self.next_eval:
                self.evaluate()
                self.next_eval = (self.num_timesteps // eval_every + 1) * eval_every

    algo_class = PPO if peer == "sb3_ppo" else TRPO
    model = algo_class("MlpPolicy", env, seed=seed, device="cpu", verbose=0, **settings)
    callback = TimedEval()
    model.learn(scaled(budget, scale), callback=callback)
    stopped_early = callback.solved()  # the stop comes one vector step into the next rollout, untrained on
    if not stopped_early and (not callback.history or callback.history[-1]["env_steps"] != model.num_timesteps):
        callback.evaluate()
    final = callback.history[-1]
    summary = {"eval_mean_return": final["mean_reward"], "eval_std_return": final["std_reward"],
               "env_steps": final["env_steps"], "wall_seconds": final["wall_seconds"], "stopped_early": stopped_early,
               "eval_history": callback.history,
               "config": {"algo": {"name": peer, **{k: v for k, v in ZOO[peer][env_id].items()}},
                          "env": {"id": env_id}, "seed": seed, "total_timesteps": scaled(budget, scale)}}
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str))


def run_peer(peer: str, env: str, seed: int, budget: tuple[int, int], scale: float, cap: int, eval_episodes: int,
             stop_after_evals: int, out: Path) -> None:
    """One seed of one peer × task; it evaluates at the interval of our preset's ``budget``."""
    _, eval_every = budget
    command = [sys.executable, str(Path(__file__).resolve()), "--peer-worker", peer, ENVS[env], str(seed),
               str(scale), str(cap), str(scaled(eval_every, scale)), str(eval_episodes), str(stop_after_evals),
               str(out / f"{peer}_{env}_{seed}")]
    run_process(command, f"{peer} on {env}, seed {seed}")


Job = tuple[str, str, int | tuple[int, ...]]
"""(who, task, seed): who is one of our algorithms or a peer; a tuple of seeds is one seed batch."""


def study_queue(algos: list[str], envs: list[str], skip: list[str], seeds: int, peer_seeds: int,
                with_peers: bool, batched: frozenset[str] = frozenset()) -> list[Job]:
    """Every run of the study, task by task: seed by seed, each of our runs followed by its peer's run of
    the same seed, so that both sides of a comparison run at about the same time; then the runs of our
    algorithms without a peer (REINFORCE). Skipping one of our pairs (``ALGO_ENV``) skips its peer too.
    Our pairs in ``batched`` (``ALGO_ENV``) train all their seeds as one seed batch, queued before the
    task's first seed."""
    peer_of = {algo: peer for peer, algo in PEER_OF.items()}
    jobs: list[Job] = []
    for env in envs:
        ours = [algo for algo in algos if f"{algo}_{env}" not in skip]
        batch = [algo for algo in ours if f"{algo}_{env}" in batched and seeds > 0]
        jobs.extend((algo, env, tuple(range(seeds))) for algo in batch)
        paired = [algo for algo in ours if with_peers and algo in peer_of]
        for seed in range(max(seeds, peer_seeds) if paired else 0):
            for algo in paired:
                if seed < seeds and algo not in batch:
                    jobs.append((algo, env, seed))
                if seed < peer_seeds:
                    jobs.append((peer_of[algo], env, seed))
        jobs.extend((algo, env, seed) for algo in ours if algo not in paired and algo not in batch
                    for seed in range(seeds))
    return jobs


def batches_first(jobs: list[Job], budgets: dict[tuple[str, str], tuple[int, int]], cap: int) -> list[Job]:
    """The seed batches ahead of every other job, the largest env-step budget (capped) first, ties in queue
    order. A batch runs as long as its slowest seed, so a long one queued last ends the study alone while
    the other workers idle; queued first, the shorter jobs fill in around it."""
    batches = [job for job in jobs if isinstance(job[2], tuple)]
    batches.sort(key=lambda job: -min(budgets[job[0], job[1]][0], cap))  # stable: ties keep queue order
    return batches + [job for job in jobs if not isinstance(job[2], tuple)]


def batchable_pairs(algos: list[str], envs: list[str]) -> frozenset[str]:
    """Our ALGO_ENV pairs whose presets train as seed batches (ppo_core/seeds.py: batch_blocker)."""
    from ppo_core.api import make_config
    from ppo_core.seeds import batch_blocker

    return frozenset(f"{a}_{e}" for a in algos for e in envs if not batch_blocker(make_config(f"algo={a}", f"env={e}")))


def run_queue(jobs: list[Job], scale: float, cap: int, eval_episodes: int, stop_after_evals: int, n_jobs: int,
              out: Path) -> None:
    """Run the jobs, ``n_jobs`` at a time, the seed batches first (``batches_first``) and the rest in queue
    order (ours in ``out/ours``, the peers' in ``out/peers``)."""
    from joblib import Parallel, delayed

    # composing configs is not thread-safe, so every preset's budget is read here, before the threads start
    budgets = {key: preset_budget(*key) for key in {(PEER_OF.get(who, who), env) for who, env, _ in jobs}}
    jobs = batches_first(jobs, budgets, cap)

    def run(who: str, env: str, seed: int) -> None:
        print(f"{who:9s} {env:22s} seed {seed}", flush=True)
        budget = budgets[PEER_OF.get(who, who), env]
        if who in PEER_OF:
            run_peer(who, env, seed, budget, scale, cap, eval_episodes, stop_after_evals, out / "peers")
        else:
            run_ours(who, env, seed, budget, scale, cap, eval_episodes, stop_after_evals, out / "ours")

    # each job is a subprocess, so threads are enough to keep n_jobs of them running; batch_size=1 hands
    # out the jobs one by one, in queue order
    Parallel(n_jobs=n_jobs, backend="threading", batch_size=1)(delayed(run)(*job) for job in jobs)


# --------------------------------------------------------------------------------------- report
def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def load_average() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def versions() -> str:
    import gymnasium
    import torch

    found = [f"torch {torch.__version__}", f"gymnasium {gymnasium.__version__}"]
    try:
        import sb3_contrib
        import stable_baselines3

        found += [f"stable-baselines3 {stable_baselines3.__version__}", f"sb3-contrib {sb3_contrib.__version__}"]
    except ImportError:
        pass
    return ", ".join(found)


def record(report: str, figures: Path, results: Path) -> None:
    """Make the report the classic-control section of ``results``, the figures copied beside it."""
    sys.path.insert(0, str(HERE))
    from record import record as record_section

    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    target = results.parent / "figures" / f"classic_control_{stamp}"
    target.mkdir(parents=True, exist_ok=True)
    links = []
    for png in sorted(figures.glob("*.png")):
        shutil.copy(png, target / png.name)
        links.append(f"![{png.stem}]({(target / png.name).relative_to(results.parent)})")
    record_section("Classic control: PPO, TRPO and REINFORCE vs SB3 peers", report + "\n\n" + "\n".join(links), results)


def targets_table(rows: list) -> str:
    """Ours against the peer of the same update rule: the project's steps (ours ≤ peer) and wall-time
    (peer / ours ≥ 2) targets, on the medians over the runs that reached the threshold."""
    by_key = {(r.task, r.algo): r for r in rows}
    lines = ["| task | algo | success ours / peer | median env steps ours / peer | steps target (ours ≤ peer) | "
             "median wall s ours / peer | wall ratio (peer / ours) | wall target (≥ 2×) |",
             "|---|---|---|---|---|---|---|---|"]
    for peer_name, algo in PEER_OF.items():
        for (task, name), ours in sorted(by_key.items()):
            peer = by_key.get((task, peer_name))
            if name != algo or peer is None:
                continue
            steps, peer_steps = ours.median_steps_to_threshold, peer.median_steps_to_threshold
            wall, peer_wall = ours.median_seconds_to_threshold, peer.median_seconds_to_threshold
            ratio = peer_wall / wall if wall and peer_wall else None
            # a peer that never reached the threshold loses both comparisons to ours if ours did
            steps_met = steps is not None and (peer_steps is None or steps <= peer_steps)
            wall_met = wall is not None and (peer_wall is None or (ratio is not None and ratio >= 2))
            lines.append(
                f"| {task} | {algo} | {ours.successes}/{ours.runs} / {peer.successes}/{peer.runs} | "
                f"{_count(steps)} / {_count(peer_steps)} | {'met' if steps_met else 'not met'} | "
                f"{_seconds(wall)} / {_seconds(peer_wall)} | {'–' if ratio is None else f'{ratio:.2f}×'} | "
                f"{'met' if wall_met else 'not met'} |")
    return "\n".join(lines) if len(lines) > 2 else ""


def _count(x: float | None) -> str:
    return "–" if x is None else f"{x:.0f}"


def _seconds(x: float | None) -> str:
    return "–" if x is None else f"{x:.1f}"


def gsde_pairs(args: argparse.Namespace) -> list[str]:
    """Our algorithm × task pairs in this study whose presets explore with gSDE."""
    return [f"{a} {e}" for a in args.algos for e in args.envs if f"{a}_{e}" not in args.skip and preset_gsde(a, e)]


def env_stepping(envs: list[str]) -> str:
    """How ``env.vectorization=auto`` steps our copies of each studied task (envs/make.py)."""
    import gymnasium as gym

    from envs.classic_vector import BATCHED_ENVS

    kinds: dict[str, list[str]] = {}
    for env in envs:
        spec = gym.spec(ENVS[env])
        if spec.vector_entry_point is not None:
            kind = f"Gymnasium's own {str(spec.vector_entry_point).rpartition(':')[2]}"
        elif spec.entry_point in BATCHED_ENVS:
            kind = "batched NumPy envs (envs/classic_vector.py, SyncVectorEnv's numbers to the bit)"
        else:
            kind = "Gymnasium's SyncVectorEnv"
        kinds.setdefault(kind, []).append(ENVS[env])
    return "; ".join(f"{', '.join(ids)}: {kind}" for kind, ids in kinds.items())


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--peer-worker":
        peer, env_id, seed, scale, cap, eval_every, eval_episodes, stop_after_evals, run_dir = sys.argv[2:11]
        peer_worker(peer, env_id, int(seed), float(scale), int(cap), int(eval_every), int(eval_episodes),
                    int(stop_after_evals), Path(run_dir))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=10, help="seeds 0 .. N-1 per algorithm and task")
    parser.add_argument("--peer-seeds", type=int, default=None, help="seeds per peer and task (default: --seeds)")
    parser.add_argument("--stop-after-evals", type=int, default=3,
                        help="stop a run after this many evaluations in a row at the task's threshold (0: never)")
    parser.add_argument("--timesteps-scale", type=float, default=1.0, help="multiplies budgets and eval intervals")
    parser.add_argument("--max-timesteps", type=int, default=10**9,
                        help="caps every run's budget, ours and the peers' alike, before --timesteps-scale")
    parser.add_argument("--eval-episodes", type=int, default=10, help="deterministic episodes per evaluation")
    parser.add_argument("--n-jobs", type=int, default=2, help="runs at once (each uses one torch thread)")
    parser.add_argument("--algos", nargs="+", default=list(ALGOS), choices=ALGOS)
    parser.add_argument("--envs", nargs="+", default=list(ENVS), choices=list(ENVS))
    parser.add_argument("--skip", nargs="+", default=[], metavar="ALGO_ENV",
                        help="our algorithm × task pairs to leave out, e.g. reinforce_mountaincar")
    parser.add_argument("--no-peers", action="store_true", help="skip SB3 PPO and sb3-contrib TRPO")
    parser.add_argument("--no-batch", action="store_true",
                        help="train each of our seeds in its own process (default: a seed batch per algorithm and "
                             "task wherever its preset can be batched)")
    parser.add_argument("--out", type=Path, default=None, help="default: artifacts/classic_control/<date-time>")
    parser.add_argument("--results", type=Path, default=HERE / "RESULTS.md")
    parser.add_argument("--no-record", action="store_true", help="print only; leave --results alone")
    args = parser.parse_args()
    out = args.out or ROOT / "artifacts" / "classic_control" / datetime.datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    out.mkdir(parents=True, exist_ok=True)
    started, load_at_start = time.time(), load_average()
    peer_seeds = args.seeds if args.peer_seeds is None else args.peer_seeds
    args.no_peers = args.no_peers or not set(PEER_OF.values()) & set(args.algos)  # REINFORCE has no peer
    batched = frozenset() if args.no_batch else batchable_pairs(args.algos, args.envs)
    jobs = study_queue(args.algos, args.envs, args.skip, args.seeds, peer_seeds, not args.no_peers, batched)
    print(f"{len(jobs)} runs, {args.n_jobs} at a time", flush=True)
    run_queue(jobs, args.timesteps_scale, args.max_timesteps, args.eval_episodes, args.stop_after_evals,
              args.n_jobs, out)
    from ppo_core.compare import compare, markdown_table

    directories = [out / "ours"] + ([] if args.no_peers else [out / "peers"])
    rows, aggregates = compare(directories, out / "compare")
    table = markdown_table(rows, aggregates)
    command = "python benchmarks/classic_control_study.py " + " ".join(sys.argv[1:])
    peers = "" if args.no_peers else " vs SB3 peers"
    gsde = gsde_pairs(args)
    exploration = (f"use gSDE on {', '.join(gsde)} (their presets) and a plain diagonal Gaussian elsewhere."
                   if gsde else "use a plain diagonal Gaussian.")
    report = "\n".join([
        f"## Classic control: {', '.join(a.upper() for a in args.algos)}"
        + ("" if len(args.envs) == len(ENVS) else f" on {', '.join(ENVS[e] for e in args.envs)}")
        + f"{peers or ' (ours only)'} ({datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC)", "",
        f"Command: `{command.strip()}`",
        f"Machine: {cpu_name()}, {os.cpu_count()} cores, Python {platform.python_version()}, {versions()}; "
        f"{args.n_jobs} runs at once from one queue"
        + ("" if args.no_peers else ", ours and the peers' alternating seed by seed")
        + f", one torch thread each; load average {load_at_start} at start, "
        f"{load_average()} at end; {time.time() - started:.0f} s in all.",
        "Budgets: tuned presets" + ("" if args.no_peers else " (ours) and rl-baselines3-zoo (peers)")
        + (f", each capped at {args.max_timesteps} env steps" if args.max_timesteps < 10**9 else "")
        + (f", our {', '.join(args.skip)} left out" if args.skip else "")
        + f", × {args.timesteps_scale}; {args.seeds} seeds"
        + ("" if args.no_peers else f" (ours), {peer_seeds} (peers)")
        + f"; {args.eval_episodes} deterministic evaluation episodes from new start states each time; "
        + (f"every run stops after {args.stop_after_evals} evaluations in a row at the threshold, so a success is "
           "a run that stopped there or ends at it. " if args.stop_after_evals > 0 else "no early stop. ")
        + ("" if args.no_peers else "The peers use gSDE where the zoo does (Pendulum, MountainCarContinuous); ")
        + ("Ours " if args.no_peers else "ours ") + exploration
        + (f" Our {', '.join(sorted(batched & {f'{a}_{e}' for a in args.algos for e in args.envs}))} trained "
           "their seeds as one seed batch each (`seeds=[...]`: one process, the batch's clock as every run's "
           "wall seconds); the rest one process per seed." if batched else " One process per seed.")
        + f" Our env copies step as: {env_stepping(args.envs)}"
        + ("" if args.no_peers else "; the peers' in SB3's DummyVecEnv") + ".", "",
        table,
    ])
    targets = targets_table(rows)
    if targets:
        report += ("\n\nAgainst the targets, ours against the peer of the same update rule (medians over the runs "
                   "that reached the threshold; wall seconds are training time, evaluations excluded):\n\n" + targets)
    print(report)
    print(f"\nruns, tables and plots in {out}")
    full = (sorted(args.algos) == sorted(ALGOS) and sorted(args.envs) == sorted(ENVS) and not args.skip
            and not args.no_peers and args.seeds >= 10)
    if not args.no_record and (full or args.results != HERE / "RESULTS.md"):
        record(report, out / "compare", args.results)
    elif not args.no_record:  # a subset would replace the whole study's table
        print("not recorded in RESULTS.md: a subset of the study (algos, envs, skips, seeds < 10 or no peers); "
              "pass --results elsewhere.md to keep it")


if __name__ == "__main__":
    main()
