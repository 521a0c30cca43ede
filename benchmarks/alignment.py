"""Benchmark the RL stage of the alignment pipeline: SFT, PPO and PPO-ptx side by side over seeds.

    python benchmarks/alignment.py [--seeds 0 1 2] [--ptx-coef 1.0] [hydra overrides, e.g. size=small]

Reads (or, when missing, runs) the supervised stages under the config's ``paths.root``; then, per
seed, runs ``stage=rl`` for PPO and for PPO-ptx through the same trainer that trains CartPole and
``stage=eval`` on the held-out test prompts. Prints, and appends to benchmarks/RESULTS.md: gold win
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

from benchmarks.language_pipeline import cpu_name  # noqa: E402
from ppo_core.align.config import AlignConfig, compose_align_config  # noqa: E402
from ppo_core.align.stages import STAGES, SUMMARY_FILE  # noqa: E402

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "RESULTS.md"
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
