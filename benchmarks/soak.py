"""Soak: memory stays flat over long runs. Trains CartPole PPO for 2M env steps and the text bandit for
500 iterations on the tiny language models, sampling the process's resident memory (RSS) once a
second, and reports RSS after warm-up (the first 5% of the run) and at the end.

    pip install -e .
    python benchmarks/soak.py                      # both; builds artifacts/tiny first if missing
    python benchmarks/soak.py --runs cartpole      # one of them
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from record import record  # noqa: E402

TINY = ROOT / "artifacts" / "tiny"


def rss_mib() -> float:
    """Resident set size of this process (Linux /proc)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class RSSSampler(threading.Thread):
    """(seconds since start, RSS MiB) once a second, beside the training thread."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.samples: list[tuple[float, float]] = []
        self.stop = threading.Event()
        self.started = time.perf_counter()

    def run(self) -> None:
        while not self.stop.is_set():
            self.samples.append((time.perf_counter() - self.started, rss_mib()))
            self.stop.wait(1.0)


def soak(overrides: list[str], steps_label: str) -> dict:
    from ppo_core.api import build_trainer, make_config

    config = make_config(*overrides, "progress=false", "eval_every=0", "eval_episodes=0", "device=cpu")
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = build_trainer(config, run_dir)
        sampler = RSSSampler()
        sampler.start()
        started = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - started
        sampler.stop.set()
        sampler.join()
    samples = sampler.samples + [(seconds, rss_mib())]
    warm = next(rss for t, rss in samples if t >= 0.05 * seconds)
    return {"run": steps_label, "seconds": seconds, "rss_start": samples[0][1], "rss_warm": warm,
            "rss_end": samples[-1][1], "rss_max": max(rss for _, rss in samples), "samples": len(samples)}


def run_cartpole() -> dict:
    return soak(["env=cartpole", "algo=ppo", "total_timesteps=2000000", "checkpoint_every=500000"],
                "CartPole-v1 PPO, 2,000,000 env steps (tuned preset)")


def run_text(iterations: int = 500) -> dict:
    if not (TINY / "rm" / "config.json").exists():
        subprocess.run([sys.executable, "-m", "ppo_core.align", "size=tiny", "stage=all_supervised"], cwd=ROOT,
                       check=True, capture_output=True)
    return soak(["env=text_bandit", "agent=lm", "algo=ppo", f"env.artifacts={TINY}", "env.num_envs=8",
                 f"total_timesteps={8 * iterations}", "checkpoint_every=1000"],
                f"text bandit PPO on the tiny models, {iterations} iterations of 8 prompts")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", nargs="+", choices=("cartpole", "text"), default=["cartpole", "text"])
    parser.add_argument("--text-iterations", type=int, default=500, help="iterations of the text run")
    parser.add_argument("--no-record", action="store_true", help="print only; leave RESULTS.md alone")
    args = parser.parse_args()
    os.chdir(ROOT)
    rows = []
    for name in args.runs:
        # each run in its own process, so the first one's memory does not show in the second's
        out = subprocess.run([sys.executable, __file__, "--worker", name, str(args.text_iterations)],
                             capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"## Soak: memory over long runs ({stamp})", "",
             f"Command: `python benchmarks/soak.py --runs {' '.join(args.runs)} --text-iterations {args.text_iterations}`  ",
             f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; one torch "
             "thread; each run in its own process; RSS sampled once a second.", "",
             "| run | seconds | RSS at start MiB | RSS after 5% MiB | RSS at end MiB | max MiB | end − after 5% |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['run']} | {r['seconds']:.0f} | {r['rss_start']:.0f} | {r['rss_warm']:.0f} | "
                     f"{r['rss_end']:.0f} | {r['rss_max']:.0f} | {r['rss_end'] - r['rss_warm']:+.1f} |")
    report = "\n".join(lines)
    print(report)
    if not args.no_record:
        record("Soak: memory over long runs", report)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--worker":
        import torch

        torch.set_num_threads(1)
        result = run_cartpole() if sys.argv[2] == "cartpole" else run_text(int(sys.argv[3]))
        print(json.dumps(result))
    else:
        main()
