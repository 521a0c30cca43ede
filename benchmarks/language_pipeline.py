"""Benchmark the supervised alignment pipeline (pretrain -> SFT -> reward model) on the language world.

    python benchmarks/language_pipeline.py [--skip-train] [hydra overrides, e.g. size=small rm.k=6]

Prints, and records in benchmarks/RESULTS.md (replacing its section): wall time per stage (with the load average, since the
CPU may be shared), gold scores of the base and SFT models on the held-out test prompts per task kind
(same prompt format for both; greedy decoding, and pure sampling at temperature 1 for the totals), and
the reward model's validation accuracy against the labeler's agreement ceiling.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # spinning OpenMP workers stall on shared cores

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402
from transformers.utils import logging as hf_logging  # noqa: E402

from envs.language_world import TASK_KINDS  # noqa: E402
from ppo_core.align.config import AlignConfig, compose_align_config  # noqa: E402
from ppo_core.align.gold import GoldReport, demonstration_report, gold_report  # noqa: E402
from ppo_core.align.models import load_causal_lm  # noqa: E402
from ppo_core.align.stages import STAGES, SUMMARY_FILE, rm_sample_tokens  # noqa: E402
from ppo_core.align.world import load_world  # noqa: E402
from record import record  # noqa: E402

STAGE_DIRS = {"pretrain": "base", "sft": "sft", "rm": "rm"}


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown CPU"


def run_stages(cfg: AlignConfig, skip: bool) -> tuple[dict[str, dict], dict[str, float], dict[str, tuple]]:
    """Run (or, with `skip`, read back) pretrain, sft and rm; returns summaries, seconds and load averages."""
    summaries, seconds, loads = {}, {}, {}
    for stage, out in STAGE_DIRS.items():
        if skip:
            with open(os.path.join(cfg.paths.resolve(out), SUMMARY_FILE)) as f:
                summaries[stage] = json.load(f)["summary"]
            continue
        before, start = os.getloadavg(), time.time()
        summaries[stage] = STAGES[stage](dataclasses.replace(cfg, stage=stage))
        seconds[stage], loads[stage] = time.time() - start, (before, os.getloadavg())
        print(f"{stage}: {seconds[stage]:.0f} s", flush=True)
    return summaries, seconds, loads


def evaluate(cfg: AlignConfig) -> dict[str, GoldReport]:
    """Gold reports of base and SFT (greedy and sampled at T=1) and of the demonstrations, on test prompts."""
    world = load_world(cfg.world)
    reports = {"demonstrations": demonstration_report(world, "test")}
    for name in ("base", "sft"):
        model, tokenizer = load_causal_lm(cfg.paths.resolve(name))
        for label, temperature in (("greedy", 0.0), ("sampled", 1.0)):
            torch.manual_seed(cfg.seed)
            reports[f"{name} {label}"] = gold_report(
                model, tokenizer, world, "test", temperature, rm_sample_tokens(cfg), cfg.rm.max_prompt_tokens
            )
    return reports


def markdown(cfg: AlignConfig, command: str, summaries, seconds, loads, reports) -> str:
    """The results section recorded in RESULTS.md."""
    now = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    lines = [
        f"## Language pipeline: pretrain -> SFT -> RM ({cfg.model.preset}), {now}",
        "",
        f"Command: `{command}`  ",
        f"Machine: {cpu_name()}, {os.cpu_count()} cores, torch {torch.__version__}, {cfg.threads} torch threads",
        "(CPU shared with other jobs: load average 1/5/15 min before and after each stage below).",
        "",
        "| stage | wall time (s) | load before | load after | result |",
        "|---|---|---|---|---|",
    ]
    pre, sft, rm = summaries["pretrain"], summaries["sft"], summaries["rm"]
    results = {
        "pretrain": f"{pre['parameters'] / 1e6:.2f}M params, vocab {pre['vocab_size']}, "
                    f"{pre['train_tokens'] / 1e6:.2f}M tokens, val loss {pre['val_loss']:.3f}",
        "sft": f"best val loss {sft['best_val_loss']:.3f} at step {sft['best_step']}/{sft['steps']}",
        "rm": f"K={cfg.rm.k}, {rm['steps']} steps, sampling {rm['sample_seconds']:.0f} s",
    }
    fmt = lambda load: "/".join(f"{x:.1f}" for x in load)  # noqa: E731
    for stage in STAGE_DIRS:
        if stage in seconds:
            before, after = loads[stage]
            lines.append(f"| {stage} | {seconds[stage]:.0f} | {fmt(before)} | {fmt(after)} | {results[stage]} |")
        else:
            lines.append(f"| {stage} | (not rerun) | | | {results[stage]} |")
    if seconds:
        lines.append(f"| **total** | **{sum(seconds.values()):.0f}** | | | |")
    kinds = [k for k in TASK_KINDS if k in reports["sft greedy"].counts] + ["all"]
    lines += [
        "",
        f"Gold score (0..1; helpful / honest / harmless, total = 0.4/0.4/0.2 weighted) on the "
        f"{reports['sft greedy'].counts['all']} held-out test prompts. Both models get the same "
        "`User: ...\\nAssistant:` prompt; greedy decoding, with pure sampling at T=1 in the last columns.",
        "",
        "| task kind | n | base total | SFT total | SFT helpful | SFT honest | SFT harmless | demos total "
        "| base total (T=1) | SFT total (T=1) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for kind in kinds:
        base, s = reports["base greedy"].means[kind], reports["sft greedy"].means[kind]
        lines.append(
            f"| {kind} | {reports['sft greedy'].counts[kind]} | {base['total']:.3f} | {s['total']:.3f} "
            f"| {s['helpful']:.3f} | {s['honest']:.3f} | {s['harmless']:.3f} "
            f"| {reports['demonstrations'].means[kind]['total']:.3f} "
            f"| {reports['base sampled'].means[kind]['total']:.3f} | {reports['sft sampled'].means[kind]['total']:.3f} |"
        )
    val = rm["val"]
    lines += [
        "",
        f"Reward model on validation rankings (K={cfg.rm.k}, labeler disagreement {cfg.world.disagreement}): "
        f"accuracy {val['distinct_accuracy']:.3f} on pairs with distinct gold scores against the labeler ceiling "
        f"{rm['agreement_ceiling']:.3f} = 1 - disagreement, what the gold score itself is expected to reach "
        f"(**{rm['accuracy_vs_ceiling']:.1%} of the ceiling**; two labelers agree on "
        f"{rm.get('labeler_agreement', float('nan')):.3f} of such pairs, the bar InstructGPT compares with; the gold scores "
        f"themselves reach {val['oracle_accuracy']:.3f} on these labels, so the model gets "
        f"{val['distinct_accuracy'] / val['oracle_accuracy']:.1%} of that); {val['accuracy']:.3f} on all pairs "
        f"(ceiling {rm['agreement_ceiling_all_pairs']:.3f} with {1 - val['distinct_fraction']:.0%} tied pairs); "
        f"{val['gold_accuracy']:.3f} against the noiseless gold order. Offset {rm['offset']:+.3f}, "
        f"reward std {rm['reward_std']:.3f} on SFT samples.",
        "",
    ]
    groups = [k for k in TASK_KINDS if f"distinct/{k}" in val]
    if groups:  # reward models trained before the per-kind report have none
        lines += [
            "By task kind, on the validation pairs of distinct gold score: the reward model against the labels and "
            "against the noiseless gold order, and the gold scores' own agreement with the labels (the ceiling).",
            "",
            "| task kind | pairs | RM vs labels | RM vs gold order | gold vs labels |",
            "|---|---|---|---|---|",
            *(f"| {k} | {val[f'distinct/{k}']:.0f} | {val[f'distinct_accuracy/{k}']:.3f} "
              f"| {val[f'gold_accuracy/{k}']:.3f} | {val[f'oracle_accuracy/{k}']:.3f} |" for k in groups),
            f"| all | {sum(val[f'distinct/{k}'] for k in groups):.0f} "
            f"| {val['distinct_accuracy']:.3f} | {val['gold_accuracy']:.3f} | {val['oracle_accuracy']:.3f} |",
            "",
        ]
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-train", action="store_true", help="evaluate existing artifacts only")
    parser.add_argument("--no-append", action="store_true", help="print only; leave RESULTS.md alone")
    args, overrides = parser.parse_known_args(argv)
    hf_logging.disable_progress_bar()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    cfg = compose_align_config(overrides)
    torch.set_num_threads(cfg.threads)
    summaries, seconds, loads = run_stages(cfg, args.skip_train)
    reports = evaluate(cfg)
    command = " ".join(["python benchmarks/language_pipeline.py", *argv])
    text = markdown(cfg, command, summaries, seconds, loads, reports)
    print(text)
    if not args.no_append:
        record("Language pipeline: pretrain, SFT, reward model", text)


if __name__ == "__main__":
    main(sys.argv[1:])
