"""Bring your own model, data and reward: local Hugging Face policies and one-label reward classifiers
(with the policy's tokenizer or their own), Python reward functions, and SFT / reward-model / prompt
data files in TRL's formats, each checked against what the user's own objects compute."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from agents.lm import LMActorCritic
from envs.text_rewards import Completions, FunctionReward, RetokenizedScorer, TokenScorer
from ppo_core.align.config import compose_align_config
from ppo_core.align.errors import AlignError
from ppo_core.align.models import load_causal_lm
from ppo_core.align.rl_build import make_text_env
from ppo_core.align.stages import run_stage
from ppo_core.errors import ConfigError
from tests import byo_fixtures as byo
from tests.conftest import make_config

L = 6
BETA = 0.1
SEEN: dict[str, list] = {}


def keyword_reward(prompts, completions, topic, level, **kwargs):
    """A reward function as a user writes one: 1 when the completion names the row's topic, plus its level."""
    SEEN["topic"], SEEN["prompts"] = list(topic), list(prompts)
    return [float(t in c) + 0.25 * lv for c, t, lv in zip(completions, topic, level)]


def length_reward(prompts, completions, **kwargs):
    return torch.tensor([float(len(c.split())) for c in completions])


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return byo.write_models(tmp_path_factory.mktemp("byo_models"))


@pytest.fixture(scope="module")
def prompts_file(tmp_path_factory):
    return byo.write_jsonl(tmp_path_factory.mktemp("byo_prompts") / "prompts.jsonl", byo.prompt_rows())


def env_and_policy(models, prompts_file, policy="gpt2", *overrides):
    config = make_config("env=text_bandit", "agent=lm", f"env.sft_path={models[policy]}",
                         f"env.prompts={prompts_file}", f"env.eval_prompts={prompts_file}", f"env.max_new_tokens={L}",
                         f"objective.kl_coef={BETA}", *overrides)
    env = make_text_env(config.env, config.objective, torch.device("cpu"), config.env.prompts, "env.prompts", 4,
                        shuffle=False, gold=False, training=False)
    model, tokenizer = load_causal_lm(str(models[policy]))
    policy = LMActorCritic(model, tokenizer.pad_token_id, tokenizer.eos_token_id, L)
    return env, policy


@torch.no_grad()
def one_step(env, policy):
    obs = env.reset(seed=0)
    step = policy.act(obs)
    return obs, step, env.step(policy.env_action(step))


def texts_of(env, obs, step):
    prompts = [env.prompts.texts[i] for i in obs["prompt_index"].tolist()]
    completions = [env.tokenizer.decode(row[keep], skip_special_tokens=True) for row, keep in zip(step.action, step.mask)]
    return prompts, completions


@torch.no_grad()
def reference_log_prob(env, obs, step, i):
    """log π_SFT of row i's completion from one fresh forward of the reference on the unpadded sequence."""
    prompt = obs["input_ids"][i][obs["attention_mask"][i].bool()]
    completion = step.action[i][step.mask[i]]
    ids = torch.cat([prompt, completion])[None]
    logits = env.reward.reference(input_ids=ids).logits[0, len(prompt) - 1: -1]
    return torch.log_softmax(logits, -1).gather(-1, completion[:, None]).sum()


@pytest.mark.parametrize("rm, policy", [("rm_same", "gpt2"), ("rm_other", "gpt2"), ("rm_other", "llama")])
def test_the_reward_is_the_classifiers_own_logits_minus_beta_kl(models, prompts_file, rm, policy):
    """The env's reward equals the user's classifier's .logits on prompt + completion text, tokenized by
    the classifier's own tokenizer (or the policy's ids unchanged when they share one), minus β·Σ log-ratio."""
    env, actor = env_and_policy(models, prompts_file, policy, f"env.reward={models[rm]}")
    name = models[rm].name
    scorer = env.reward.rewards.sources[name][0]
    assert isinstance(scorer, TokenScorer if rm == "rm_same" else RetokenizedScorer)
    obs, step, result = one_step(env, actor)
    plain = AutoModelForSequenceClassification.from_pretrained(models[rm]).eval()
    tokenizer = AutoTokenizer.from_pretrained(models[rm])
    for i, (prompt, completion) in enumerate(zip(*texts_of(env, obs, step))):
        if rm == "rm_same":  # the sampled ids themselves, as a TRL reward model reads a policy's output
            ids = torch.cat([obs["input_ids"][i][obs["attention_mask"][i].bool()], step.action[i][step.mask[i]]])[None]
        else:
            ids = tokenizer(prompt + completion, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            logit = plain(input_ids=ids).logits[0, 0]
        torch.testing.assert_close(result.info["source_scores"][name][i], logit, atol=1e-4, rtol=1e-4)
        log_ratio = step.log_prob[i].sum() - reference_log_prob(env, obs, step, i)
        expected = logit - result.info["penalty"][i] - BETA * log_ratio
        torch.testing.assert_close(result.reward[i], expected, atol=1e-4, rtol=1e-4)


def test_a_reward_function_gets_the_rows_columns_and_is_weighted(models, prompts_file):
    module = __name__
    env, actor = env_and_policy(models, prompts_file, "gpt2",
                                f"env.reward=[{models['rm_same']},{module}:keyword_reward,{module}:length_reward]",
                                "env.reward_weights=[1.0,0.5,-2.0]")
    obs, step, result = one_step(env, actor)
    prompts, completions = texts_of(env, obs, step)
    rows = byo.prompt_rows()
    topics = [rows[i]["topic"] for i in obs["prompt_index"].tolist()]
    assert SEEN["topic"] == topics and SEEN["prompts"] == prompts
    named = result.info["source_scores"]
    expected_keyword = [float(t in c) + 0.25 * rows[i]["level"]
                        for c, t, i in zip(completions, topics, obs["prompt_index"].tolist())]
    torch.testing.assert_close(named["keyword_reward"], torch.tensor(expected_keyword))
    torch.testing.assert_close(named["length_reward"], torch.tensor([float(len(c.split())) for c in completions]))
    combined = named[models["rm_same"].name] + 0.5 * named["keyword_reward"] - 2.0 * named["length_reward"]
    torch.testing.assert_close(result.info["scores"], combined)
    metrics = env.pop_metrics()
    assert metrics["reward/keyword_reward"] == pytest.approx(sum(expected_keyword) / 4)


def batch_of(n=3):
    tokens = torch.full((n, 2), 5)
    return Completions(torch.ones(n, 1, dtype=torch.long), torch.ones(n, 1), tokens, torch.ones(n, 2),
                       torch.arange(n), ["a", "b", "c"][:n], _Decoder())


class _Decoder:
    def batch_decode(self, rows, skip_special_tokens=True):
        return ["x y"] * len(rows)


@pytest.mark.parametrize("returned, message", [
    ([1.0, 2.0], r"reward function bad returned 2 values for 3 completions"),
    ([1.0, "high", 2.0], r"reward function bad returned 'high' \(str\) for completion 1; expected a real number"),
    ([1.0, None, 2.0], r"returned None \(NoneType\) for completion 1"),
    (torch.ones(3, 2), r"returned a tensor of shape \(3, 2\)"),
    (0.5, r"returned a float; expected a list, NumPy array or tensor of 3 numbers"),
])
def test_a_bad_reward_function_result_names_the_function_and_row(returned, message):
    reward = FunctionReward(lambda prompts, completions: returned, "bad")
    with pytest.raises(ConfigError, match=message):
        reward(batch_of())


def test_a_non_finite_function_reward_gets_the_documented_penalty(models, prompts_file, caplog):
    import numpy as np

    reward = FunctionReward(lambda prompts, completions: np.array([1.0, math.nan, 2.0]), "nan_reward")
    assert torch.isnan(reward(batch_of())[1])
    assert "reward function nan_reward returned nan for completion 1" in caplog.text
    env, actor = env_and_policy(models, prompts_file, "gpt2", f"env.reward={__name__}:length_reward")
    env.reward.rewards.sources["length_reward"] = (FunctionReward(lambda prompts, completions: [math.inf] * 4, "inf"),
                                                   1.0)
    _, _, result = one_step(env, actor)
    assert result.info["nonfinite"].all()
    torch.testing.assert_close(result.info["scores"], torch.full((4,), -env.reward.nonfinite_penalty))


@pytest.mark.parametrize("reward, weights, message", [
    ("no_such_module_xyz:fn", "[]", r"env.reward='no_such_module_xyz:fn': no module named 'no_such_module_xyz'"),
    (f"{__name__}:missing", "[]", rf"module '{__name__}' has no attribute 'missing'"),
    (f"{__name__}:BETA", "[]", r"has a non-callable float 'BETA'"),
    ("oracle", "[]", r"env.reward='oracle' is none of rm, gold, module:function or a reward-model directory"),
    ("gold", "[]", r"env.reward=gold needs prompts with a gold labeler"),
    (f"{__name__}:length_reward", "[1.0,2.0]", r"env.reward_weights=\[1.0, 2.0\] has 2 weights for 1 reward sources"),
])
def test_a_bad_reward_setting_is_named(models, prompts_file, reward, weights, message):
    with pytest.raises(ConfigError, match=message):
        env_and_policy(models, prompts_file, "gpt2", f"env.reward={reward}", f"env.reward_weights={weights}")


@torch.no_grad()
def test_a_reward_model_scores_the_same_through_its_own_tokenizer(models):
    """Canonically tokenised completions ending with EOS: the re-tokenising path (text, then the
    reward model's EOS after a finished completion) gives the scores of the token-id path."""
    from agents.reward_model import RewardModel

    rm = RewardModel.from_pretrained(str(models["rm_same"]))
    tokenizer = AutoTokenizer.from_pretrained(models["rm_same"])
    texts = [byo.prompt(i) for i in range(4)]
    prompts = [tokenizer(t)["input_ids"] for t in texts]
    completions = [tokenizer(byo.completion(i))["input_ids"] + ([tokenizer.eos_token_id] if i % 2 else [])
                   for i in range(4)]  # two ended with EOS, two cut off
    from envs.text_encoding import pad_sequences

    prompt_ids, prompt_mask = pad_sequences(prompts, tokenizer.pad_token_id, "left")
    tokens, mask = pad_sequences(completions, tokenizer.pad_token_id, "right")
    batch = Completions(prompt_ids, prompt_mask, tokens, mask.bool(), torch.arange(4), texts, tokenizer)
    by_ids = TokenScorer(rm.score)(batch)
    by_text = RetokenizedScorer(rm.score, tokenizer, byo.CONTEXT)(batch)
    torch.testing.assert_close(by_text, by_ids, atol=1e-5, rtol=1e-5)


def refuse(*args, **kwargs):
    raise ZeroDivisionError("no answer")


def two_arguments(prompts, completions):
    return [0.0] * len(completions)


@pytest.mark.parametrize("spec, message", [
    (f"{__name__}:two_arguments", r"reward function .*:two_arguments cannot be called as fn\(prompts, completions, "
                                  r"topic=, level=\).*give it a \*\*kwargs parameter"),
    (f"{__name__}:refuse", r"reward function .*:refuse raised ZeroDivisionError: no answer \(at .*test_bring_your_own.py"),
])
def test_a_reward_function_that_cannot_take_the_columns_or_raises_is_named(models, prompts_file, spec, message):
    with pytest.raises(ConfigError, match=message):
        env, actor = env_and_policy(models, prompts_file, "gpt2", f"env.reward={spec}")
        one_step(env, actor)


def test_a_reward_module_that_fails_on_import_is_named(models, prompts_file, tmp_path, monkeypatch):
    (tmp_path / "broken_rewards.py").write_text("def f(prompts, completions):\n    return [\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError, match=r"env.reward='broken_rewards:f': importing 'broken_rewards' raised SyntaxError"):
        env_and_policy(models, prompts_file, "gpt2", "env.reward=broken_rewards:f")


def test_a_causal_lm_is_not_taken_for_a_reward_model(models, prompts_file):
    with pytest.raises(ConfigError, match=r"holds a GPT2LMHeadModel model, not a reward model"):
        env_and_policy(models, prompts_file, "gpt2", f"env.reward={models['gpt2']}")


# ----------------------------------------------------------------------------- data files


def align(tmp_path, models, *overrides):
    return compose_align_config(["size=tiny", f"paths.root={tmp_path}", f"paths.base={models['gpt2']}",
                                 "sft.max_prompt_tokens=48", "sft.max_completion_tokens=24", "rm.max_prompt_tokens=48",
                                 *overrides])


WRITERS = {"jsonl": byo.write_jsonl, "parquet": byo.write_parquet, "csv": byo.write_csv}


@pytest.mark.parametrize("kind, fmt", [("pairs", "jsonl"), ("pairs", "parquet"), ("pairs", "csv"),
                                       ("messages", "jsonl"), ("messages", "parquet")])
def test_sft_trains_one_step_on_a_user_file(tmp_path, models, kind, fmt):
    path = WRITERS[fmt](tmp_path / f"sft.{fmt}", byo.sft_rows(kind))
    summary = run_stage(align(tmp_path, models, "stage=sft", f"sft.data={path}", "sft.batch_size=18",
                              "sft.val_fraction=0.1"))
    assert summary["steps"] == 1  # 18 train rows, 2 held out
    before, _ = load_causal_lm(str(models["gpt2"]))
    after, _ = load_causal_lm(str(tmp_path / "sft"))
    changed = [not torch.equal(a, b) for a, b in zip(before.parameters(), after.parameters())]
    assert summary["best_step"] in (0, 1) and (any(changed) == (summary["best_step"] == 1))


def test_messages_rows_train_on_the_chat_template_and_the_answer_only(tmp_path, models):
    from ppo_core.align import user_data

    tokenizer = AutoTokenizer.from_pretrained(models["gpt2"])
    path = byo.write_jsonl(tmp_path / "chat.jsonl", byo.sft_rows("messages"))
    prompt, answer = user_data.sft_pairs(str(path), "sft.data", tokenizer)[0]
    assert prompt == f"user: say {byo.sentence(0, 1)}\nassistant:" and answer == byo.sentence(0, 1)


@pytest.mark.parametrize("kind, fmt", [("pairs", "jsonl"), ("pairs", "parquet"), ("pairs", "csv"),
                                       ("kwise", "jsonl"), ("kwise", "parquet")])
def test_the_reward_model_trains_one_step_on_a_user_file(tmp_path, models, kind, fmt):
    import shutil

    shutil.copytree(models["gpt2"], tmp_path / "sft")
    path = WRITERS[fmt](tmp_path / f"rm.{fmt}", byo.rm_rows(kind))
    summary = run_stage(align(tmp_path, models, "stage=rm", f"rm.data={path}", "rm.batch_size=18",
                              "rm.val_fraction=0.1"))
    assert summary["steps"] == 1 and 0.0 <= summary["val"]["accuracy"] <= 1.0
    plain = AutoModelForSequenceClassification.from_pretrained(tmp_path / "rm")
    assert plain.config.num_labels == 1


BAD_SFT = [
    ([{"prompt": "p"}], r"row 1 column 'completion' is missing \(the row has 'prompt'\)"),
    ([{"prompt": "p", "completion": "c"}, {"prompt": "p", "completion": "  "}], r"row 2 column 'completion' is empty"),
    ([{"prompt": "p", "completion": 3}], r"row 1 column 'completion' is a int; expected a string"),
    ([{"messages": [{"role": "user", "content": "hi"}]}], r"row 1 column 'messages' ends with a 'user' message"),
    ([{"messages": [{"role": "assistant", "content": "hi"}]}], r"row 1 column 'messages' has no message before"),
    ([{"messages": "hello"}], r"row 1 column 'messages' is not a non-empty list of chat messages"),
]
BAD_RM = [
    ([{"prompt": "p", "chosen": "a"}], r"row 1 column 'rejected' is missing"),
    ([{"prompt": "p", "completions": ["a", "b", "c"], "ranking": [0, 2, 2]}],
     r"row 1 column 'ranking' is \[0, 2, 2\]; expected a permutation of 0..2"),
    ([{"prompt": "p", "completions": ["a"], "ranking": [0]}], r"row 1 column 'completions' holds 1; a ranking needs K >= 2"),
    ([{"prompt": "p", "completions": ["a", ""], "ranking": [0, 1]}], r"row 1 column 'completions\[1\]' is empty"),
    ([{"prompt": "", "chosen": "a", "rejected": "b"}], r"row 1 column 'prompt' is empty"),
]


@pytest.mark.parametrize("rows, message", BAD_SFT)
def test_bad_sft_data_names_the_file_row_and_column(tmp_path, models, rows, message):
    path = byo.write_jsonl(tmp_path / "bad.jsonl", rows * 3)
    with pytest.raises(AlignError, match=rf"sft.data='{path}': {message}"):
        run_stage(align(tmp_path, models, "stage=sft", f"sft.data={path}"))


@pytest.mark.parametrize("rows, message", BAD_RM)
def test_bad_reward_data_names_the_file_row_and_column(tmp_path, models, rows, message):
    import shutil

    shutil.copytree(models["gpt2"], tmp_path / "sft")
    path = byo.write_jsonl(tmp_path / "bad.jsonl", rows * 3)
    with pytest.raises(AlignError, match=rf"rm.data='{path}': {message}"):
        run_stage(align(tmp_path, models, "stage=rm", f"rm.data={path}"))


def test_chat_rows_need_a_chat_template(tmp_path, models):
    import shutil

    shutil.copytree(models["gpt2"], tmp_path / "base")
    (tmp_path / "base" / "chat_template.jinja").unlink(missing_ok=True)
    config = tmp_path / "base" / "tokenizer_config.json"
    import json

    settings = json.loads(config.read_text())
    settings.pop("chat_template", None)
    config.write_text(json.dumps(settings))
    path = byo.write_jsonl(tmp_path / "chat.jsonl", byo.sft_rows("messages"))
    with pytest.raises(AlignError, match=r"row 1 column 'messages' holds chat messages but the tokenizer has no chat"):
        run_stage(align(tmp_path, models, "stage=sft", f"sft.data={path}", f"paths.base={tmp_path / 'base'}"))


def test_too_long_rows_are_truncated_or_refused_as_configured(tmp_path, models, caplog):
    long_rows = [{"prompt": byo.prompt(i), "completion": " " + byo.sentence(i, 40)} for i in range(byo.ROWS)]
    path = byo.write_jsonl(tmp_path / "long.jsonl", long_rows)
    with pytest.raises(AlignError, match=rf"sft.data='{path}': row 1 column 'completion' has \d+ tokens, more than the 24"):
        run_stage(align(tmp_path, models, "stage=sft", f"sft.data={path}", "sft.overflow=error"))
    run_stage(align(tmp_path, models, "stage=sft", f"sft.data={path}", "sft.batch_size=18"))
    assert "and 18 completions (right, to 24 tokens)" in caplog.text  # the 18 train rows; 2 held out


def test_world_demonstrations_go_through_the_same_loader(tmp_path):
    """The embedded world writes its demonstrations as prompt/completion rows, and SFT reads those."""
    from ppo_core.align import user_data
    from ppo_core.align.world import load_world

    cfg = compose_align_config(["size=tiny", f"paths.root={tmp_path}", "stage=all_supervised", "pretrain.steps=2",
                                "rm.n_val_prompts=4"])
    run_stage(cfg)
    world = load_world(cfg.world)
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "sft")
    rows = user_data.sft_pairs(str(tmp_path / "sft" / "data" / "demonstrations_train.jsonl"), "sft.data", tokenizer)
    assert rows == world.demonstrations("train")
    rankings = user_data.rankings(str(tmp_path / "rm" / "data" / "rankings_validation.jsonl"), "rm.data", tokenizer)
    assert len(rankings) == 4 and all(len(r.completions) == cfg.rm.k for r in rankings)


# ----------------------------------------------------------------------------- end to end


def test_sft_then_rm_then_ppo_on_user_files(tmp_path, models):
    """A user with an HF policy dir and three jsonl files: SFT, then the RM, then PPO against that RM."""
    sft_file = byo.write_jsonl(tmp_path / "sft.jsonl", byo.sft_rows("pairs"))
    rm_file = byo.write_jsonl(tmp_path / "prefs.jsonl", byo.rm_rows("pairs"))
    prompts = byo.write_jsonl(tmp_path / "prompts.jsonl", byo.prompt_rows())
    run_stage(align(tmp_path, models, "stage=sft", f"sft.data={sft_file}"))
    run_stage(align(tmp_path, models, "stage=rm", f"rm.data={rm_file}"))
    summary = run_stage(align(tmp_path, models, "stage=rl", f"rl.prompts={prompts}",
                              f"rl.reward=[rm,{__name__}:keyword_reward]",
                              'rl.overrides=["env.max_new_tokens=6","env.num_envs=8","total_timesteps=16",'
                              f'"eval_episodes=4","eval_every=8","env.eval_prompts={prompts}"]'))
    assert summary["env_steps"] >= 16 and math.isfinite(summary["eval_mean_return"])
    policy, _ = load_causal_lm(str(tmp_path / "rl" / "policy"))
    assert policy.config.model_type == "gpt2"
