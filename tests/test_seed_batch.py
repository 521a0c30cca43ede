"""Seed batches (``seeds=[...]``): every run of a batch against the single-run trainer with its seed,
the independent reference. Runs agree to float rounding (batched matmuls sum in another order), and
their random draws exactly: the RNG state each checkpoint saves is the reference's, bit for bit."""

import json
import logging

import numpy as np
import pytest
import torch

from ppo_core import api, checkpoint, compare
from ppo_core.batched_trainer import BatchedTrainer
from ppo_core.build import build_trainer, run_training
from ppo_core.errors import ConfigError
from tests.conftest import make_config
from tests.test_trainer import assert_same_parameters

SMALL = ("total_timesteps=512", "algo.num_steps=32", "env.num_envs=4", "eval_episodes=2", "eval_every=256",
         "checkpoint_every=0", "algo.update_epochs=2", "algo.num_minibatches=4")
ENVS = {
    "cartpole": ("env=cartpole",),  # discrete; next-step autoreset masks the reset steps
    "pendulum": ("env=pendulum", "agent.gsde=false", "algo.num_minibatches=4"),  # Box actions
    "acrobot": ("env=acrobot", "env.normalize_obs=true", "env.normalize_reward=true"),  # normalisers per run
}
TOLERANCE = dict(rtol=1e-4, atol=1e-5)


def reference(overrides, seed, tmp_path):
    """The single-run trainer's run with ``seed``, trained to the end."""
    trainer = build_trainer(make_config(*overrides, f"seed={seed}"), tmp_path / f"reference_{seed}")
    summary = trainer.train()
    return trainer, summary


def batch(overrides, seeds, tmp_path):
    """A seed batch's summary, and each run's final checkpoint by seed."""
    summary = run_training(make_config(*overrides, f"seeds=[{','.join(map(str, seeds))}]"), tmp_path / "batch")
    return summary, {s: checkpoint.load(tmp_path / "batch" / f"seed_{s}" / "checkpoint.pt") for s in seeds}


def assert_run_matches(saved, trainer, summary_of_run, summary_of_reference):
    for name, value in trainer.policy.state_dict().items():
        torch.testing.assert_close(saved["model"][name], value, **TOLERANCE, msg=name)
    for group, reference_state in trainer.algorithm.state_dict()["optimizers"].items():
        states = saved["algorithm"]["optimizers"][group]["state"]
        assert states.keys() == reference_state["state"].keys()
        for index, state in states.items():
            assert float(state["step"]) == float(reference_state["state"][index]["step"])
            torch.testing.assert_close(state["exp_avg"], reference_state["state"][index]["exp_avg"], **TOLERANCE)
    assert summary_of_run["env_steps"] == summary_of_reference["env_steps"]
    assert [e["env_steps"] for e in summary_of_run["eval_history"]] == \
        [e["env_steps"] for e in summary_of_reference["eval_history"]]
    for ours, theirs in zip(summary_of_run["eval_history"], summary_of_reference["eval_history"]):
        assert ours["mean_reward"] == pytest.approx(theirs["mean_reward"], rel=1e-3, abs=1e-2)


def reference_rng(trainer):
    """The global torch RNG state right after the reference trained: what its checkpoint saved."""
    return checkpoint.load(trainer.checkpoint_path)["rng"]["torch"]


@pytest.mark.parametrize("env", ENVS)
def test_a_batch_of_one_gives_the_single_run_trainers_numbers(tmp_path, env):
    overrides = (*SMALL, *ENVS[env])
    trainer, summary = reference(overrides, 3, tmp_path)
    batch_summary, saved = batch(overrides, [3], tmp_path)
    assert_run_matches(saved[3], trainer, batch_summary["runs"][0], summary)
    assert torch.equal(saved[3]["rng"]["torch"], reference_rng(trainer))  # the same draws, in the same order
    assert saved[3]["env"]["episodes"]["lengths"].tolist() == trainer.env.state_dict()["episodes"]["lengths"].tolist()


ALGOS = {
    "ppo": ("algo.update_epochs=2", "algo.num_minibatches=4"),
    "reinforce": ("algo.update_epochs=2", "algo.vf_iters=2", "algo.num_minibatches=4"),  # critic minibatches
    # damping 0.1 (the schema's default): CartPole's preset of 1e-3 leaves the Fisher near-singular, and
    # 15 CG iterations on it turn float rounding into parameter differences of 7e-5
    "trpo": ("algo.vf_iters=2", "algo.num_minibatches=4", "algo.damping=0.1"),
}


def one_update(env, algo):
    """One rollout and one update of ``algo`` on ``env``."""
    shared = tuple(o for o in SMALL if not o.startswith(("algo.update_epochs", "algo.num_minibatches")))
    return (*shared, *ENVS[env], "total_timesteps=128", "eval_episodes=0", f"algo={algo}", *ALGOS[algo])


@pytest.mark.parametrize("algo", ALGOS)
@pytest.mark.parametrize("env", ["cartpole", "pendulum"])
def test_run_i_of_three_takes_the_first_update_of_seed_i(tmp_path, env, algo):
    overrides = one_update(env, algo)
    batch_summary, saved = batch(overrides, [0, 1, 2], tmp_path)
    finals = []
    for seed, summary in zip([0, 1, 2], batch_summary["runs"]):
        trainer, reference_summary = reference(overrides, seed, tmp_path)
        assert_run_matches(saved[seed], trainer, summary, reference_summary)
        assert torch.equal(saved[seed]["rng"]["torch"], reference_rng(trainer))
        finals.append(saved[seed]["model"]["actor.layers.0.weight"])
    assert not torch.allclose(finals[0], finals[1])  # three different runs, not one run three times


def count_steps(trainer):
    """Count the reference's gradient steps (an early stop shows as fewer)."""
    counter = {"steps": 0}
    step = trainer.algorithm.gradient_step

    def counted(*args):
        counter["steps"] += 1
        return step(*args)

    trainer.algorithm.gradient_step = counted
    return counter


def test_the_target_kl_stop_ends_only_its_own_runs_epochs(tmp_path):
    overrides = ("total_timesteps=256", "algo.num_steps=32", "env.num_envs=8", "eval_episodes=0", "checkpoint_every=0",
                 "algo.update_epochs=10", "algo.num_minibatches=4", "algo.early_stop_kl=0.005",
                 "algo.learning_rate=3e-3")
    steps = []
    batch_summary, saved = batch(overrides, [0, 1, 2], tmp_path)
    for seed, summary in zip([0, 1, 2], batch_summary["runs"]):
        trainer = build_trainer(make_config(*overrides, f"seed={seed}"), tmp_path / f"reference_{seed}")
        counter = count_steps(trainer)
        reference_summary = trainer.train()
        steps.append(counter["steps"])
        assert_run_matches(saved[seed], trainer, summary, reference_summary)
        assert float(saved[seed]["algorithm"]["optimizers"]["policy"]["state"][0]["step"]) == counter["steps"]
        assert torch.equal(saved[seed]["rng"]["torch"], reference_rng(trainer))  # no draws after its stop
    assert len(set(steps)) == 3, steps  # the seeds stop after different epochs, so the mask is exercised


def test_a_rejected_line_search_restores_only_its_own_run(tmp_path):
    """One candidate that must gain 99% of its first-order prediction: seeds 2 and 4 accept theirs,
    seed 3 keeps its old actor, bit for bit, while the runs beside it move."""
    overrides = (*one_update("cartpole", "trpo"), "algo.max_backtracks=1", "algo.accept_ratio=0.99")
    batch_summary, saved = batch(overrides, [2, 3, 4], tmp_path)
    accepted = {}
    for seed, summary in zip([2, 3, 4], batch_summary["runs"]):
        trainer = build_trainer(make_config(*overrides, f"seed={seed}"), tmp_path / f"reference_{seed}")
        start = {k: v.clone() for k, v in trainer.policy.state_dict().items() if k.startswith("actor")}
        step = trainer.algorithm.update
        trainer.algorithm.update = lambda batch: accepted.setdefault(seed, step(batch))
        reference_summary = trainer.train()
        assert_run_matches(saved[seed], trainer, summary, reference_summary)
        moved = any(not torch.equal(saved[seed]["model"][k], v) for k, v in start.items())
        assert moved == bool(accepted[seed]["accepted"]), seed
        if not moved:
            assert all(torch.equal(saved[seed]["model"][k], v) for k, v in start.items())
    assert [int(accepted[s]["accepted"]) for s in (2, 3, 4)] == [1, 0, 1]


def test_stop_at_return_ends_each_run_at_its_own_step(tmp_path):
    overrides = ("total_timesteps=4096", "algo.num_steps=32", "env.num_envs=4", "eval_episodes=3", "eval_every=128",
                 "checkpoint_every=0", "stop_at_return=40", "stop_after_evals=1")
    batch_summary, saved = batch(overrides, [0, 1, 2], tmp_path)
    stops = []
    for seed, summary in zip([0, 1, 2], batch_summary["runs"]):
        trainer, reference_summary = reference(overrides, seed, tmp_path)
        stops.append(reference_summary["env_steps"])
        assert summary["stopped_early"] and reference_summary["stopped_early"]
        assert_run_matches(saved[seed], trainer, summary, reference_summary)
    assert len(set(stops)) > 1, stops  # the runs leave the batch at different steps


def test_each_run_writes_its_own_directory_that_compare_and_evaluate_read(tmp_path):
    summary = run_training(make_config(*SMALL, "seeds=[4,7]"), tmp_path / "sweep")
    assert summary["batched"] and len(summary["runs"]) == 2
    assert summary["eval_mean_return"] == pytest.approx(sum(r["eval_mean_return"] for r in summary["runs"]) / 2)
    for seed in (4, 7):
        run_dir = tmp_path / "sweep" / f"seed_{seed}"
        written = json.loads((run_dir / "summary.json").read_text())
        assert written["config"]["seed"] == seed and written["config"]["seeds"] is None
        assert list((run_dir / "tb").glob("events.out.tfevents.*"))
        assert len(api.evaluate(run_dir / "checkpoint.pt", episodes=2).returns) == 2
    runs = compare.load_runs([tmp_path / "sweep"])
    assert sorted(r.seed for r in runs) == [4, 7] and {r.algo for r in runs} == {"ppo"}


def test_a_batch_resumes_from_its_directory_as_if_it_never_stopped(tmp_path):
    overrides = (*SMALL, "algo.anneal_lr=false", "total_timesteps=1024", "eval_every=512")
    run_training(make_config(*overrides, "seeds=[0,1]"), tmp_path / "full")
    run_training(make_config(*overrides, "seeds=[0,1]", "total_timesteps=512"), tmp_path / "half")
    resumed = run_training(make_config(f"resume={tmp_path / 'half'}", "total_timesteps=1024", "progress=false"),
                           tmp_path / "elsewhere", ["total_timesteps=1024"])
    assert resumed["run_dir"] == str(tmp_path / "half") and resumed["env_steps"] == 2 * 1024
    for seed in (0, 1):
        full = checkpoint.load(tmp_path / "full" / f"seed_{seed}" / "checkpoint.pt")
        half = checkpoint.load(tmp_path / "half" / f"seed_{seed}" / "checkpoint.pt")
        assert half["global_step"] == 1024
        assert_same_parameters(full["model"], half["model"])


def test_a_run_of_a_batch_resumes_alone_with_the_single_run_trainer(tmp_path):
    overrides = (*SMALL, "algo.anneal_lr=false")
    run_training(make_config(*overrides, "seeds=[2]"), tmp_path / "sweep")
    summary = api.resume(tmp_path / "sweep" / "seed_2" / "checkpoint.pt", "total_timesteps=1024")
    assert summary["env_steps"] == 1024 and summary["config"]["seed"] == 2


def test_a_setting_the_batch_cannot_take_trains_the_seeds_one_at_a_time(tmp_path, caplog):
    overrides = (*SMALL, "agent.shared_trunk=true")
    with caplog.at_level(logging.WARNING, logger="ppo_core.seeds"):
        summary = run_training(make_config(*overrides, "seeds=[0,1]"), tmp_path / "sweep")
    assert "agent.shared_trunk=true is not batched" in caplog.text and not summary["batched"]
    trainer, _ = reference(overrides, 1, tmp_path)
    saved = checkpoint.load(tmp_path / "sweep" / "seed_1" / "checkpoint.pt")
    assert_same_parameters(saved["model"], trainer.policy.state_dict())  # the single-run trainer itself


@pytest.mark.parametrize("seeds, message", [
    ("[]", "seeds=[] is invalid; expected at least one seed"),
    ("[1,2,1]", "seed 1 appears more than once"),
    ("[0,-3]", "seeds=[0, -3] is invalid; expected >= 0"),
])
def test_bad_seed_lists_are_refused_by_value(tmp_path, seeds, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        api.train(make_config(*SMALL, f"seeds={seeds}"), run_dir=tmp_path)


def test_resuming_a_batch_with_other_seeds_is_refused(tmp_path):
    run_training(make_config(*SMALL, "seeds=[0,1]"), tmp_path / "sweep")
    with pytest.raises(ConfigError, match=r"is the batch of seeds=\[0, 1\]; seeds=\[0, 2\] cannot change"):
        run_training(make_config(f"resume={tmp_path / 'sweep'}", "seeds=[0,2]"), tmp_path / "sweep")


def test_runs_of_a_batch_must_start_at_one_iteration(tmp_path):
    trainers = [build_trainer(make_config(*SMALL, f"seed={s}"), tmp_path / str(s)) for s in (0, 1)]
    trainers[1].iteration = 3
    with pytest.raises(ValueError, match=r"one iteration, got \[0, 3\]"):
        BatchedTrainer(trainers, [torch.Generator(), torch.Generator()], lambda policies: None)


@pytest.mark.slow
def test_a_batch_of_four_cartpole_seeds_solves_every_seed(tmp_path):
    summary = run_training(make_config("env=cartpole", "algo=ppo", "seeds=[0,1,2,3]", "stop_at_return=475",
                                       "eval_every=2048", "checkpoint_every=0"), tmp_path)
    assert [r["eval_mean_return"] >= 475 and r["stopped_early"] for r in summary["runs"]] == [True] * 4


def test_stacked_cartpoles_step_as_each_env_alone():
    """Three runs' CartPoles (seeds 0-2) stepped as one array against their own envs, over 700 steps of
    random actions: the time limit, resets from each run's generator and the episode counts all agree."""
    from envs.make import make_gym_env
    from envs.stacked import CartPoleStack, stacks
    from ppo_core.batched_trainer import step_each

    config = make_config("env=cartpole", "env.num_envs=5").env
    alone, together = ([make_gym_env(config, torch.device("cpu"), 0.99) for _ in range(3)] for _ in range(2))
    for seed, (a, b) in enumerate(zip(alone, together)):
        a.reset(seed=seed), b.reset(seed=seed)
    stack = CartPoleStack(together)
    assert stacks(together) and not stacks([make_gym_env(make_config("env=cartpole", "env.normalize_obs=true").env,
                                                          torch.device("cpu"), 0.99)])
    actions = torch.Generator().manual_seed(0)
    for _ in range(700):
        action = torch.randint(0, 2, (3, 5), generator=actions)
        expected, got = step_each(alone, action), stack(together, action)
        for field in ("obs", "reward", "terminated", "truncated", "valid"):
            assert torch.equal(getattr(expected, field), getattr(got, field)), field
        assert got.obs.is_contiguous()  # the layout of a reset's and a checkpoint's observations
    assert [e.pop_episode_stats() for e in alone] == [e.pop_episode_stats() for e in together]
    assert all(e.env.np_random.bit_generator.state == f.env.np_random.bit_generator.state
               for e, f in zip(alone, together))


@pytest.mark.parametrize("env", ["acrobot", "mountaincar", "pendulum"])
def test_stacked_classic_envs_step_as_each_env_alone(env):
    """Three runs' batched NumPy envs (seeds 0-2) whose dynamics are computed as one array, against
    their own envs stepped in turn, over 700 random steps: observations (normalised by each run's own
    statistics where the preset normalises), rewards, time limits, real final observations, restarts
    from each run's generators and episode counts all agree, bit for bit."""
    from envs.classic_vector import BatchedClassicEnv
    from envs.make import make_gym_env
    from envs.stacked import ClassicStack, books_together, classic_stacks, env_stepper
    from ppo_core.batched_trainer import step_each

    config = make_config(f"env={env}", "env.num_envs=5", "env.vectorization=batched").env
    alone, together = ([make_gym_env(config, torch.device("cpu"), 0.99) for _ in range(3)] for _ in range(2))
    assert isinstance(together[0].env, BatchedClassicEnv) and isinstance(env_stepper(together), ClassicStack)
    assert books_together(together)  # the wrappers' bookkeeping too is done on stacked arrays
    # another task, or the same one with other constants, has other dynamics
    other = ("env=pendulum", "+env.kwargs.g=5.0") if env == "pendulum" else (
        "env=mountaincar" if env == "acrobot" else "env=acrobot",)
    other_env = make_gym_env(make_config(*other, "env.vectorization=batched").env, torch.device("cpu"), 0.99)
    assert not classic_stacks([*together, other_env])
    for seed, (a, b) in enumerate(zip(alone, together)):
        a.reset(seed=seed), b.reset(seed=seed)
    space = together[0].single_action_space
    draws = torch.Generator().manual_seed(0)
    stack = ClassicStack()
    for _ in range(700):
        if space.shape:  # Box
            action = torch.rand(3, 5, *space.shape, generator=draws) * 4 - 2
        else:
            action = torch.randint(0, int(space.n), (3, 5), generator=draws)
        expected, got = step_each(alone, action), stack(together, action)
        for field in ("obs", "reward", "terminated", "truncated", "valid", "final_obs", "has_final"):
            e, g = getattr(expected, field), getattr(got, field)
            assert (e is None and g is None) or torch.equal(e, g), field
    assert [e.pop_episode_stats() for e in alone] == [e.pop_episode_stats() for e in together]
    for a, b in zip(alone, together):
        assert all(x.bit_generator.state == y.bit_generator.state for x, y in zip(a.env.generators, b.env.generators))
        assert np.array_equal(a.env.state, b.env.state)
        for key, value in a.state_dict().items():
            if key.endswith(("normalizer", "scaler")):
                assert all(torch.equal(v, b.state_dict()[key][k]) for k, v in value.items()), key


def test_stacked_bookkeeping_names_the_copy_and_step_of_a_non_finite_result_and_takes_only_alike_wrappers():
    """A NaN in one run's results stops the batch with the message that run's env gives alone; envs whose
    normalisers differ (or are frozen for evaluation) are each done by their own ``after_step``."""
    from envs.make import make_gym_env
    from envs.stacked import after_steps, books_together
    from ppo_core.errors import NonFiniteError

    config = make_config("env=acrobot", "env.num_envs=2", "env.vectorization=batched",
                         "env.normalize_obs=true").env
    envs = [make_gym_env(config, torch.device("cpu"), 0.99) for _ in range(3)]
    for seed, env in enumerate(envs):
        env.reset(seed=seed)
    obs, reward = np.zeros((3, 2, 6), dtype=np.float32), np.zeros((3, 2), dtype=np.float32)
    obs[1, 1, 4] = np.nan
    ended = np.zeros((3, 2), dtype=bool)
    with pytest.raises(NonFiniteError, match=r"BatchedAcrobot: env copy 1 returned a non-finite observation \(nan\) "
                                             r"at vector step 1"):
        after_steps(envs, obs, reward, ended, ended, [{}, {}, {}])
    plain = make_gym_env(make_config("env=acrobot", "env.num_envs=2", "env.vectorization=batched",
                                     "env.normalize_obs=false").env,
                         torch.device("cpu"), 0.99)
    assert books_together(envs) and not books_together([*envs, plain])
    envs[2].set_training(False)
    assert not books_together(envs)


@pytest.mark.parametrize("discrete", [True, False])
def test_the_gauss_newton_kl_product_is_the_explicit_hessian_of_each_runs_kl(discrete):
    """TRPO's Fisher-vector product of a batch, Jᵀ F J, against the Hessian of each run's masked mean
    KL(π_old‖π_θ) at θ_old built column by column with double backward, for logits and for a Gaussian
    with its log-std; one run's product moves only that run's rows."""
    import gymnasium as gym

    from agents.mlp import MLPActorCritic
    from agents.stacked_mlp import StackedMLPActorCritic
    from ppo_core.batched_ppo import RUN
    from ppo_core.batched_trpo import kl_hessian_product
    from ppo_core.buffer import RolloutBatch
    from ppo_core.masked import masked_mean

    torch.manual_seed(0)
    obs_space = gym.spaces.Box(-np.inf, np.inf, (3,), np.float32)
    action_space = gym.spaces.Discrete(4) if discrete else gym.spaces.Box(-1, 1, (2,), np.float32)
    policies = [MLPActorCritic(obs_space, action_space, hidden_sizes=(5, 4), log_std_init=-0.3 * i)
                for i in range(2)]
    policy = StackedMLPActorCritic(policies)
    with torch.no_grad():  # away from the zero-bias, orthogonal start
        for leaf in policy.leaves:
            leaf.add_(0.3 * torch.randn_like(leaf))
    obs = torch.randn(2, 7, 3)
    mask = torch.ones(2, 7, 1, dtype=torch.bool)
    mask[1, 5:] = False  # padding the KL's mean leaves out
    actions = torch.zeros(2, 7, dtype=torch.long) if discrete else torch.zeros(2, 7, 2)
    old = policy.evaluate(obs, actions).distribution.detach()
    batch = RolloutBatch(obs=obs, actions=actions, log_probs=None, values=None, advantages=None, returns=None,
                         mask=mask, extras={})
    product = kl_hessian_product(policy, batch, old)

    leaves = policy.leaves_of(policy.actor_names)
    kl = masked_mean(old.kl(policy.evaluate(obs, actions).distribution).reshape(mask.shape), mask, RUN)  # (S,)
    grad_kl = policy.flat(torch.autograd.grad(kl.sum(), leaves, create_graph=True))  # (S, P)
    size = grad_kl.shape[1]
    hessian = torch.stack([policy.flat(torch.autograd.grad(grad_kl[:, j].sum(), leaves, retain_graph=True))
                           for j in range(size)], dim=2)  # (S, P, P): run s's columns in its own row
    v = torch.randn(2, size)
    assert torch.allclose(product(v), torch.einsum("spq,sq->sp", hessian, v), atol=1e-5, rtol=1e-4)
    only_first = torch.stack([v[0], torch.zeros(size)])
    assert torch.equal(product(only_first)[1], torch.zeros(size))


def test_the_stacked_policy_gives_the_same_numbers_for_any_layout_of_its_observations():
    """A resumed batch's first observation comes from its checkpoint, contiguous; a stepped one came
    column-major from the CartPole stack. MKL's batched matmul rounds the two layouts differently, which
    made a resumed batch one ulp off its uninterrupted twin: both must give the same numbers. (4 copies
    a run, as in SMALL: at 8 and more this CPU's MKL happens to round both layouts alike.)"""
    import gymnasium as gym
    import numpy as np

    from agents.mlp import MLPActorCritic
    from agents.stacked_mlp import StackedMLPActorCritic

    space = gym.spaces.Box(-np.inf, np.inf, (4,), np.float32)
    torch.manual_seed(0)
    policy = StackedMLPActorCritic([MLPActorCritic(space, gym.spaces.Discrete(2)) for _ in range(2)])
    obs = torch.randn(2, 4, 4)
    column_major = obs.reshape(8, 4).T.contiguous().T.reshape(2, 4, 4)
    assert not column_major.is_contiguous() and torch.equal(obs, column_major)
    assert torch.equal(policy.value(obs), policy.value(column_major))
    assert torch.equal(policy.evaluate(obs, torch.zeros(2, 4, dtype=torch.long)).distribution.log_probs,
                       policy.evaluate(column_major, torch.zeros(2, 4, dtype=torch.long)).distribution.log_probs)


def test_a_run_whose_loss_turns_non_finite_stops_alone(tmp_path, monkeypatch):
    """Seed 1 starts from a NaN weight: its losses are NaN from the first update, so it stops there with
    no checkpoint written, while seeds 0 and 2 train on to the single-run trainer's numbers."""
    import ppo_core.build as builder  # run_seeds imports build_trainer from it when called
    from ppo_core.errors import NonFiniteError

    real = builder.build_trainer

    def poisoned(config, run_dir):
        trainer = real(config, run_dir)
        if config.seed == 1:
            with torch.no_grad():
                trainer.policy.actor.layers[0].weight[0, 0] = float("nan")
        return trainer

    monkeypatch.setattr(builder, "build_trainer", poisoned)
    overrides = (*SMALL, "checkpoint_every=256")
    with pytest.raises(NonFiniteError, match=r"seed_1: non-finite .*no checkpoint had been written yet"):
        run_training(make_config(*overrides, "seeds=[0,1,2]"), tmp_path / "batch")
    assert not (tmp_path / "batch" / "seed_1" / "checkpoint.pt").exists()
    monkeypatch.setattr(builder, "build_trainer", real)
    for seed in (0, 2):
        trainer, summary = reference(overrides, seed, tmp_path)
        written = json.loads((tmp_path / "batch" / f"seed_{seed}" / "summary.json").read_text())
        assert_run_matches(checkpoint.load(tmp_path / "batch" / f"seed_{seed}" / "checkpoint.pt"), trainer, written,
                           summary)


@pytest.mark.parametrize("env", ["cartpole", "pendulum"])
def test_a_batchs_evaluations_played_together_match_each_run_evaluated_alone(tmp_path, env):
    """Three runs' evaluations played as one (the stacked policies acting for all of them, the CartPoles
    stepped as one array) against each run's own ``RunEvaluator``: the same episodes, returns and
    lengths, and each eval env stepped as far as its own evaluation steps it, and no further."""
    from agents.stacked_mlp import StackedMLPActorCritic
    from envs.stacked import env_stepper
    from ppo_core.batched_evaluation import evaluate_runs

    overrides = (*ENVS[env], "eval_episodes=4", "agent.gsde=false") if env == "pendulum" else \
        (*ENVS[env], "eval_episodes=4")
    alone, together = ([build_trainer(make_config(*overrides, f"seed={s}"), tmp_path / f"{k}_{s}") for s in range(3)]
                       for k in ("alone", "together"))
    expected = [trainer.evaluate(2) for trainer in alone]
    evaluators = [trainer.evaluate for trainer in together]
    envs = [e.eval_env for e in evaluators]
    stacked = StackedMLPActorCritic([trainer.policy for trainer in together])
    got = [e.report(r) for e, r in zip(evaluators, evaluate_runs(stacked, envs, [e.prepare(2) for e in evaluators],
                                                                  env_stepper(envs)))]
    if env == "cartpole":  # Pendulum's episodes all last 200 steps
        assert len({g["mean_length"] for g in got}) > 1  # the runs' episodes end at different steps
    for ours, theirs, a, b in zip(got, expected, alone, together):
        assert ours == pytest.approx(theirs, rel=1e-5)
        assert b.evaluate.eval_env.steps == a.evaluate.eval_env.steps
