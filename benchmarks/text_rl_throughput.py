"""Text bandit: throughput of whole RL iterations, ppo-core against TRL 1.12's online PPO trainer.

One iteration = sample completions for N prompts (KV cache), score them with the reward model, take
reference log-probs from the frozen π_SFT, values from the critic, GAE, then PPO epochs × minibatches.
Both libraries get the same SFT policy, the same reward model (TRL through a thin adapter that
exposes the trunk and a ``score`` head), a value model initialised from that reward model, the same
train-split prompts with the same token ids, N prompts per iteration, 28 new tokens at most, T = 1,
4 epochs × 4 minibatches, no gradient clipping, one torch thread setting, CPU.

Every run is its own process; runs go one at a time, alternating the variants within each repeat so
that background load hits all of them alike, and each ratio pairs a run with the TRL run of the same
repeat. Each run does a warm-up iteration, then times the steady-state interval between the starts
(ours) / ends (TRL) of consecutive iterations, which covers everything the library does per
iteration, logging included, in wall time and in the process's own CPU time (steadier when other
jobs share the cores). Per-phase wall times come from wrappers around the library's own functions
(a few microseconds each). Our env scores (reference, reward model) on packed sequences, without
padding. Our policy runs with its default ``agent.trim_padding=pack`` (every forward on packed
sequences; the first ratio 1 to ~1e-6); the ``*_minibatch`` variants set ``minibatch`` (each forward
on its own batch's columns) and ``*_full`` ``none`` (every policy forward at the full width).

Other rewards and policies, at the default pack: ``ours_head_hf_other_vocab`` adds to our reward model
a one-label transformers Llama classifier of the same size with a tokenizer of its own (completions
decoded and re-tokenised for it every step); ``ours_head_function`` adds a Python reward function
(``benchmarks/reward_functions.py``) and ``ours_head_function_only`` uses it alone; ``ours_head_lora``
trains a rank-8 LoRA policy whose reference is the same weights with the adapters off. TRL's PPO
trainer takes a reward model over the policy's token ids only, so every ratio is against the TRL run
with our reward model. Each run also reports its process's peak resident memory.

    pip install -e ".[bench]"
    python benchmarks/text_rl_throughput.py                       # N = 64, 3 repeats
    python benchmarks/text_rl_throughput.py --prompts 32 --repeats 5 --threads 2
    python benchmarks/text_rl_throughput.py --variants ours_head trl_batchpad ours_head_hf_other_vocab \
        ours_head_function ours_head_lora
"""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from record import record

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
MAX_NEW_TOKENS = 28  # env.max_new_tokens in conf/env/text_bandit.yaml
EPOCHS, MINIBATCHES = 4, 4
LEARNING_RATE, BETA, CLIP, VF_COEF, GAMMA, LAM = 1e-4, 0.02, 0.2, 0.1, 1.0, 0.95
WARMUP = 1  # iterations before the first timed interval

# variant -> (library, option): ours with a separate value trunk from the RM (TRL's layout) or with a
# value head on the policy trunk (our default); TRL padding each batch to its longest prompt (its
# collator) or fed our prompts pre-padded to the longest prompt of the whole set (what our env does)
VARIANTS = {
    "ours_separate": ("ours", "separate"),
    "ours_head": ("ours", "head"),
    "trl_batchpad": ("trl", "batch"),
    # agent.trim_padding=none | minibatch instead of the default pack
    "ours_head_full": ("ours", "head+none"),
    "ours_separate_minibatch": ("ours", "separate+minibatch"),
    "ours_head_minibatch": ("ours", "head+minibatch"),
    "trl_setpad": ("trl", "set"),
    # other rewards and policies (the default pack): a transformers classifier with a vocabulary of its own
    # (completions decoded and re-tokenised for it), a Python reward function, a LoRA policy (rank 8)
    "ours_head_hf_other_vocab": ("ours", "head+pack+hf_other_vocab"),
    "ours_head_function": ("ours", "head+pack+function"),
    "ours_head_lora": ("ours", "head+pack+lora"),
    "ours_head_function_only": ("ours", "head+pack+function_only"),
}
OTHER_VOCAB_RM = "bench_rm_other_vocab"
"""A one-label Llama classifier of our reward model's size with its own 3,000-token tokenizer, built
(random weights: only its cost matters here) under the artifacts root."""


class PhaseClock:
    """Seconds spent inside wrapped callables, per label; ``split()`` hands over and resets them."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    def wrap(self, label: str, fn):
        @functools.wraps(fn)
        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[label] += time.perf_counter() - started

        return timed

    def split(self) -> dict[str, float]:
        out = dict(self.seconds)
        self.seconds.clear()
        return out


def now() -> tuple[float, float]:
    """Wall clock and this process's CPU time: on a shared machine the second counts only our own work."""
    return time.perf_counter(), time.process_time()


def steady_state(marks: list[tuple[float, float]], phases: list[dict[str, float]], tokens: list[int], prompts: int,
                 iterations: int) -> dict:
    """``iterations`` intervals between consecutive iteration marks after the warm-up, with their phases
    (``phases[k]`` is split off at mark k) and generated tokens (``tokens[k]``: iteration k + 1)."""
    pairs = list(zip(marks[WARMUP:], marks[WARMUP + 1 :]))[:iterations]
    return {"seconds": [b[0] - a[0] for a, b in pairs], "cpu_seconds": [b[1] - a[1] for a, b in pairs],
            "phases": phases[WARMUP + 1 : WARMUP + 1 + len(pairs)], "tokens": tokens[WARMUP : WARMUP + len(pairs)],
            "prompts": prompts}


# --------------------------------------------------------------------------------------- workers
def worker_ours(option: str, prompts: int, iterations: int, threads: int, seed: int) -> dict:
    import torch

    from envs import text_bandit
    from ppo_core.api import build_trainer, make_config

    critic, trim, extra = (option.split("+") + ["", ""])[:3]
    from ppo_core.align.rl_config import TextEnvConfig

    artifacts_root = TextEnvConfig().artifacts
    extras = {"": [], "lora": ["agent.lora_r=8", "agent.lora_alpha=16"],
              "hf_other_vocab": [f"env.reward=[rm,{Path(artifacts_root) / OTHER_VOCAB_RM}]"],
              "function": ["env.reward=[rm,reward_functions:format_reward]"],
              "function_only": ["env.reward=reward_functions:format_reward"]}[extra]

    overrides = ["env=text_bandit", "agent=lm", "algo=ppo", f"env.num_envs={prompts}",
                 f"env.max_new_tokens={MAX_NEW_TOKENS}", "env.temperature=1.0", f"objective.kl_coef={BETA}",
                 "env.no_eos_penalty=1.0", f"algo.update_epochs={EPOCHS}", f"algo.num_minibatches={MINIBATCHES}",
                 "algo.num_steps=1", f"algo.learning_rate={LEARNING_RATE}", f"algo.clip_eps={CLIP}",
                 "algo.clip_value_loss=true", f"algo.vf_coef={VF_COEF}", "algo.ent_coef=0.0",
                 f"algo.gamma={GAMMA}", f"algo.gae_lambda={LAM}", "algo.max_grad_norm=0",
                 f"agent.critic={critic}", *(["agent.value_init_path=rm"] if critic == "separate" else []),
                 f"agent.trim_padding={trim or 'pack'}", *extras,
                 "eval_episodes=0", "eval_every=0", "checkpoint_every=0", "device=cpu", f"seed={seed}",
                 f"torch_threads={threads}", f"total_timesteps={prompts * (iterations + WARMUP + 1)}"]
    config = make_config(*overrides, "progress=false")
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = build_trainer(config, Path(run_dir))
        clock, marks, phases, tokens = PhaseClock(), [], [], []
        policy, env, algorithm = trainer.policy, trainer.env, trainer.algorithm
        reward = env.reward
        policy.sample = clock.wrap("generate", policy.sample)
        for name in ("sequence_distributions", "packed_sequence_distributions"):  # the env's π_SFT pass, either way
            setattr(text_bandit, name, clock.wrap("reference", getattr(text_bandit, name)))
        for name, (source, weight) in reward.rewards.sources.items():
            reward.rewards.sources[name] = (clock.wrap("reward_model", source), weight)
        env.step = clock.wrap("env_step", env.step)
        trainer.compute_batch = clock.wrap("gae", trainer.compute_batch)
        algorithm.update = clock.wrap("update", algorithm.update)
        algorithm.gradient_step = clock.wrap("update_backward_step", algorithm.gradient_step)
        rollout_evaluate = clock.wrap("rollout_policy_value", policy._evaluate)
        act = policy.act

        def timed_act(obs, deterministic=False):
            policy._evaluate = rollout_evaluate  # the scoring pass inside act
            try:
                step = act(obs, deterministic)
            finally:
                del policy._evaluate
            tokens.append(int(step.mask.sum()))
            return step

        policy.act = clock.wrap("rollout", timed_act)
        set_progress = algorithm.set_progress

        def mark(remaining: float) -> None:  # called at the start of every iteration
            marks.append(now())
            phases.append(clock.split())
            set_progress(remaining)

        algorithm.set_progress = mark
        trainer.train()
        threads_seen = torch.get_num_threads()
    result = steady_state(marks, phases, tokens, prompts, iterations)
    for phase in result["phases"]:  # nested clocks: keep exclusive parts
        phase["env_other"] = phase.pop("env_step") - phase.get("reference", 0) - phase.get("reward_model", 0)
        phase["rollout_policy_value"] = phase.get("rollout_policy_value", 0)
        phase["rollout"] -= phase["generate"] + phase["rollout_policy_value"]
        phase["update_forward_loss"] = phase.pop("update") - phase["update_backward_step"]
    return {**result, "threads": threads_seen, "prompt_width": int(env.prompts.input_ids.shape[1]),
            "peak_rss_mb": peak_rss_mb()}


def peak_rss_mb() -> float:
    """This process's peak resident memory (Linux reports KiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build_other_vocab_rm(root: Path) -> Path:
    """``OTHER_VOCAB_RM``: a Llama classifier (4 layers, width 160, like our GPT-2 RM) with a tokenizer
    trained on the SFT demonstrations at 3,000 tokens (ours has 2,048), saved as TRL saves one."""
    import torch
    from transformers import AutoModelForSequenceClassification, LlamaConfig

    from ppo_core.align.tokenizer import train_tokenizer

    path = root / OTHER_VOCAB_RM
    if (path / "config.json").is_file():
        return path
    rows = [json.loads(line) for line in (root / "sft" / "data" / "demonstrations_train.jsonl").read_text().splitlines()]
    tokenizer = train_tokenizer([r["prompt"] + r["completion"] for r in rows], 3000)
    torch.manual_seed(0)
    config = LlamaConfig(hidden_size=160, intermediate_size=640, num_hidden_layers=4, num_attention_heads=4,
                         num_key_value_heads=4, vocab_size=len(tokenizer), max_position_embeddings=256,
                         pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, num_labels=1)
    AutoModelForSequenceClassification.from_config(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


class ScoreModel:
    """Builds TRL's view of our RewardModel: ``getattr(model, model.base_model_prefix)`` is the trunk
    and ``model.score(hidden)`` (B, T, 1) the head plus offset (trl/experimental/utils.py,
    ``get_reward``; ppo_trainer.py, ``PolicyAndValueWrapper``)."""

    @staticmethod
    def build(reward_model, offset: float):
        from torch import nn

        class Scored(nn.Module):
            base_model_prefix = "trunk"

            def __init__(self) -> None:
                super().__init__()
                self.trunk, self.head, self.offset = reward_model.trunk, reward_model.head, float(offset)
                self.config = reward_model.trunk.config

            def score(self, hidden):
                return self.head(hidden) + self.offset

        return Scored()


def worker_trl(padding: str, prompts: int, iterations: int, threads: int, seed: int) -> dict:
    import torch
    from datasets import Dataset
    from transformers import TrainerCallback
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    import trl.experimental.ppo.ppo_trainer as ppo_module
    from trl.experimental.ppo import PPOConfig, PPOTrainer
    from ppo_core.align import artifacts
    from ppo_core.align.rl_build import make_text_env
    from ppo_core.api import make_config

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    config = make_config("env=text_bandit", "agent=lm", "algo=ppo", f"env.max_new_tokens={MAX_NEW_TOKENS}",
                         "device=cpu")
    env = make_text_env(config.env, config.objective, torch.device("cpu"), config.env.prompts, "env.prompts", 1, shuffle=True, gold=False,
                        training=True)
    ids, mask = env.prompts.input_ids, env.prompts.attention_mask  # our tokenization, left-padded to the set
    rows = ids.tolist() if padding == "set" else [row[m.bool()].tolist() for row, m in zip(ids, mask)]
    dataset = Dataset.from_dict({"input_ids": rows})
    sft = artifacts.sft_dir(config.env)
    policy, tokenizer = artifacts.load_lm(sft, torch.device("cpu"), "sft")
    reference, _ = artifacts.load_lm(sft, torch.device("cpu"), "sft")
    rm_path = artifacts.rm_dir(config.env)
    rm = artifacts.load_reward_model(rm_path, torch.device("cpu"), "rm")
    value = artifacts.load_reward_model(rm_path, torch.device("cpu"), "rm")  # InstructGPT §3.5: V from the RM
    clock, marks, phases, tokens, columns = PhaseClock(), [], [], [], []

    class Marks(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):  # after each iteration's update and log
            marks.append(now())
            phases.append(clock.split())

    with tempfile.TemporaryDirectory() as out_dir:
        args = PPOConfig(
            output_dir=out_dir, report_to="none", save_strategy="no", use_cpu=True, seed=seed,
            per_device_train_batch_size=prompts, gradient_accumulation_steps=1, num_mini_batches=MINIBATCHES,
            num_ppo_epochs=EPOCHS, local_rollout_forward_batch_size=prompts,
            total_episodes=prompts * (iterations + WARMUP + 1), response_length=MAX_NEW_TOKENS,
            stop_token="eos", temperature=1.0, missing_eos_penalty=1.0, kl_coef=BETA, kl_estimator="k1",
            cliprange=CLIP, cliprange_value=CLIP, vf_coef=VF_COEF, gamma=GAMMA, lam=LAM, whiten_rewards=False,
            learning_rate=LEARNING_RATE, weight_decay=0.0, num_sample_generations=0, disable_tqdm=True, logging_steps=1,
        )
        trainer = PPOTrainer(args=args, processing_class=tokenizer, model=policy, ref_model=reference,
                             reward_model=ScoreModel.build(rm, rm.offset), value_model=ScoreModel.build(value, 0.0),
                             train_dataset=dataset, callbacks=[Marks()])
        trainer.remove_callback(PrinterCallback)
        trainer.remove_callback(ProgressCallback)
        generation = ppo_module.batch_generation

        def timed_generation(model, queries, batch, pad_token_id, generation_config):
            query_responses, logits = generation(model, queries, batch, pad_token_id, generation_config)
            response = query_responses[:, queries.shape[1]:]
            eos = response == tokenizer.eos_token_id
            # tokens up to and including the first EOS, as our completion mask counts them
            lengths = torch.where(eos.any(-1), eos.int().argmax(-1) + 1, response.shape[1])
            tokens.append(int(lengths.sum()))
            columns.append(response.shape[1])  # generation stops once every row has its EOS
            return query_responses, logits

        ppo_module.batch_generation = clock.wrap("generate", timed_generation)
        forward, get_reward = ppo_module.forward, ppo_module.get_reward
        ppo_module.forward = lambda model, *a: clock.wrap(
            "reference" if model is reference else "update_forward_loss", forward)(model, *a)
        ppo_module.get_reward = lambda model, *a: clock.wrap(
            "reward_model" if model is trainer.reward_model else "rollout_policy_value", get_reward)(model, *a)
        trainer.accelerator.backward = clock.wrap("update_backward", trainer.accelerator.backward)
        trainer.optimizer.step = clock.wrap("update_step", trainer.optimizer.step)
        marks.append(now())  # iteration 1 starts (TRL's train() set-up is not timed)
        phases.append(clock.split())
        trainer.train()
        threads_seen = torch.get_num_threads()
        inner = trainer.optimizer.optimizer
        optimizer = (f"{type(inner).__name__} (fused={inner.defaults.get('fused')}, weight decay "
                     f"{sorted({group['weight_decay'] for group in inner.param_groups})})")
    result = steady_state(marks, phases, tokens, prompts, iterations)
    for phase in result["phases"]:
        phase["update_backward_step"] = phase.pop("update_backward", 0) + phase.pop("update_step", 0)
    return {**result, "threads": threads_seen, "optimizer": optimizer, "response_columns": columns,
            "peak_rss_mb": peak_rss_mb()}


# --------------------------------------------------------------------------------------- driver
def run_worker(variant: str, prompts: int, iterations: int, threads: int, seed: int) -> dict:
    lib, option = VARIANTS[variant]
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", lib, option, str(prompts), str(iterations),
           str(threads), str(seed)]
    env = {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(threads), "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
           "HOME": os.environ.get("HOME", "/root"), "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_VERBOSITY": "error", "ACCELERATE_DISABLE_RICH": "1"}
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"{variant} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


PHASES = ("generate", "rollout_policy_value", "reference", "reward_model", "env_other", "rollout", "gae",
          "update_forward_loss", "update_backward_step", "other")


def summarise(variant: str, runs: list[dict]) -> dict:
    """Per-iteration medians over all timed iterations of all repeats."""
    seconds = [s for run in runs for s in run["seconds"]]
    tokens = [t for run in runs for t in run["tokens"]]
    per_repeat = [run["prompts"] * len(run["seconds"]) / sum(run["seconds"]) for run in runs]
    per_repeat_cpu = [run["prompts"] * len(run["cpu_seconds"]) / sum(run["cpu_seconds"]) for run in runs]
    for run in runs:
        for ph, total in zip(run["phases"], run["seconds"]):
            ph["other"] = total - sum(ph.get(p, 0.0) for p in PHASES if p != "other")
    phases = {p: statistics.median([ph.get(p, 0.0) for run in runs for ph in run["phases"]]) for p in PHASES}
    iteration = statistics.median(seconds)
    prompts = runs[0]["prompts"]
    return {"variant": variant, "iteration_s": iteration, "prompts_per_s": prompts / iteration,
            "tokens_per_s": statistics.median(tokens) / iteration, "mean_completion_tokens": sum(tokens) / len(tokens) / prompts,
            "prompts_per_s_by_repeat": per_repeat, "prompts_per_cpu_s_by_repeat": per_repeat_cpu,
            "cpu_iteration_s": statistics.median(s for run in runs for s in run["cpu_seconds"]), "phases": phases, "threads": runs[0]["threads"],
            "iterations": len(seconds), "peak_rss_mb": statistics.median(run["peak_rss_mb"] for run in runs),
            **({"optimizer": runs[0]["optimizer"]} if "optimizer" in runs[0] else {})}


def tables(rows: dict[str, dict], reference: str) -> list[str]:
    """The ratio pairs each repeat with the reference run next to it (same load), then takes the median:
    a median of pooled iterations would mix repeats run under different loads."""
    def ratio(r: dict, key: str) -> str:
        ratios = [x / b for x, b in zip(r[key], rows[reference][key])]
        return f"**{statistics.median(ratios):.2f}x** ({min(ratios):.2f}-{max(ratios):.2f})"

    lines = [f"| variant | wall s / iteration | prompts/s | generated tokens/s | tokens / completion | prompts/s per "
             f"repeat | ratio vs {reference}: wall (range) | CPU s / iteration | ratio vs {reference}: CPU time (range) "
             "| peak RSS MiB |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in rows.items():
        lines.append(f"| {name} | {r['iteration_s']:.3f} | {r['prompts_per_s']:.1f} | {r['tokens_per_s']:.0f} | "
                     f"{r['mean_completion_tokens']:.1f} | {', '.join(f'{x:.1f}' for x in r['prompts_per_s_by_repeat'])} | "
                     f"{ratio(r, 'prompts_per_s_by_repeat')} | {r['cpu_iteration_s']:.3f} | "
                     f"{ratio(r, 'prompts_per_cpu_s_by_repeat')} | {r['peak_rss_mb']:.0f} |")
    lines += ["", "Median seconds per iteration in each phase (exclusive; `rollout` is what is left of the "
              "rollout, `env_other` of our env step):", "",
              "| phase | " + " | ".join(rows) + " |", "|---|" + "---|" * len(rows)]
    for phase in PHASES:
        lines.append(f"| {phase} | " + " | ".join(f"{r['phases'][phase]:.3f}" for r in rows.values()) + " |")
    lines.append("| **iteration** | " + " | ".join(f"**{r['iteration_s']:.3f}**" for r in rows.values()) + " |")
    return lines


def versions() -> str:
    from importlib.metadata import version

    return ", ".join(f"{name} {version(name)}" for name in ("torch", "transformers", "trl", "accelerate"))


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        lib, option, prompts, iterations, threads, seed = sys.argv[2:8]
        worker = worker_ours if lib == "ours" else worker_trl
        print(json.dumps(worker(option, int(prompts), int(iterations), int(threads), int(seed))))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=64, help="N, prompts per iteration")
    parser.add_argument("--iterations", type=int, default=4, help="timed iterations per run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads, both libraries")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-record", action="store_true", help="print only; leave benchmarks/RESULTS.md alone")
    args = parser.parse_args()
    started, load_start = time.time(), load()
    if any(VARIANTS[v][1].endswith("hf_other_vocab") for v in args.variants):
        from ppo_core.align.rl_config import TextEnvConfig

        build_other_vocab_rm(ROOT / TextEnvConfig().artifacts)
    runs: dict[str, list[dict]] = {v: [] for v in args.variants}
    loads = []
    for repeat in range(args.repeats):
        for variant in args.variants:  # alternating, one process at a time
            before = load()
            result = run_worker(variant, args.prompts, args.iterations, args.threads, args.seed + repeat)
            runs[variant].append(result)
            loads.append(before)
            rate = args.prompts * len(result["seconds"]) / sum(result["seconds"])
            print(f"repeat {repeat} {variant:21s} {rate:6.1f} prompts/s  wall {[round(s, 2) for s in result['seconds']]}"
                  f"  cpu {[round(s, 2) for s in result['cpu_seconds']]}  load {before}", flush=True)
    rows = {v: summarise(v, runs[v]) for v in args.variants}
    reference = next((v for v in args.variants if v.startswith("trl")), args.variants[0])
    command = "python benchmarks/text_rl_throughput.py " + " ".join(sys.argv[1:])
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    optimizers = {r["optimizer"] for r in rows.values() if "optimizer" in r}
    report = [f"## Text bandit: RL iteration throughput, ppo-core vs TRL {versions().split('trl ')[1].split(',')[0]} "
              f"PPOTrainer ({stamp})", "",
              f"Command: `{command.strip()}`  ",
              f"Machine: {cpu_model()}, {os.cpu_count()} cores (shared with other jobs), Python "
              f"{platform.python_version()}, {versions()}; {rows[args.variants[0]]['threads']} torch thread(s) in "
              f"every run, runs one at a time. Load average 1/5/15 min at start {load_start}, at end {load()}; "
              f"before each run: {', '.join(loads)}.", "",
              f"N = {args.prompts} prompts per iteration (world train split, {runs[args.variants[0]][0].get('prompt_width', '?')}"
              f" tokens when padded to the longest prompt of the set), at most {MAX_NEW_TOKENS} new tokens, T = 1, "
              f"{EPOCHS} epochs x {MINIBATCHES} minibatches, no gradient clipping; {args.repeats} alternating repeats of "
              f"{WARMUP} warm-up + {args.iterations} timed iterations; times are medians over the "
              f"{rows[args.variants[0]]['iterations']} timed iterations of each variant, ratios the median over "
              f"repeats of prompts/s against the {reference} run of the same repeat. TRL optimiser: "
              f"{', '.join(sorted(optimizers)) or 'n/a'}; ours: torch Adam (fused).", ""]
    report += tables(rows, reference)
    report.append(f"\nTotal benchmark wall time: {time.time() - started:.0f} s.\n")
    text = "\n".join(report)
    print(text)
    if not args.no_record:
        record("Text RL throughput vs TRL", text)


if __name__ == "__main__":
    main()
