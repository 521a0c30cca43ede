"""CartPole-v1 on the training device: the torch port (envs/torch_classic) against Gymnasium's
``CartPoleVectorEnv`` behind ``GymVecEnv``, in one process.

(a) rollout: env steps per second at ``--num-envs`` copies, the real MLP policy's ``act`` choosing the
    actions and its ``value`` read on the final observations, as the trainer's rollout does; the torch
    port (float64, the default, and float32) against the NumPy env whose arrays cross to the device and
    back every step, and their ratio;
(b) training: whole PPO iterations (rollout, GAE, update, logging) per second of env steps, the CLI's
    trainer at the CartPole preset with ``--num-envs`` copies, with each of the two envs;
(c) syncs: ``torch.cuda.set_sync_debug_mode("warn")`` around ``--sync-steps`` rollout steps of the torch
    port, alone and with the policy; every warning is a host-device sync, counted per step (the start
    queue refills once every 128 steps: its read of the pointers and its copies back are the few syncs
    expected, about 0.02 a step).

Writes a table, a JSON file of the figures into ``--out`` (benchmarks/figures/ by default) and, with
``--record``, a RESULTS.md section. It is meant for a GPU; on a CPU, small sizes check that it runs:

    python benchmarks/gpu_checks.py                                   # on CUDA, 4,096 copies
    python benchmarks/gpu_checks.py --device cpu --num-envs 64 --steps 50 --train-rollouts 2 --out /tmp/checks
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from classic_control_study import cpu_name, load_average  # noqa: E402
from envs.make import make_gym_env  # noqa: E402
from envs.torch_classic import TorchClassicVecEnv  # noqa: E402
from envs.torch_classic.tasks import CartPole  # noqa: E402
from ppo_core import api  # noqa: E402
from ppo_core.build import make_policy  # noqa: E402
from record import record  # noqa: E402

VECTORIZATIONS = {"torch": "torch port on the device", "vector_entry_point": "CartPoleVectorEnv via GymVecEnv"}


def config(vectorization: str, args: argparse.Namespace, *overrides: str):
    return api.make_config("env=cartpole", f"env.vectorization={vectorization}", f"env.num_envs={args.num_envs}",
                           f"device={args.device}", "progress=false", *overrides)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def rollout_steps(env, policy, obs: torch.Tensor, steps: int) -> torch.Tensor:
    """The trainer's rollout loop without its buffer: act, step, value of the final observations;
    returns the last observation."""
    for _ in range(steps):
        step = policy.act(obs)
        result = env.step(policy.env_action(step))
        if result.final_obs is not None:
            policy.value(result.final_obs)
        obs = result.obs
    return obs


def rollout_rate(vectorization: str, args: argparse.Namespace, device: torch.device,
                 dtype: torch.dtype | None = None) -> float:
    """Env steps per second of ``args.steps`` policy-driven vector steps (after as many to warm up);
    ``dtype`` builds the torch port with that state dtype."""
    cfg = config(vectorization, args)
    if dtype is None:
        env = make_gym_env(cfg.env, device, gamma=cfg.algo.gamma)
    else:
        env = TorchClassicVecEnv(CartPole(), args.num_envs, device, dtype=dtype, max_episode_steps=500)
    policy = make_policy(cfg, env, device)
    obs = rollout_steps(env, policy, env.reset(seed=0), args.steps)
    best = 0.0
    for _ in range(args.rounds):
        synchronize(device)
        start = time.perf_counter()
        obs = rollout_steps(env, policy, obs, args.steps)
        synchronize(device)
        best = max(best, args.steps * args.num_envs / (time.perf_counter() - start))
    return best


def training_rate(vectorization: str, args: argparse.Namespace) -> dict[str, float]:
    """Env steps per training second of the CLI's trainer (evaluation off, as it is not timed anyway)."""
    steps_per_rollout = args.num_envs * 32  # the CartPole preset's algo.num_steps
    cfg = config(vectorization, args, f"total_timesteps={steps_per_rollout * args.train_rollouts}",
                 "eval_episodes=0", "eval_every=0", "checkpoint_every=0")
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = api.build_trainer(cfg, run_dir)
        trainer.train()
    return {"env_steps": trainer.global_step, "wall_seconds": trainer.wall_seconds,
            "steps_per_second": trainer.global_step / trainer.wall_seconds}


def sync_counts(args: argparse.Namespace, device: torch.device) -> dict[str, float] | None:
    """Host-device syncs per vector step, of the torch port alone and with the policy (None off CUDA)."""
    if device.type != "cuda":
        return None
    cfg = config("torch", args)
    env = make_gym_env(cfg.env, device, gamma=cfg.algo.gamma)
    policy = make_policy(cfg, env, device)
    obs = rollout_steps(env, policy, env.reset(seed=0), 2)  # first-call allocations out of the count
    actions = torch.randint(0, 2, (args.sync_steps, args.num_envs), device=device)
    counts = {}
    for name, run in (("env_only", lambda: [env.step(action) for action in actions]),
                      ("with_policy", lambda: rollout_steps(env, policy, obs, args.sync_steps))):
        synchronize(device)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                run()
            finally:
                torch.cuda.set_sync_debug_mode("default")
        counts[name] = sum("synchroniz" in str(w.message).lower() for w in caught) / args.sync_steps
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--num-envs", type=int, default=4096)
    parser.add_argument("--steps", type=int, default=500, help="vector steps per timed rollout round")
    parser.add_argument("--rounds", type=int, default=3, help="timed rollout rounds; the best is kept")
    parser.add_argument("--train-rollouts", type=int, default=10, help="PPO iterations of the training check")
    parser.add_argument("--sync-steps", type=int, default=300, help="vector steps watched for syncs")
    parser.add_argument("--out", type=Path, default=HERE / "figures", help="where the JSON figures go")
    parser.add_argument("--record", action="store_true", help="write the section into RESULTS.md")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.set_num_threads(1)  # as the trainer runs (torch_threads=1); more threads stall on small CPU ops
    machine = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{cpu_name()} (CPU)"

    rollout = {name: rollout_rate(name, args, device) for name in VECTORIZATIONS}
    rollout["torch_float32"] = rollout_rate("torch", args, device, torch.float32)
    training = {name: training_rate(name, args) for name in VECTORIZATIONS}
    syncs = sync_counts(args, device)
    figures = {"device": machine, "num_envs": args.num_envs, "torch": torch.__version__,
               "rollout_steps_per_second": rollout, "rollout_ratio": rollout["torch"] / rollout["vector_entry_point"],
               "training": training,
               "training_ratio": training["torch"]["steps_per_second"] / training["vector_entry_point"]["steps_per_second"],
               "syncs_per_step": syncs}

    rows = ["| check | torch port on the device | CartPoleVectorEnv via GymVecEnv | ratio |", "|---|---|---|---|",
            f"| (a) rollout, env steps/s | {rollout['torch']:,.0f} | {rollout['vector_entry_point']:,.0f} | "
            f"{figures['rollout_ratio']:.2f}× |",
            f"| (a) rollout, env steps/s, float32 state | {rollout['torch_float32']:,.0f} | | "
            f"{rollout['torch_float32'] / rollout['vector_entry_point']:.2f}× |",
            f"| (b) PPO training, env steps/s | {training['torch']['steps_per_second']:,.0f} | "
            f"{training['vector_entry_point']['steps_per_second']:,.0f} | {figures['training_ratio']:.2f}× |"]
    if syncs is None:
        rows.append("| (c) syncs per step | not measured off CUDA | | |")
    else:
        rows.append(f"| (c) syncs per step (env alone; with the policy) | {syncs['env_only']:.4f}; "
                    f"{syncs['with_policy']:.4f} | | |")
    stamp = datetime.datetime.now(datetime.timezone.utc)
    command = "python benchmarks/gpu_checks.py " + " ".join(sys.argv[1:])
    report = "\n".join([
        f"## CartPole-v1 on the device: torch port vs CartPoleVectorEnv ({stamp:%Y-%m-%d %H:%M} UTC)", "",
        f"Command: `{command.strip()}`",
        f"Machine: {machine}, Python {platform.python_version()}, torch {torch.__version__}; {args.num_envs} "
        f"copies; (a) the best of {args.rounds} rounds of {args.steps} policy-driven vector steps; (b) "
        f"{args.train_rollouts} PPO iterations at the CartPole preset (32 steps a rollout), evaluation off; "
        f"load average {load_average()} at the end.", "", *rows])
    print("\n" + report)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"gpu_checks_{stamp:%Y%m%d_%H%M}.json"
    path.write_text(json.dumps(figures, indent=2))
    print(f"\nfigures: {path}")
    if args.record:
        record("Classic control on the device: torch ports vs NumPy envs", report)


if __name__ == "__main__":
    main()
