"""Data-parallel training over 2 gloo processes spawned here: an update equals one process's update
of the concatenated rollouts with the same minibatch partition (PPO, TRPO, REINFORCE, CartPole and the
text bandit); global statistics equal those of the concatenated data; ranks stay identical; resume is
exact; a rank that stops or fails stops every rank, with a message, without a hang."""

from __future__ import annotations

import copy
import multiprocessing
import os
import signal
import socket
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from envs.normalize import RunningMeanStd
from envs.torch_normalize import RunningMeanStd as TorchRunningMeanStd
from ppo_core import algorithms, distributed
from ppo_core.advantages import whiten
from ppo_core.build import build_trainer, run_training
from ppo_core.buffer import RolloutBatch
from ppo_core.errors import DistributedError, NonFiniteError
from ppo_core.masked import masked_mean
from ppo_core.trainer import Trainer
from tests.conftest import make_config
from tests.lm_fixtures import write_artifacts

WORLD = 2
CARTPOLE = ("env=cartpole", "env.num_envs=2", "algo.num_steps=16", "eval_episodes=0", "device=cpu")


# ----------------------------------------------------------------------------- launching ranks
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_main(rank: int, port: int, target, args) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(WORLD), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    target(rank, *args)
    distributed.teardown()


def run_ranks(target, *args, timeout: float = 120.0) -> list[int]:
    """Run ``target(rank, *args)`` in WORLD fresh processes; their exit codes. A rank still running
    after ``timeout`` seconds fails the test (a hang)."""
    context = multiprocessing.get_context("spawn")
    port = free_port()
    processes = [context.Process(target=_rank_main, args=(rank, port, target, args)) for rank in range(WORLD)]
    for process in processes:
        process.start()
    deadline = time.monotonic() + timeout
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
    hung = [rank for rank, process in enumerate(processes) if process.is_alive()]
    for process in processes:
        if process.is_alive():
            process.kill()
    assert not hung, f"ranks {hung} were still running after {timeout} s"
    return [process.exitcode for process in processes]


# ----------------------------------------------------------------------------- one update, both ways
def record_minibatches(recorded: list[torch.Tensor]):
    """``shuffled_minibatches`` as it is, also keeping the indices it draws."""
    def shuffled(batch: RolloutBatch, size: int):
        indices = [torch.arange(len(batch))] if size >= len(batch) else torch.randperm(len(batch)).split(size)
        for part in indices:
            recorded.append(part)
            yield batch.select(part)
    return shuffled


def one_update(rank: int, out: Path, overrides: tuple[str, ...]) -> None:
    recorded: list[torch.Tensor] = []
    algorithms.shuffled_minibatches = record_minibatches(recorded)
    trainer = build_trainer(make_config(*overrides), out / "run")
    start = copy.deepcopy(trainer.policy.state_dict())
    batch = trainer.compute_batch(trainer.collect_rollout())
    with distributed.global_batch():
        stats = trainer.algorithm.update(batch)
    torch.save({"start": start, "batch": batch, "minibatches": recorded, "stats": stats,
                "after": trainer.policy.state_dict()}, out / f"rank{rank}.pt")


def tensors(state, prefix=""):
    """The tensors of a (nested) state dict by dotted key."""
    for key, value in state.items():
        if isinstance(value, dict):
            yield from tensors(value, f"{prefix}{key}.")
        elif isinstance(value, torch.Tensor):
            yield f"{prefix}{key}", value


def concatenate(trees):
    if isinstance(trees[0], dict):
        return {key: concatenate([tree[key] for tree in trees]) for key in trees[0]}
    return torch.cat(trees)


def reference_update(overrides, ranks, tmp_path):
    """One process's update of the ranks' concatenated batches, minibatch k the union of theirs."""
    trainer = build_trainer(make_config(*overrides), tmp_path / "reference")
    trainer.policy.load_state_dict(ranks[0]["start"])
    batch = RolloutBatch(*(concatenate(fields) for fields in zip(*(r["batch"] for r in ranks))))
    offset = len(ranks[0]["batch"])
    union = iter([torch.cat([a, b + offset]) for a, b in zip(ranks[0]["minibatches"], ranks[1]["minibatches"])])

    def partition(batch: RolloutBatch, size: int):
        for _ in range(1 if size >= len(batch) else -(-len(batch) // size)):
            yield batch.select(next(union))

    original, algorithms.shuffled_minibatches = algorithms.shuffled_minibatches, partition
    try:
        stats = trainer.algorithm.update(batch)
    finally:
        algorithms.shuffled_minibatches = original
    assert next(union, None) is None, "the reference used fewer minibatches than the ranks"
    return copy.deepcopy(trainer.policy.state_dict()), stats


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    return write_artifacts(tmp_path_factory.mktemp("text_artifacts"))


def text_overrides(artifacts: Path, *extra: str) -> tuple[str, ...]:
    return ("env=text_bandit", "agent=lm", f"env.artifacts={artifacts}", "device=cpu",
            f"env.prompts={artifacts / 'prompts.jsonl'}", "env.num_envs=4", "env.max_new_tokens=6",
            "eval_episodes=0", *extra)


UPDATES = {
    "cartpole-ppo": lambda a: (*CARTPOLE, "algo=ppo", "algo.num_minibatches=2", "algo.update_epochs=2"),
    "cartpole-torch-envs-ppo": lambda a: (*CARTPOLE, "env.vectorization=torch", "env.normalize_obs=true",
                                          "env.normalize_reward=true", "algo=ppo", "algo.num_minibatches=2"),
    "cartpole-trpo": lambda a: (*CARTPOLE, "algo=trpo", "algo.num_minibatches=2"),
    "cartpole-reinforce": lambda a: (*CARTPOLE, "algo=reinforce", "algo.num_minibatches=2"),
    "text-ppo": lambda a: text_overrides(a, "algo=ppo", "algo.num_minibatches=2", "algo.update_epochs=2"),
    "text-rloo-token-kl": lambda a: text_overrides(a, "algo=reinforce", "env.samples_per_prompt=2",
                                                   "algo.advantage=leave_one_out", "objective.kl_placement=token_reward"),
    "text-trpo": lambda a: text_overrides(a, "algo=trpo", "agent.critic=separate", "algo.num_minibatches=2"),
}


@pytest.mark.parametrize("case", UPDATES)
def test_an_update_over_two_ranks_is_one_update_of_their_concatenated_rollouts(case, artifacts, tmp_path):
    overrides = UPDATES[case](artifacts)
    assert run_ranks(one_update, tmp_path, overrides) == [0, 0]
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]
    start, after = (dict(tensors(ranks[0][key])) for key in ("start", "after"))
    for moment in ("start", "after"):
        for key, value in tensors(ranks[1][moment]):
            assert torch.equal(value, dict(tensors(ranks[0][moment]))[key]), f"{key} differs between the ranks ({moment})"
    assert not torch.equal(ranks[0]["batch"].actions, ranks[1]["batch"].actions), "the ranks drew the same rollout"
    expected, stats = reference_update(overrides, ranks, tmp_path)
    changed = False
    for key, value in tensors(expected):
        torch.testing.assert_close(after[key], value, rtol=1e-5, atol=1e-5, msg=key)
        changed |= not torch.equal(value, start[key])
    assert changed, "the update moved no parameter"
    for key in ("accepted", "step_fraction", "approx_kl", "policy_loss", "value_loss", "loss"):
        if key in stats:
            torch.testing.assert_close(ranks[0]["stats"][key], stats[key], rtol=1e-5, atol=1e-6,
                                       msg=f"{key}: {ranks[0]['stats'][key]} on rank 0, {stats[key]} in one process")


# ----------------------------------------------------------------------------- statistics
def rank_data(rank: int) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    generator = torch.Generator().manual_seed(rank)
    x = torch.randn(5 + 3 * rank, 4, generator=generator, dtype=torch.float64) * (1 + rank)  # (B, L)
    mask = torch.rand(x.shape, generator=generator) > 0.3
    observations = np.random.default_rng(rank).normal(rank, 1 + rank, size=(3 + rank, 2))
    return x, mask, observations


def statistics(rank: int, out: Path) -> None:
    distributed.setup("cpu")
    x, mask, observations = rank_data(rank)
    with distributed.global_batch():
        whitened, mean = whiten(x, mask), masked_mean(x, mask)
        per_sample = masked_mean(x, mask, dim=-1)  # within a sample: stays local
    stats = RunningMeanStd((2,))
    stats.update(observations)
    stats.update(observations[:2] * 2)
    on_device = TorchRunningMeanStd((2,), torch.device("cpu"))
    on_device.update(torch.from_numpy(observations[:3]))  # the same count on every rank, as env copies are
    torch.save({"device_mean": on_device.mean, "device_var": on_device.var, "device_count": on_device.count,"whitened": whitened, "mean": mean, "per_sample": per_sample, "obs_mean": stats.mean,
                "obs_var": stats.var, "obs_count": stats.count}, out / f"stats{rank}.pt")


def test_whitening_and_running_normalisation_see_the_concatenated_data(tmp_path):
    assert run_ranks(statistics, tmp_path) == [0, 0]
    ranks = [torch.load(tmp_path / f"stats{r}.pt", weights_only=False) for r in range(WORLD)]
    data = [rank_data(r) for r in range(WORLD)]
    x, mask = torch.cat([d[0] for d in data]), torch.cat([d[1] for d in data])
    valid = x[mask]
    expected = (x - valid.mean()) / (valid.std() + 1e-8) * mask
    torch.testing.assert_close(torch.cat([r["whitened"] for r in ranks]), expected)
    for rank, (own_x, own_mask, _) in zip(ranks, data):
        torch.testing.assert_close(rank["mean"], valid.mean())
        torch.testing.assert_close(rank["per_sample"], (own_x * own_mask).sum(-1) / own_mask.sum(-1).clamp(min=1))
    reference = RunningMeanStd((2,))
    reference.update(np.concatenate([d[2] for d in data]))
    reference.update(np.concatenate([d[2][:2] * 2 for d in data]))
    for rank in ranks:
        np.testing.assert_allclose(rank["obs_mean"], reference.mean, rtol=1e-12)
        np.testing.assert_allclose(rank["obs_var"], reference.var, rtol=1e-12)
        assert rank["obs_count"] == pytest.approx(reference.count)
    on_device = RunningMeanStd((2,))
    on_device.update(np.concatenate([d[2][:3] for d in data]))
    for rank in ranks:
        np.testing.assert_allclose(rank["device_mean"].numpy(), on_device.mean, rtol=1e-12)
        np.testing.assert_allclose(rank["device_var"].numpy(), on_device.var, rtol=1e-12)
        assert float(rank["device_count"]) == pytest.approx(on_device.count)


# ----------------------------------------------------------------------------- whole runs
RUN = (*CARTPOLE, "algo=ppo", "algo.anneal_lr=false", "algo.num_minibatches=2", "checkpoint_every=128")


def train_and_keep(rank: int, run_dir: Path, overrides: tuple[str, ...], name: str) -> None:
    """Train to the end; save this rank's final parameters beside the run directory."""
    kept = {}
    original = Trainer.train

    def train_keeping(self):
        summary = original(self)
        kept.update(tensors(self.policy.state_dict()))
        return summary

    Trainer.train = train_keeping
    run_training(make_config(*overrides), run_dir, overrides)  # the overrides a resumed run may change
    torch.save(kept, run_dir.parent / f"{name}{rank}.pt")


def test_ranks_stay_identical_and_a_resumed_two_rank_run_continues_exactly(tmp_path):
    whole = (*RUN, "total_timesteps=256")
    assert run_ranks(train_and_keep, tmp_path / "whole", whole, "whole") == [0, 0]
    half = (*RUN, "total_timesteps=128")
    assert run_ranks(train_and_keep, tmp_path / "half", half, "half") == [0, 0]
    resumed = (*RUN, "total_timesteps=256", f"resume={tmp_path / 'half' / 'checkpoint.pt'}")
    assert run_ranks(train_and_keep, tmp_path / "half", resumed, "resumed") == [0, 0]
    final = {name: [torch.load(tmp_path / f"{name}{r}.pt") for r in range(WORLD)] for name in ("whole", "resumed")}
    for name, (rank0, rank1) in final.items():
        for key in rank0:
            assert torch.equal(rank0[key], rank1[key]), f"{name}: {key} differs between the ranks"
    for key, value in final["whole"][0].items():
        assert torch.equal(final["resumed"][0][key], value), f"{key} differs after resuming"
    saved = torch.load(tmp_path / "whole" / "checkpoint.pt", weights_only=True)
    assert saved["world_size"] == 2 and len(saved["ranks"]) == 1 and saved["global_step"] == 256
    assert not (tmp_path / "whole" / "rank1").exists()
    assert (tmp_path / "whole" / "summary.json").exists()


def test_a_checkpoint_resumes_only_with_the_number_of_processes_that_wrote_it(tmp_path):
    assert run_ranks(train_and_keep, tmp_path / "run", (*RUN, "total_timesteps=128"), "run") == [0, 0]
    with pytest.raises(Exception, match=r"written by 2 process\(es\).*--nproc_per_node=2"):
        build_trainer(make_config(*RUN, f"resume={tmp_path / 'run' / 'checkpoint.pt'}"), tmp_path / "run")


# ----------------------------------------------------------------------------- failures
def fail_on_rank_one(rank: int, out: Path, how: str) -> None:
    """Train; rank 1 is killed (``kill``) or its env returns a non-finite reward (``nan``) in its
    third rollout. Each surviving rank writes the error it stopped with."""
    original = Trainer.collect_rollout

    def collect(self):
        if rank == 1 and self.iteration == 2:
            if how == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            raise NonFiniteError("non-finite reward nan from env copy 0")
        return original(self)

    Trainer.collect_rollout = collect
    try:
        run_training(make_config(*RUN, "total_timesteps=1024"), out / "run")
    except (DistributedError, NonFiniteError) as error:
        (out / f"error{rank}.txt").write_text(f"{type(error).__name__}: {error}")
        raise SystemExit(2)


def test_a_killed_rank_stops_the_others_with_a_message(tmp_path):
    started = time.monotonic()
    assert run_ranks(fail_on_rank_one, tmp_path, "kill", timeout=90) == [2, -signal.SIGKILL]
    message = (tmp_path / "error0.txt").read_text()
    assert message.startswith("DistributedError: rank 0 of 2: another process of this run stopped")
    assert time.monotonic() - started < 60


def test_a_non_finite_reward_on_one_rank_stops_every_rank_with_its_message(tmp_path):
    assert run_ranks(fail_on_rank_one, tmp_path, "nan") == [2, 2]
    rank0, rank1 = ((tmp_path / f"error{r}.txt").read_text() for r in range(WORLD))
    assert rank1.startswith("NonFiniteError: non-finite reward nan from env copy 0; training stopped: the last "
                            "good checkpoint")
    assert rank0 == rank1.replace("NonFiniteError: ", "NonFiniteError: rank 1: ", 1)


# ----------------------------------------------------------------------------- the alignment wing
def align_rl(rank: int, root: Path, overrides: tuple[str, ...]) -> None:
    from ppo_core.align.config import compose_align_config
    from ppo_core.align.stages import run_stage

    summary = run_stage(compose_align_config(list(overrides)))
    torch.save({"env_steps": summary["env_steps"]}, root / f"align{rank}.pt")


def test_the_rl_stage_of_the_pipeline_trains_over_two_ranks_and_rank_zero_saves_the_policy(tmp_path):
    from ppo_core.align.config import compose_align_config
    from ppo_core.align.stages import run_stage
    from tests import byo_fixtures as byo

    models = byo.write_models(tmp_path / "models")
    prompts = byo.write_jsonl(tmp_path / "prompts.jsonl", byo.prompt_rows())
    common = ["size=tiny", f"paths.root={tmp_path}", f"paths.base={models['gpt2']}", "sft.max_prompt_tokens=48",
              "sft.max_completion_tokens=24", "rm.max_prompt_tokens=48"]
    run_stage(compose_align_config([*common, "stage=sft",
                                    f"sft.data={byo.write_jsonl(tmp_path / 'sft.jsonl', byo.sft_rows('pairs'))}"]))
    run_stage(compose_align_config([*common, "stage=rm",
                                    f"rm.data={byo.write_jsonl(tmp_path / 'prefs.jsonl', byo.rm_rows('pairs'))}"]))
    rl = (*common, "stage=rl", f"rl.prompts={prompts}",
          'rl.overrides=["env.max_new_tokens=6","env.num_envs=4","total_timesteps=16","eval_episodes=4",'
          f'"eval_every=8","env.eval_prompts={prompts}"]')
    assert run_ranks(align_rl, tmp_path, rl) == [0, 0]
    assert [torch.load(tmp_path / f"align{r}.pt")["env_steps"] for r in range(WORLD)] == [16, 16]
    assert (tmp_path / "rl" / "policy" / "config.json").exists() and (tmp_path / "rl" / "summary.json").exists()


def refuse_supervised(rank: int, root: Path) -> None:
    from ppo_core.align.config import compose_align_config
    from ppo_core.align.errors import AlignError
    from ppo_core.align.stages import run_stage

    with pytest.raises(AlignError, match="stage=sft runs in one process; under torchrun only stage=rl"):
        run_stage(compose_align_config(["size=tiny", f"paths.root={root}", "stage=sft"]))


def test_the_supervised_stages_refuse_torchrun_by_name(tmp_path):
    assert run_ranks(refuse_supervised, tmp_path) == [0, 0]
