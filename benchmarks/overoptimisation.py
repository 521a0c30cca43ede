"""Reward-model over-optimisation (Gao et al. 2023): gold and proxy reward against √KL(π‖π_SFT).

    python benchmarks/overoptimisation.py [--seeds 0] [--betas 0 0.05] [--steps 8192] [--best-of 32] [hydra overrides]

Reads (or, when missing, runs) the supervised stages under the config's ``paths.root``; then

- PPO (``stage=rl``) for each β of ``--betas`` and each seed, for ``--steps`` completions, scoring every
  training completion with the gold labeler too (``env.gold=true``): per iteration, the mean proxy
  score (the reward model, normalised as RL sees it), the mean gold total and the exact KL(π‖π_SFT) of
  the policy's own samples, smoothed over ``--window`` iterations;
- best-of-n from SFT's samples on the validation prompts, picked by the reward model, for n = 1, 2, 4,
  ... ``--best-of``, at KL_bon = log n − (n − 1)/n.

Gao et al.'s picture: as the policy moves away from π_SFT the proxy keeps rising while the gold score
peaks and falls (the reward model is exploited). Prints a table, writes the plot and records both in
benchmarks/RESULTS.md.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # spinning OpenMP workers stall on shared cores

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.alignment import parse_benchmark_args, supervised_seconds, timed  # noqa: E402
from benchmarks.language_pipeline import cpu_name  # noqa: E402
from ppo_core.align import evaluation  # noqa: E402
from ppo_core.align.config import AlignConfig  # noqa: E402
from ppo_core.align.stages import evaluation_env, evaluation_policy, rl_train_config  # noqa: E402
from ppo_core.runtime import resolve_device  # noqa: E402
from record import record  # noqa: E402

HERE = Path(__file__).resolve().parent
FIGURES = HERE / "figures"

Point = tuple[float, float, float]  # (KL to SFT, gold, proxy)


def training_points(run_dir: Path, window: int) -> list[Point]:
    """(KL, gold, proxy) of the policy's training samples, averaged over each ``window`` iterations."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tb"))
    events.Reload()
    series = [[event.value for event in events.Scalars(f"objective/{name}")] for name in ("kl_exact", "gold", "scores")]
    count = min(len(s) for s in series)
    points = []
    for start in range(0, count - window + 1, window):
        points.append(tuple(sum(s[start:start + window]) / window for s in series))
    return points


def run_ppo(cfg: AlignConfig, beta: float, seed: int, steps: int, out: Path) -> dict:
    run_dir = out / f"beta_{beta:g}_s{seed}"
    overrides = [*cfg.rl.overrides, f"objective.kl_coef={beta}", "env.gold=true", f"total_timesteps={steps}"]
    run_cfg = dataclasses.replace(cfg, seed=seed, rl=dataclasses.replace(cfg.rl, overrides=overrides),
                                  paths=dataclasses.replace(cfg.paths, rl=str(run_dir)))
    _, seconds = timed("rl", run_cfg)
    print(f"β={beta:g} seed {seed}: {seconds:.0f} s", flush=True)
    return {"beta": beta, "seed": seed, "seconds": seconds, "run_dir": str(run_dir)}


def best_of_n_points(cfg: AlignConfig, size: int, prompts: int) -> list[dict]:
    """Best-of-n rows (evaluation.best_of_n_table) from ``size`` SFT samples of each validation prompt."""
    device = resolve_device(cfg.device)
    env, world, _ = evaluation_env(cfg, "validation", device)
    count = min(prompts, len(world.splits["validation"]))
    policy, _ = evaluation_policy(cfg.paths.resolve("sft"), env, device)
    scores, gold = evaluation.sample_pool(policy, env, count, size + 1, seed=cfg.seed)
    return evaluation.best_of_n_table(scores[1:], gold[1:], gold[0], cfg.seed)  # against SFT's own sample 0


def gold_at_kl(points: list[Point], kl: float) -> float:
    """A run's gold score at KL ``kl``, interpolated linearly between its points (NaN outside them)."""
    for (kl0, gold0, _), (kl1, gold1, _) in zip(points, points[1:]):
        if min(kl0, kl1) <= kl <= max(kl0, kl1) and kl1 != kl0:
            return gold0 + (gold1 - gold0) * (kl - kl0) / (kl1 - kl0)
    return math.nan


def plot(runs: list[dict], best_of_n: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharex=True)
    colors = {}
    for run in runs:
        color = colors.setdefault(run["beta"], f"C{len(colors)}")
        kl, gold, proxy = zip(*run["points"])
        label = f"PPO β={run['beta']:g}" if run["seed"] == min(r["seed"] for r in runs) else None
        axes[0].plot([math.sqrt(max(k, 0.0)) for k in kl], gold, "-", color=color, alpha=0.8, label=label)
        axes[1].plot([math.sqrt(max(k, 0.0)) for k in kl], proxy, "-", color=color, alpha=0.8, label=label)
    root_kl = [math.sqrt(row["kl_bon"]) for row in best_of_n]
    axes[0].plot(root_kl, [row["gold"] for row in best_of_n], "o--", color="k", label="best-of-n by RM")
    axes[0].plot(root_kl, [row["gold_oracle"] for row in best_of_n], "s:", color="0.5", label="best-of-n by gold")
    axes[1].plot(root_kl, [row["rm_score"] for row in best_of_n], "o--", color="k", label="best-of-n by RM")
    for ax, title in zip(axes, ("gold score", "proxy score (reward model, as RL sees it)")):
        ax.set_xlabel("√KL(π‖π_SFT), nats^½ per completion")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def report(runs: list[dict], best_of_n: list[dict], command: str, cfg: AlignConfig, loads: tuple, figure: Path,
           prompts: int) -> str:
    lines = [
        f"## Over-optimisation: gold and proxy reward against KL ({cfg.paths.root}), "
        f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
        "",
        f"Command: `{command}`  ",
        f"Machine: {cpu_name()}, {os.cpu_count()} cores, torch {torch.__version__}, {cfg.threads} torch threads; "
        f"load average {loads[0][0]:.1f} at start, {loads[1][0]:.1f} at the end.",
        "",
        "PPO runs: the policy's own training samples, per point the mean over the iterations it covers; "
        f"best-of-n: {prompts} validation prompts, the candidates sampled from SFT at the env temperature, "
        "KL_bon = log n − (n − 1)/n, win rate against another SFT sample of the same prompt.",
        "",
        "| run | KL at the end | gold at the end | proxy at the end | peak gold (at KL) | gold at the end − peak "
        "| RL wall s |",
        "|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        points = run["points"]
        peak = max(points, key=lambda p: p[1])
        lines.append(f"| PPO β={run['beta']:g}, seed {run['seed']} | {points[-1][0]:.2f} | {points[-1][1]:.3f} | "
                     f"{points[-1][2]:.3f} | {peak[1]:.3f} ({peak[0]:.2f}) | {points[-1][1] - peak[1]:+.3f} | "
                     f"{run['seconds']:.0f} |")
    lines += ["", "| best-of-n | KL_bon | gold (by RM) | proxy (by RM) | win vs SFT sample [95% CI] | gold (by gold) "
              "| PPO's gold at this KL, by β |", "|---|---|---|---|---|---|---|"]
    for row in best_of_n:
        at_kl = ", ".join(f"{run['beta']:g}: {gold_at_kl(run['points'], row['kl_bon']):.3f}" for run in runs)
        lo, hi = row["win_vs_sft_sampled_ci"]
        lines.append(f"| {row['n']} | {row['kl_bon']:.2f} | {row['gold']:.3f} | {row['rm_score']:.3f} | "
                     f"{row['win_vs_sft_sampled']:.3f} [{lo:.3f}, {hi:.3f}] | {row['gold_oracle']:.3f} | {at_kl} |")
    lines += ["", f"![gold and proxy reward against √KL]({figure.relative_to(HERE)})"]
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--betas", type=float, nargs="+", default=None,
                        help="KL coefficients of the PPO runs (default: 0 and the RL stage's objective.kl_coef)")
    parser.add_argument("--steps", type=int, default=8192, help="completions per PPO run")
    parser.add_argument("--window", type=int, default=4, help="iterations averaged into one point")
    parser.add_argument("--best-of", type=int, default=32, help="largest n of the best-of-n baseline")
    parser.add_argument("--prompts", type=int, default=256, help="validation prompts of the best-of-n baseline")
    parser.add_argument("--out", default="artifacts/bench_overoptimisation", help="where the runs are written")
    parser.add_argument("--no-record", action="store_true", help="print only; leave RESULTS.md alone")
    args, cfg = parse_benchmark_args(parser, argv)
    loads = [os.getloadavg()]
    supervised_seconds(cfg)
    if args.betas is None:  # β = 0 and the β the RL stage trains with
        args.betas = [0.0, rl_train_config(cfg).objective.kl_coef]
    out = Path(args.out)
    started = time.time()
    best_of_n = best_of_n_points(cfg, args.best_of, args.prompts)
    print(f"best-of-{args.best_of}: {time.time() - started:.0f} s", flush=True)
    runs = [run_ppo(cfg, beta, seed, args.steps, out) for beta in args.betas for seed in args.seeds]
    for run in runs:
        run["points"] = training_points(Path(run["run_dir"]), args.window)
    loads.append(os.getloadavg())
    FIGURES.mkdir(exist_ok=True)
    figure = FIGURES / f"overoptimisation_{datetime.datetime.now():%Y%m%d_%H%M}.png"
    plot(runs, best_of_n, figure)
    command = "python benchmarks/overoptimisation.py " + " ".join(argv)
    text = report(runs, best_of_n, command.strip(), cfg, tuple(loads), figure, args.prompts)
    print(text)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps({"runs": runs, "best_of_n": best_of_n}, indent=2))
    if not args.no_record:
        record("Over-optimisation: gold and proxy reward against KL", text)


if __name__ == "__main__":
    main(sys.argv[1:])
