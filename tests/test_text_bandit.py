"""The text bandit: its reward is RM − β·KL to π_SFT, it passes gymnasium's checker, it handles long
prompts and bad scores as documented, and the CartPole trainer aligns a tiny LM through it."""

import logging
import os
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import pytest
import torch
from gymnasium.utils.env_checker import check_env

from agents.lm import Completion, LMActorCritic, completion_mask
from agents.reward_model import RewardModel
from envs.text_bandit import TextBanditVecEnv, TextReward, tokenize_prompts
from envs.text_rewards import Completions
from ppo_core.advantages import place_at_last_decision
from ppo_core.algorithms import make_algorithm, shuffled_minibatches
from ppo_core.build import build_trainer
from ppo_core.config import PPOConfig, TrainConfig
from ppo_core.errors import ConfigError
from ppo_core.losses import clipped_surrogate_loss
from ppo_core.trainer import Trainer
from tests.conftest import make_config
from tests.lm_fixtures import CONTEXT, EOS, PAD, make_lm, make_tokenizer, prompt_text, write_artifacts

BETA = 0.1
L = 6
TEXTS = [prompt_text(i, 1 + i % 4) for i in range(10)]



@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    return write_artifacts(tmp_path_factory.mktemp("text_artifacts"))


def parts(reward_model=None, **kwargs):
    tokenizer = make_tokenizer()
    reference = make_lm(0)
    rm = reward_model or RewardModel.from_causal_lm(make_lm(1)).eval()
    reward = TextReward(reference, rm.score if isinstance(rm, RewardModel) else rm, EOS, **{"kl_coef": BETA, **kwargs})
    return tokenizer, reference, rm, reward


def vec_env(num_envs=4, reward_model=None, **kwargs):
    tokenizer, reference, rm, reward = parts(reward_model, **kwargs)
    prompts = tokenize_prompts(TEXTS, tokenizer, CONTEXT - L)
    return TextBanditVecEnv(prompts, reward, tokenizer, num_envs, L), rm


def sequence_log_prob(model, prompt, completion, temperature=1.0):
    ids = torch.tensor([prompt + completion])
    logits = model(input_ids=ids).logits[0, len(prompt) - 1 : -1]
    return torch.log_softmax(logits / temperature, -1).gather(-1, torch.tensor(completion)[:, None]).sum()


@pytest.mark.parametrize("placement", ["reward", "loss"])
def test_reward_is_rm_minus_beta_kl_computed_independently(placement):
    env, rm = vec_env(placement=placement, estimator="k2" if placement == "loss" else "k1", temperature=0.8)
    policy = LMActorCritic(make_lm(2), PAD, EOS, max_new_tokens=L, temperature=0.8)
    obs = env.reset(seed=0)
    torch.manual_seed(0)
    step = policy.act(obs)
    step = step._replace(action=step.action.clone(), mask=step.mask.clone())
    step.action[0] = torch.tensor([7, 8, EOS, PAD, PAD, PAD])  # one completion that ends early
    step.mask[0] = torch.tensor([True, True, True, False, False, False])
    step = step._replace(log_prob=policy.evaluate(obs, step.action).log_prob.detach())
    result = env.step(policy.env_action(step))
    reference = make_lm(0)
    with torch.no_grad():
        for i in range(env.num_envs):
            prompt = obs["input_ids"][i][obs["attention_mask"][i].bool()].tolist()
            completion = step.action[i][step.mask[i]].tolist()
            score = rm.score(torch.tensor([prompt + completion]), torch.ones(1, len(prompt + completion), dtype=torch.long))
            kl = sequence_log_prob(policy.model, prompt, completion, 0.8) - sequence_log_prob(reference, prompt, completion, 0.8)
            penalty = 1.0 * (EOS not in completion)
            expected = score[0] - penalty - (BETA * kl if placement == "reward" else 0.0)
            torch.testing.assert_close(result.reward[i], expected, atol=1e-4, rtol=0)
            torch.testing.assert_close(result.info["kl_estimates"]["kl_k1"][i], kl, atol=1e-4, rtol=0)
    assert result.terminated.all() and not result.truncated.any() and result.valid.all()
    assert torch.equal(result.extras["ref_log_prob"], result.info["ref_log_prob"])
    assert result.info["per_token_kl"].shape == (env.num_envs, L)
    if placement == "loss":
        torch.testing.assert_close(result.extras["kl_coef"], torch.full((env.num_envs,), BETA))


def test_a_completion_ends_at_the_first_hole_in_its_mask():
    tokenizer, reference, rm, reward = parts()
    prompts = tokenize_prompts(TEXTS[:2], tokenizer, CONTEXT - L)
    tokens = torch.tensor([[5, 6, 7, 8, EOS, PAD], [9, 10, 11, 12, 13, 14]])
    holed = torch.tensor([[1, 1, 0, 1, 1, 0], [1, 0, 1, 1, 1, 1]], dtype=torch.bool)
    cut = torch.tensor([[1, 1, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0]], dtype=torch.bool)
    log_prob = torch.full((2, L), -2.0)
    got, _ = reward(Completions(prompts.input_ids, prompts.attention_mask, tokens, holed), log_prob)
    expected, _ = reward(Completions(prompts.input_ids, prompts.attention_mask, tokens, cut),
                         torch.where(cut, log_prob, 0.0))
    torch.testing.assert_close(got.reward, expected.reward)
    torch.testing.assert_close(got.kl, expected.kl)
    assert got.no_eos.tolist() == [True, True]  # the EOS after the hole does not count


def test_nonfinite_scores_and_unfinished_or_empty_completions_are_penalised():
    def bad_rm(ids, mask):
        return torch.tensor([float("nan"), float("inf"), 2.0, 3.0])

    env, _ = vec_env(reward_model=bad_rm, kl_coef=0.0, no_eos_penalty=1.0, empty_penalty=0.5, nonfinite_penalty=10.0)
    env.reset(seed=0)
    tokens = torch.tensor([[5, EOS, PAD, PAD, PAD, PAD], [5, 6, EOS, PAD, PAD, PAD],
                           [EOS, PAD, PAD, PAD, PAD, PAD], [5, 6, 7, 8, 9, 10]])
    mask = torch.tensor([[1, 1, 0, 0, 0, 0], [1, 1, 1, 0, 0, 0], [1, 0, 0, 0, 0, 0], [1] * 6], dtype=torch.bool)
    result = env.step({"tokens": tokens, "mask": mask, "log_prob": torch.zeros(4, L)})
    assert result.reward.tolist() == [-10.0, -10.0, 1.5, 2.0]
    assert result.info["nonfinite"].tolist() == [True, True, False, False]
    metrics = env.pop_metrics()
    assert metrics["nonfinite"] == 0.5 and metrics["empty"] == 0.25 and metrics["no_eos"] == 0.25


def test_single_step_env_passes_the_gymnasium_checker():
    tokenizer, _, _, reward = parts()
    prompts = tokenize_prompts(TEXTS, tokenizer, CONTEXT - L)
    env = gym.make("TextBandit-v0", prompts=prompts, reward=reward, tokenizer=tokenizer, max_new_tokens=L)
    check_env(env.unwrapped)
    obs, _ = env.reset(seed=3)
    action = env.action_space.sample()
    _, reward_value, terminated, truncated, info = env.step(action)
    assert terminated and not truncated and isinstance(reward_value, float)
    assert set(info) >= {"scores", "kl", "per_token_kl", "ref_log_prob", "nonfinite"}


def test_an_empty_prompt_is_an_error_naming_it():
    with pytest.raises(ConfigError, match=r"prompt 1 \(''\) has no tokens; every prompt needs at least one"):
        tokenize_prompts(["w5 w6", "", "w7"], make_tokenizer(), CONTEXT - L)


def test_a_prompt_too_long_for_the_context_is_an_error_or_cut_from_the_left(caplog):
    tokenizer = make_tokenizer()
    long = prompt_text(0, CONTEXT)
    with pytest.raises(ConfigError, match=rf"prompt 1 .* has {CONTEXT} tokens but only {CONTEXT - L} fit"):
        tokenize_prompts([TEXTS[0], long], tokenizer, CONTEXT - L)
    with caplog.at_level(logging.WARNING, logger="envs.text_bandit"):
        prompts = tokenize_prompts([TEXTS[0], long], tokenizer, CONTEXT - L, overflow="truncate")
    assert "truncated 1/2 prompts from the left" in caplog.text
    assert prompts.input_ids.shape == (2, CONTEXT - L)
    assert prompts.input_ids[1].tolist() == tokenizer(long)["input_ids"][L:]


def test_prompt_stream_is_seeded_and_resumes_from_its_state():
    env, _ = vec_env(num_envs=4)
    first = env.reset(seed=7)["prompt_index"]
    assert torch.equal(env.reset(seed=7)["prompt_index"], first)
    action = {"tokens": torch.full((4, L), 5), "mask": torch.ones(4, L, dtype=torch.bool), "log_prob": torch.zeros(4, L)}
    second = env.step(action).obs["prompt_index"]
    assert len(set(torch.cat([first, second]).tolist())) == 8  # without replacement within a pass over 10
    state = env.state_dict()
    following = [env.step(action).obs["prompt_index"] for _ in range(3)]
    env.load_state_dict(state)
    assert all(torch.equal(env.step(action).obs["prompt_index"], expected) for expected in following)
    stats = env.pop_episode_stats()  # the 4 episodes before the state plus the 3 · 4 replayed after it
    assert stats.count == stats.length_sum == 16


def test_missing_artifacts_tell_the_user_which_stage_to_run(tmp_path):
    config = make_config("env=text_bandit", "agent=lm", f"env.artifacts={tmp_path}", "device=cpu")
    with pytest.raises(ConfigError, match=r"run `python -m ppo_core.align stage=sft` first"):
        build_trainer(config, tmp_path / "run")


def text_config(artifacts, *overrides):
    return make_config("env=text_bandit", "agent=lm", f"env.artifacts={artifacts}", "device=cpu",
                       f"env.prompts={artifacts / 'prompts.jsonl'}", f"env.eval_prompts={artifacts / 'prompts.jsonl'}",
                       "env.num_envs=8", f"env.max_new_tokens={L}", "eval_episodes=4", "eval_every=0", *overrides)


@pytest.mark.parametrize("algo, critic", [("ppo", "head"), ("reinforce", "head"), ("trpo", "separate")])
def test_algorithms_train_the_lm_through_the_control_trainer(artifacts, tmp_path, algo, critic):
    config = text_config(artifacts, f"algo={algo}", f"agent.critic={critic}", "total_timesteps=24")
    trainer = build_trainer(config, tmp_path / "run")
    assert type(trainer) is Trainer
    before = [p.detach().clone() for p in trainer.policy.actor_parameters()]
    summary = trainer.train()
    assert trainer.iteration == 3 and summary["env_steps"] == 24
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.policy.actor_parameters()))
    assert {"mean_reward", "scores", "kl", "completion_length"} <= set(summary["eval_history"][-1])
    assert (tmp_path / "run" / "checkpoint.pt").exists()


def test_resume_restores_policy_and_prompt_stream(artifacts, tmp_path):
    trainer = build_trainer(text_config(artifacts, "total_timesteps=16"), tmp_path / "run")
    trainer.train()
    resumed = build_trainer(text_config(artifacts, "total_timesteps=16", f"resume={tmp_path / 'run' / 'checkpoint.pt'}"),
                            tmp_path / "run")
    assert torch.equal(resumed.env.order, trainer.env.order) and resumed.env.cursor == trainer.env.cursor
    for a, b in zip(resumed.policy.state_dict().values(), trainer.policy.state_dict().values()):
        assert torch.equal(a, b)


TARGET = 50  # never in a prompt (prompt words are ids 3..42)


def count_target(ids, mask):
    return ((ids == TARGET) & mask.bool()).sum(-1).float()  # (N,)


def test_ppo_raises_a_known_reward_while_the_kl_stays_bounded(tmp_path):
    """The reward model is a fixed function: the number of TARGET tokens in the completion."""
    torch.manual_seed(0)
    env, _ = vec_env(num_envs=16, reward_model=count_target, kl_coef=0.25, no_eos_penalty=0.0, empty_penalty=0.0)
    policy = LMActorCritic(make_lm(0), PAD, EOS, max_new_tokens=L)
    algo = PPOConfig(num_steps=1, gamma=1.0, gae_lambda=0.95, learning_rate=3e-3, update_epochs=4, num_minibatches=2,
                     ent_coef=0.0, anneal_lr=False, max_grad_norm=1.0)
    config = TrainConfig(algo=algo, env=None, agent=None, total_timesteps=16 * 40, eval_every=0, eval_episodes=0,
                         checkpoint_every=0, progress=False)
    trainer = Trainer(config, env, policy, make_algorithm(policy, algo), tmp_path)
    trainer.start(seed=0)
    scores, kls = [], []
    for _ in range(40):
        trainer.collect_rollout()
        next_value = policy.value(trainer.obs).detach()
        trainer.algorithm.update(trainer.compute_batch(next_value))
        metrics = env.pop_metrics()
        scores.append(metrics["scores"])
        kls.append(metrics["kl"])
    start, end = sum(scores[:5]) / 5, sum(scores[-5:]) / 5
    assert start < 0.3 and end > 1.0, scores
    # the KL-regularised optimum π* ∝ π_SFT·exp(r/β) has a sequence KL near 6 here; without the
    # penalty the policy heads for all-target completions, a KL near L·log(V) ≈ 28. Over seeds 0-3
    # the mean of the last 10 iterations lies between 6.9 and 9.7
    assert sum(kls[-10:]) / 10 < 12.0, kls


@pytest.mark.parametrize("trim", ["none", "minibatch", "pack"])
def test_a_text_update_sees_the_rollout_columns_and_starts_at_ratio_one(artifacts, tmp_path, trim):
    # seed 4 draws no prompt of the set's longest, and every completion is made to end by its 4th token
    config = text_config(artifacts, f"agent.trim_padding={trim}", "algo.num_steps=1", "env.num_envs=4", "seed=4")
    trainer = build_trainer(config, tmp_path / "run")
    sample = trainer.policy.sample

    def ending_early(obs, deterministic=False):
        tokens = sample(obs, deterministic).tokens.clone()
        tokens[:, 3], tokens[:, 4:] = EOS, PAD
        return Completion(tokens, completion_mask(tokens, EOS), torch.zeros(tokens.shape))

    trainer.policy.sample = ending_early
    batch = trainer.compute_batch(trainer.collect_rollout())
    prompt_mask, mask = trainer.buffer["obs"]["attention_mask"][0], trainer.buffer["mask"][0]  # (N, P), (N, L)
    width = prompt_mask.shape[1]
    first = next(c for c in range(width) if prompt_mask[:, c].any())
    end = max(c for c in range(L) if mask[:, c].any()) + 1
    assert first > 0 and end < L  # columns that no row uses, on both sides: each mode's forward skips them or not
    assert batch.obs["input_ids"].shape[1] == width and batch.actions.shape[1] == batch.mask.shape[1] == L
    assert torch.equal(batch.actions, trainer.buffer["actions"][0])
    assert torch.equal(batch.extras["ref_log_prob"], trainer.buffer["extras"]["ref_log_prob"][0])
    minibatch = next(shuffled_minibatches(batch, 2))
    with torch.no_grad():
        evaluation = trainer.policy.evaluate(minibatch.obs, minibatch.actions)
    _, stats = clipped_surrogate_loss(evaluation.log_prob, minibatch.log_probs, minibatch.advantages, 0.2,
                                      minibatch.mask)
    if trim != "none":  # the rollout and the minibatch pack or cut their rows differently: 1 up to summation order
        assert abs(stats["ratio"].item() - 1.0) < 1e-5 and stats["approx_kl"].item() < 1e-10
    else:
        assert stats["ratio"].item() == 1.0 and stats["approx_kl"].item() == 0.0


def test_rollouts_of_several_steps_are_scored_and_updated_at_full_width(artifacts, tmp_path):
    config = text_config(artifacts, "agent.trim_padding=none", "algo.num_steps=2", "env.num_envs=4")
    trainer = build_trainer(config, tmp_path / "run")
    batch = trainer.compute_batch(trainer.collect_rollout())
    assert batch.obs["input_ids"].shape == trainer.buffer["obs"]["input_ids"].flatten(0, 1).shape
    assert batch.mask.shape[1] == L
    with torch.no_grad():
        evaluation = trainer.policy.evaluate(batch.obs, batch.actions)
    assert torch.equal(evaluation.log_prob, batch.log_probs)  # both steps' rows: ratio exactly 1


def test_unknown_trim_padding_is_a_config_error(artifacts, tmp_path):
    with pytest.raises(ConfigError, match=r"agent.trim_padding='often' is invalid; expected one of pack, minibatch, none"):
        build_trainer(text_config(artifacts, "agent.trim_padding=often"), tmp_path / "run")


def short_context_lm(positions: int):
    from transformers import GPT2Config, GPT2LMHeadModel

    from tests.lm_fixtures import VOCAB

    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config(n_layer=1, n_head=2, n_embd=16, vocab_size=VOCAB, n_positions=positions,
                                      bos_token_id=EOS, eos_token_id=EOS, pad_token_id=PAD))


def test_every_model_must_hold_the_prompts_and_completions(artifacts, tmp_path):
    """The context is checked against each model that reads a prompt and its completion, not only
    π_SFT: a shorter one would fail deep inside its position embedding (a device assert on CUDA)."""
    RewardModel.from_causal_lm(short_context_lm(L)).save_pretrained(str(tmp_path / "rm"), make_tokenizer())
    with pytest.raises(ConfigError, match=rf"env.max_new_tokens={L} leaves no room for a prompt in the context of "
                                          rf"{L} tokens \(the shorter of π_SFT's and the reward model's\)"):
        build_trainer(text_config(artifacts, f"env.rm_path={tmp_path / 'rm'}"), tmp_path / "run")
    short_context_lm(L + 2).save_pretrained(tmp_path / "policy")
    make_tokenizer().save_pretrained(tmp_path / "policy")
    with pytest.raises(ConfigError, match=rf"agent.model_path: the model's context of {L + 2} tokens is shorter "
                                          r"than the env's prompts and completions \(\d+ tokens\)"):
        build_trainer(text_config(artifacts, f"agent.model_path={tmp_path / 'policy'}"), tmp_path / "run2")


def test_train_cli_runs_end_to_end(artifacts, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    args = [sys.executable, "-m", "ppo_core.train", "env=text_bandit", "agent=lm", "algo=ppo", "progress=false",
            f"env.artifacts={artifacts}", f"env.prompts={artifacts / 'prompts.jsonl'}",
            f"env.eval_prompts={artifacts / 'prompts.jsonl'}", "env.num_envs=4", f"env.max_new_tokens={L}",
            "total_timesteps=8", "eval_episodes=2", "device=cpu", "hydra.run.dir=run"]
    result = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "run" / "checkpoint.pt").exists() and (tmp_path / "run" / "summary.json").exists()


@pytest.mark.parametrize("lines, expected", [
    (['{"prompt": "w5 w6"}', '{"prompt": "w7"', ""], r"line 2 is not JSON \(Expecting ',' delimiter"),
    (['{"prompt": "w5 w6"}', "", '["w7"]'], r"line 3 is a JSON list, expected an object"),
    (['{"prompt": "w5"}', '{"text": "w7"}'], r"row 2 column 'prompt' is missing \(the row has 'text'\)"),
    (['{"prompt": 7}'], r"row 1 column 'prompt' is a int; expected a string"),
    (['{"prompt": "w5"}', '{"prompt": " "}'], r"row 2 column 'prompt' is empty"),
    (["", "  "], r"holds no rows"),
])
def test_a_bad_prompts_file_names_the_file_and_row(artifacts, tmp_path, lines, expected):
    path = tmp_path / "prompts.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError, match=rf"env.prompts='{path}'.*{expected}"):
        build_trainer(text_config(artifacts, f"env.prompts={path}"), tmp_path / "run")


def test_a_prompts_file_that_is_not_text_is_named(artifacts, tmp_path):
    path = tmp_path / "prompts.jsonl"
    path.write_bytes(b'{"prompt": "w5"}\n\xff\xfe\x00binary')
    with pytest.raises(ConfigError, match=rf"env.prompts='{path}' is not UTF-8 text"):
        build_trainer(text_config(artifacts, f"env.prompts={path}"), tmp_path / "run")


def test_a_sigkilled_text_run_resumes_to_identical_parameters(artifacts, tmp_path):
    """Killed with SIGKILL after its first checkpoint, resumed in a new process: the same policy, value
    head and KL controller as a run never interrupted (prompt stream, RNGs and β restored)."""
    from ppo_core import checkpoint
    from tests.test_trainer import assert_same_parameters, full_killed_and_resumed

    total = 8 * 24
    args = [sys.executable, "-m", "ppo_core.train", "env=text_bandit", "agent=lm", "device=cpu", "progress=false",
            f"env.artifacts={artifacts}", f"env.prompts={artifacts / 'prompts.jsonl'}", "env.num_envs=8",
            f"env.max_new_tokens={L}", "objective.kl_coef_target=1.0", f"total_timesteps={total}",
            "checkpoint_every=64", "eval_every=0", "eval_episodes=0"]
    full_path, ckpt, killed_at = full_killed_and_resumed(args, tmp_path)
    assert killed_at < total, "the run finished before it could be killed"
    full, resumed = checkpoint.load(full_path), checkpoint.load(ckpt)
    assert resumed["global_step"] == full["global_step"] == total
    assert_same_parameters(full["model"], resumed["model"])
    assert full["env"]["kl_controller"] == resumed["env"]["kl_controller"] != {"coef": 0.05}  # β adapted, alike


@pytest.mark.parametrize("damaged, expected", [
    ("sft/model.safetensors", r"env.sft_path: cannot load a causal LM from .*/sft.: Error while deserializing header"),
    ("rm/model.safetensors", r"env.rm_path=.* is not a loadable reward model: .*(deserializ|header)"),
])
def test_a_truncated_model_file_is_one_line_naming_the_directory(artifacts, tmp_path, damaged, expected):
    import shutil

    copy = tmp_path / "artifacts"
    shutil.copytree(artifacts, copy)
    data = (copy / damaged).read_bytes()
    (copy / damaged).write_bytes(data[: len(data) // 2])
    with pytest.raises(ConfigError, match=expected) as error:
        build_trainer(text_config(copy, f"env.prompts={copy / 'prompts.jsonl'}",
                                  f"env.eval_prompts={copy / 'prompts.jsonl'}"), tmp_path / "run")
    assert "\n" not in str(error.value)


def test_k_samples_per_prompt_answer_the_same_prompt_side_by_side():
    tokenizer, _, _, reward = parts()
    env = TextBanditVecEnv(tokenize_prompts(TEXTS, tokenizer, CONTEXT - L), reward, tokenizer, 8, L, samples_per_prompt=4)
    assert env.start_groups.tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    obs = env.reset(seed=3)
    action = {"tokens": torch.full((8, L), 5), "mask": torch.ones(8, L, dtype=torch.bool), "log_prob": torch.zeros(8, L)}
    seen = []
    for _ in range(5):  # 2 prompts a step: one pass over the 10 prompts
        index = obs["prompt_index"].tolist()
        for group in (range(0, 4), range(4, 8)):
            assert len({index[i] for i in group}) == 1
            for i in group:
                assert torch.equal(obs["input_ids"][i], env.prompts.input_ids[index[group[0]]])
                assert torch.equal(obs["attention_mask"][i], env.prompts.attention_mask[index[group[0]]])
        seen += [index[0], index[4]]
        obs = env.step(action).obs
    assert sorted(seen) == list(range(10))  # without replacement within a pass, as with one sample each
    with pytest.raises(ConfigError, match=r"env.num_envs=6 is not a multiple of env.samples_per_prompt=4"):
        TextBanditVecEnv(tokenize_prompts(TEXTS, tokenizer, CONTEXT - L), reward, tokenizer, 6, L, samples_per_prompt=4)


@pytest.mark.parametrize("algo, advantage, extra", [
    ("ppo", "leave_one_out", ()), ("reinforce", "group_mean", ("algo.group_std=true",)),
    ("trpo", "leave_one_out", ("agent.critic=separate",)),
])
def test_a_group_baseline_trains_every_algorithm_on_each_prompts_other_completions(artifacts, tmp_path, algo, advantage,
                                                                                    extra):
    config = text_config(artifacts, f"algo={algo}", f"algo.advantage={advantage}", "env.samples_per_prompt=4",
                         "total_timesteps=16", *extra)
    trainer = build_trainer(config, tmp_path / "run")
    batch = trainer.compute_batch(trainer.collect_rollout())
    rewards, mask, index = trainer.buffer["rewards"][0], trainer.buffer["mask"][0], trainer.buffer["obs"]["prompt_index"][0]
    for i in range(8):
        group = [j for j in range(8) if j // 4 == i // 4]
        assert len({int(index[j]) for j in group}) == 1
        others = [float(rewards[j]) for j in group if j != i]
        if advantage == "leave_one_out":
            expected = float(rewards[i]) - sum(others) / 3
        else:
            values = [float(rewards[j]) for j in group]
            mean = sum(values) / 4
            expected = (float(rewards[i]) - mean) / ((sum((v - mean) ** 2 for v in values) / 3) ** 0.5 + 1e-4)
        torch.testing.assert_close(batch.advantages[i], torch.where(mask[i], expected, 0.0), atol=1e-5, rtol=1e-5)
    before = [p.detach().clone() for p in trainer.policy.actor_parameters()]
    trainer.train()
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.policy.actor_parameters()))


def test_a_group_baseline_without_several_samples_per_prompt_is_a_config_error(artifacts, tmp_path):
    with pytest.raises(ConfigError, match=r"algo.advantage=group_mean compares the completions of one prompt: set "
                                          r"env.samples_per_prompt to 2 or more \(got 1\)"):
        build_trainer(text_config(artifacts, "algo.advantage=group_mean"), tmp_path / "run")
    with pytest.raises(ConfigError, match=r"algo.advantage='leave_one_out' is invalid; expected gae with "
                                          r"algo.baseline=false"):
        build_trainer(text_config(artifacts, "algo=reinforce", "algo.baseline=false", "algo.advantage=leave_one_out",
                                  "env.samples_per_prompt=2"), tmp_path / "run")


def step_with(placement):
    """One step of the same completions (seed 0) under a KL placement: obs, policy step, result, rm, policy."""
    env, rm = vec_env(placement=placement, temperature=0.8)
    policy = LMActorCritic(make_lm(2), PAD, EOS, max_new_tokens=L, temperature=0.8)
    obs = env.reset(seed=0)
    torch.manual_seed(0)
    step = policy.act(obs)
    return obs, step, env.step(policy.env_action(step)), rm, policy


def test_per_token_kl_rewards_sit_at_their_own_tokens_and_sum_to_the_summed_reward():
    """placement=token_reward: −β·(log π − log π_SFT) of token l at l, the score less penalties at the
    last token, by hand from the models; their sum is placement=reward's reward for the same completions."""
    obs, step, result, rm, policy = step_with("token_reward")
    spread = result.extras["decision_rewards"]  # (N, L)
    reference = make_lm(0)
    with torch.no_grad():
        for i in range(len(spread)):
            prompt = obs["input_ids"][i][obs["attention_mask"][i].bool()].tolist()
            completion = step.action[i][step.mask[i]].tolist()
            ids = torch.tensor([prompt + completion])
            taken = torch.tensor(completion)[:, None]
            log_pi, log_ref = (torch.log_softmax(m(input_ids=ids).logits[0, len(prompt) - 1 : -1] / 0.8, -1)
                               .gather(-1, taken).squeeze(-1) for m in (policy.model, reference))
            expected = torch.zeros(L)
            expected[: len(completion)] = -BETA * (log_pi - log_ref)
            expected[len(completion) - 1] += rm.score(ids, torch.ones_like(ids))[0] - 1.0 * (EOS not in completion)
            torch.testing.assert_close(spread[i], expected, atol=1e-4, rtol=0)
    torch.testing.assert_close(spread.sum(-1), result.reward, atol=1e-5, rtol=0)
    _, summed_step, summed, _, _ = step_with("reward")
    assert torch.equal(summed_step.action, step.action) and "decision_rewards" not in summed.extras
    torch.testing.assert_close(result.reward, summed.reward)


def naive_token_gae(rewards, values, gamma, lam):
    """GAE over one completion's tokens, the episode ending after the last: plain floats, backwards."""
    advantages, running, next_value = [0.0] * len(rewards), 0.0, 0.0
    for l in reversed(range(len(rewards))):
        delta = rewards[l] + gamma * next_value - values[l]
        running = delta + gamma * lam * running
        advantages[l], next_value = running, values[l]
    return advantages


def test_the_trainer_runs_gae_over_the_per_token_rewards(artifacts, tmp_path):
    make_lm(2).save_pretrained(tmp_path / "policy")  # not π_SFT, so that every token's KL is nonzero
    make_tokenizer().save_pretrained(tmp_path / "policy")
    config = text_config(artifacts, "objective.kl_placement=token_reward", "algo.num_steps=1", "algo.gamma=0.9",
                         "algo.gae_lambda=0.8", "total_timesteps=16", f"agent.model_path={tmp_path / 'policy'}")
    trainer = build_trainer(config, tmp_path / "run")
    batch = trainer.compute_batch(trainer.collect_rollout())
    spread = trainer.buffer["extras"]["decision_rewards"][0]  # (N, L)
    values, mask = trainer.buffer["values"][0], trainer.buffer["mask"][0]
    assert not torch.equal(spread, place_at_last_decision(trainer.buffer["rewards"], trainer.buffer["mask"])[0])
    for i in range(8):
        n = int(mask[i].sum())
        expected = naive_token_gae(spread[i, :n].tolist(), values[i, :n].tolist(), 0.9, 0.8)
        torch.testing.assert_close(batch.advantages[i, :n], torch.tensor(expected), atol=1e-5, rtol=1e-5)
        assert not batch.advantages[i, n:].any()
    trainer.train()
