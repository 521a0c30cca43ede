"""Benchmark the RL stage of the alignment pipeline: SFT, PPO and PPO-ptx side by side over seeds.

    python benchmarks/alignment.py [--seeds 0 1 2] [--ptx-coef 0.3] [hydra overrides, e.g. size=small]

Reads (or, when missing, runs) the supervised stages under the config's ``paths.root``; then, per
seed, runs ``stage=rl`` for PPO and for PPO-ptx through the same trainer that trains CartPole and
``stage=eval`` on the held-out test prompts. Prints, and records in benchmarks/RESULTS.md (replacing its section): gold win
rate against SFT and against the base model, proxy RM score, KL to SFT, pretraining loss (the
alignment tax) and gold score per model (mean ± standard deviation over seeds), wall time per stage,
and a plot of the gold and proxy rewards against the KL to SFT over training.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # spinning OpenMP workers stall on shared cores

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402
from transformers.utils import logging as hf_logging  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.language_pipeline import cpu_name  # noqa: E402
from ppo_core.align.config import AlignConfig, compose_align_config  # noqa: E402
from ppo_core.align.stages import STAGES, SUMMARY_FILE  # noqa: E402
from record import record  # noqa: E402

HERE = Path(__file__).resolve().parent
FIGURES = HERE / "figures"
SUPERVISED = {"pretrain": "base", "sft": "sft", "rm": "rm"}


def timed(stage: str, cfg: AlignConfig) -> tuple[dict, float]:
    start = time.time()
    summary = STAGES[stage](dataclasses.replace(cfg, stage=stage))
    return summary, time.time() - start


def supervised_seconds(cfg: AlignConfig) -> dict[str, float]:
    """Run the supervised stages whose output is missing; the wall seconds of each, measured now or
    read back from its summary."""
    seconds = {}
    for stage, out in SUPERVISED.items():
        summary_file = Path(cfg.paths.resolve(out)) / SUMMARY_FILE
        if summary_file.is_file():
            seconds[stage] = json.loads(summary_file.read_text())["summary"].get("seconds", float("nan"))
        else:
            _, seconds[stage] = timed(stage, cfg)
    return seconds


def mean_sd(values: list[float]) -> str:
    if not values:
        return "n/a"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def training_curve(run_dir: Path) -> list[tuple[float, float, float]]:
    """(KL to SFT of the policy's samples, eval gold, eval RM score) at every evaluation of a run: the
    training-time exact KL of the iteration that ended at the evaluation's step."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tb"))
    events.Reload()
    kl = {event.step: event.value for event in events.Scalars("objective/kl_exact")}
    gold = events.Scalars("eval/gold")
    scores = {event.step: event.value for event in events.Scalars("eval/scores")}
    return [(kl.get(event.step, float("nan")), event.value, scores[event.step]) for event in gold]


def plot_curves(curves: dict[str, list[list[tuple[float, float, float]]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for (name, runs), color in zip(curves.items(), ("tab:blue", "tab:orange", "tab:green")):
        for i, run in enumerate(runs):
            kl, gold, score = zip(*run)
            label = name if i == 0 else None
            axes[0].plot(kl, gold, "o-", color=color, alpha=0.7, label=label)
            axes[1].plot(kl, score, "o-", color=color, alpha=0.7, label=label)
    for ax, title in zip(axes, ("gold score (validation, greedy)", "proxy RM score (validation, greedy)")):
        ax.set_xlabel("KL(π‖π_SFT) per completion, exact, on training samples")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


VARIANTS = {
    "ppo": [],
    "ppo_ptx": ["objective.ptx_coef={ptx}"],
    "ppo_gold_reward": ["env.reward=gold"],  # oracle: the gold labeler as the reward
    # 4 completions of each of 8 prompts per step, each against the mean of the other 3 (RLOO's baseline)
    "ppo_rloo4": ["env.samples_per_prompt=4", "algo.advantage=leave_one_out", "algo.vf_coef=0.0"],
    "ppo_token_kl": ["objective.kl_placement=token_reward"],  # −β·KL_l at token l, the score at the last (TRL)
}


def run_variant(cfg: AlignConfig, variant: str, seed: int, ptx: float, out: Path) -> dict:
    run_dir = out / f"{variant}_s{seed}"
    overrides = [*cfg.rl.overrides, *(o.format(ptx=ptx) for o in VARIANTS[variant])]
    run_cfg = dataclasses.replace(cfg, seed=seed, rl=dataclasses.replace(cfg.rl, overrides=overrides),
                                  paths=dataclasses.replace(cfg.paths, rl=str(run_dir), eval=str(run_dir / "eval")))
    rl, rl_seconds = timed("rl", run_cfg)
    evaluation, eval_seconds = timed("eval", run_cfg)
    print(f"{variant} seed {seed}: win vs SFT {evaluation['win_vs_sft']:.3f}, RL {rl_seconds:.0f} s", flush=True)
    return {**evaluation, "rl_seconds": rl_seconds, "eval_seconds": eval_seconds,
            "curve": training_curve(run_dir)}


def report(results: dict[str, list[dict]], seconds: dict[str, float], command: str, cfg: AlignConfig,
           loads: tuple, figure: Path) -> str:
    first = next(iter(results.values()))
    seeds = len(first)
    lines = [
        f"## Alignment: SFT vs PPO vs PPO-ptx ({cfg.paths.root}), {datetime.datetime.now():%Y-%m-%d %H:%M}",
        "",
        f"Command: `{command}`  ",
        f"Machine: {cpu_name()}, {os.cpu_count()} cores, torch {torch.__version__}, {cfg.threads} torch threads; "
        f"load average {loads[0][0]:.1f} at start, {loads[1][0]:.1f} at the end (other jobs shared the CPU).",
        "",
        f"Held-out {cfg.eval.split} prompts ({first[0]['n']}), greedy completions judged by the gold labeler's "
        f"noiseless totals (ties count half); the sampled win rate compares one completion per prompt sampled "
        f"at the env temperature from each model; KL(π‖π_SFT) exact per token on sampled completions; "
        f"pretraining loss on the held-out corpus documents. Mean ± sd over {seeds} seeds.",
        "",
        "| model | win vs SFT | win vs SFT, sampled | win vs base | gold | RM score | KL to SFT | pretraining loss "
        "| RL wall s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    best = first[0].get("best_win_vs_sft")
    sft = [r for runs in results.values() for r in runs]
    lines.append(f"| SFT | 0.500 | 0.500 | {mean_sd([r['sft_win_vs_base'] for r in sft])} | "
                 f"{mean_sd([r['gold_sft'] for r in sft])} | {mean_sd([r['rm_score_sft'] for r in sft])} | 0 | "
                 f"{mean_sd([r['pretraining_loss_sft'] for r in sft])} | |")
    for variant, runs in results.items():
        lines.append(f"| {variant} | {mean_sd([r['win_vs_sft'] for r in runs])} | "
                     f"{mean_sd([r['win_vs_sft_sampled'] for r in runs])} | "
                     f"{mean_sd([r['win_vs_base'] for r in runs])} | {mean_sd([r['gold_policy'] for r in runs])} | "
                     f"{mean_sd([r['rm_score'] for r in runs])} | {mean_sd([r['kl'] for r in runs])} | "
                     f"{mean_sd([r['pretraining_loss_policy'] for r in runs])} | "
                     f"{statistics.mean(r['rl_seconds'] for r in runs):.0f} |")
    base = sft[0]["pretraining_loss_base"]
    if best is not None:
        lines += ["", f"Best possible win rate against SFT: {best:.3f} greedy, "
                  f"{mean_sd([r['best_win_vs_sft_sampled'] for r in sft])} sampled: the gold labeler's ideal "
                  "answers (the gold maximum) against SFT's answers; where SFT already scores the maximum, "
                  "any policy can only tie."]
    lines += ["", f"Base model: pretraining loss {base:.3f}, gold {sft[0]['gold_base']:.3f}. Supervised stages "
              "(wall s, from their summaries): " + ", ".join(f"{k} {v:.0f}" for k, v in seconds.items()) + ".", ""]
    if "ppo" in results and "ppo_ptx" in results:
        tax = [r["pretraining_loss_policy"] - r["pretraining_loss_sft"] for r in results["ppo"]]
        tax_ptx = [r["pretraining_loss_policy"] - r["pretraining_loss_sft"] for r in results["ppo_ptx"]]
        lines.append(f"Pretraining-loss change from SFT: PPO {mean_sd(tax)}, PPO-ptx {mean_sd(tax_ptx)}.")
        lines.append("")
    lines.append(f"![gold and proxy reward against KL]({figure.relative_to(HERE)})")
    return "\n".join(lines)


def parse_benchmark_args(parser: argparse.ArgumentParser, argv: list[str]) -> tuple[argparse.Namespace, AlignConfig]:
    """A benchmark's own flags, and the pipeline's config from the rest (hydra overrides), with quiet
    loggers and the config's torch threads set."""
    args, overrides = parser.parse_known_args(argv)
    logging.basicConfig(level=logging.WARNING)
    hf_logging.disable_progress_bar()
    cfg = compose_align_config(overrides)
    torch.set_num_threads(cfg.threads)
    return args, cfg


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--variants", nargs="+", default=["ppo", "ppo_ptx"], choices=sorted(VARIANTS))
    parser.add_argument("--ptx-coef", type=float, default=0.3,
                        help="γ of PPO-ptx (0.3 lost 1.7 points of win rate on the small world, 1.0 lost 5.1)")
    parser.add_argument("--out", default="artifacts/bench_alignment", help="where the RL runs are written")
    parser.add_argument("--no-record", action="store_true", help="print only; leave RESULTS.md alone")
    args, cfg = parse_benchmark_args(parser, argv)
    loads = [os.getloadavg()]
    seconds = supervised_seconds(cfg)
    out = Path(args.out)
    results = {variant: [run_variant(cfg, variant, seed, args.ptx_coef, out) for seed in args.seeds]
               for variant in args.variants}
    loads.append(os.getloadavg())
    FIGURES.mkdir(exist_ok=True)
    figure = FIGURES / f"alignment_reward_vs_kl_{datetime.datetime.now():%Y%m%d_%H%M}.png"  # one per recorded run
    plot_curves({variant: [r["curve"] for r in runs] for variant, runs in results.items()}, figure)
    command = "python benchmarks/alignment.py " + " ".join(argv)
    text = report(results, seconds, command.strip(), cfg, tuple(loads), figure)
    print(text)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    if not args.no_record:
        record("Alignment: SFT vs PPO vs PPO-ptx", text)


if __name__ == "__main__":
    main(sys.argv[1:])
