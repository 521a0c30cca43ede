"""The LM actor-critic: sampling and training score tokens with one function, left padding changes
nothing, masks end at the first EOS, and the critic options partition the parameters."""

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from agents.lm import Completion, LMActorCritic, completion_mask, token_log_probs, used_columns
from agents.reward_model import RewardModel
from ppo_core.align.data import pad_sequences
from ppo_core.losses import approx_kl
from tests.lm_fixtures import EOS, PAD, make_lm

PROMPTS = [[5, 6, 7, 8, 9, 10], [11, 12], [13, 14, 15], [16]]
TEMPERATURE = 0.7



def left_padded(prompts=PROMPTS):
    ids, mask = pad_sequences(prompts, PAD, side="left")
    return {"input_ids": ids, "attention_mask": mask, "prompt_index": torch.arange(len(prompts))}


def policy(**kwargs) -> LMActorCritic:
    options = dict(max_new_tokens=10, temperature=TEMPERATURE) | kwargs
    return LMActorCritic(make_lm(0), PAD, EOS, **options)


def unpadded_log_probs(model, prompt: list[int], completion: torch.Tensor, temperature: float) -> torch.Tensor:
    """log π(y_l | x, y_<l) from a plain forward over one unpadded sequence with default positions."""
    ids = torch.tensor([prompt + completion.tolist()])
    logits = model(input_ids=ids).logits[0, len(prompt) - 1 : -1]  # (L, V)
    return torch.log_softmax(logits / temperature, -1).gather(-1, completion[:, None]).squeeze(-1)


def test_rollout_log_probs_equal_a_fresh_forward_pass():
    torch.manual_seed(0)
    pi, obs = policy(), left_padded()
    sampled = pi.sample(obs)
    with torch.no_grad():
        fresh = pi.evaluate(obs, sampled.tokens).log_prob  # (N, L)
        for i, prompt in enumerate(PROMPTS):
            keep = sampled.mask[i]
            alone = unpadded_log_probs(pi.model, prompt, sampled.tokens[i][keep], TEMPERATURE)
            torch.testing.assert_close(sampled.log_prob[i][keep], alone, atol=1e-5, rtol=0)
    torch.testing.assert_close(sampled.log_prob, fresh, atol=1e-5, rtol=0)
    assert (sampled.log_prob[~sampled.mask] == 0).all()


def test_act_then_evaluate_gives_ratio_exactly_one():
    torch.manual_seed(1)
    pi, obs = policy(), left_padded()
    step = pi.act(obs)
    with torch.no_grad():
        evaluation = pi.evaluate(obs, step.action)
    log_ratio = evaluation.log_prob - step.log_prob
    assert torch.equal(log_ratio.exp()[step.mask], torch.ones(int(step.mask.sum())))
    assert approx_kl(log_ratio, step.mask).item() == 0.0
    assert torch.equal(evaluation.value, step.value)
    assert step.action.shape == step.log_prob.shape == step.value.shape == step.mask.shape == (len(PROMPTS), 10)
    assert evaluation.distribution.log_probs.shape == (len(PROMPTS), 10, 100)


def test_left_padding_changes_neither_logits_nor_values():
    pi = policy()
    completion = torch.tensor([[20, 21, 22, EOS, PAD]] * len(PROMPTS))
    with torch.no_grad():
        batch = pi.evaluate(left_padded(), completion)
        for i, prompt in enumerate(PROMPTS):
            alone = pi.evaluate(left_padded([prompt]), completion[i : i + 1])
            torch.testing.assert_close(batch.distribution.log_probs[i], alone.distribution.log_probs[0], atol=1e-5, rtol=0)
            torch.testing.assert_close(batch.value[i], alone.value[0], atol=1e-5, rtol=0)
            plain = pi.model(input_ids=torch.tensor([prompt])).logits[0, -1]  # no padding, default positions
            torch.testing.assert_close(batch.distribution.log_probs[i, 0], token_log_probs(plain, TEMPERATURE),
                                       atol=1e-5, rtol=0)


def test_used_columns_against_a_column_by_column_scan():
    torch.manual_seed(3)
    for _ in range(20):
        prompt_mask = torch.rand(5, 9) < 0.3
        mask = torch.rand(5, 7) < 0.3
        first = next((c for c in range(9) if prompt_mask[:, c].any()), 0)
        end = next((c + 1 for c in reversed(range(7)) if mask[:, c].any()), 7)
        assert used_columns(prompt_mask, mask) == (first, end)


@pytest.mark.parametrize("mode", ["minibatch", "pack"])
def test_trimmed_forward_matches_the_full_forward_on_valid_tokens(mode):
    torch.manual_seed(4)
    wide = {key: torch.nn.functional.pad(value, (5, 0)) for key, value in left_padded().items() if key != "prompt_index"}
    completion = torch.tensor([[20, 21, EOS, PAD, PAD, PAD], [22, EOS, PAD, PAD, PAD, PAD],
                               [23, 24, 25, EOS, PAD, PAD], [EOS, PAD, PAD, PAD, PAD, PAD]])  # 2 unused columns
    full, trimmed = policy(trim_padding="none"), policy(trim_padding=mode)
    trimmed.load_state_dict(full.state_dict())
    torch.nn.init.normal_(full.value_head.weight), trimmed.value_head.load_state_dict(full.value_head.state_dict())
    with torch.no_grad():
        expected, got = full.evaluate(wide, completion), trimmed.evaluate(wide, completion)
    mask = completion_mask(completion, EOS)
    assert got.log_prob.shape == got.value.shape == (4, 6) and got.distribution.log_probs.shape == (4, 6, 100)
    torch.testing.assert_close(got.log_prob, expected.log_prob, atol=1e-5, rtol=0)
    torch.testing.assert_close(got.value[mask], expected.value[mask], atol=1e-5, rtol=0)
    torch.testing.assert_close(got.distribution.log_probs[mask], expected.distribution.log_probs[mask], atol=1e-5, rtol=0)
    assert (got.distribution.log_probs[:, 4:] == 0).all() and (got.value[:, 4:] == 0).all()


def rollout_of_uneven_prompts(trim: str, seed: int = 5):
    """A policy in ``trim`` mode and its step on 16 prompts padded 4 columns wider than their longest,
    with completions of 12 tokens that all end (EOS) by the 9th, so both cuts have columns to drop."""
    torch.manual_seed(seed)
    pi = policy(max_new_tokens=12, trim_padding=trim)
    torch.nn.init.normal_(pi.value_head.weight)
    obs = left_padded(PROMPTS * 4)
    obs = {**obs, "input_ids": torch.nn.functional.pad(obs["input_ids"], (4, 0), value=PAD),
           "attention_mask": torch.nn.functional.pad(obs["attention_mask"], (4, 0))}
    tokens = torch.randint(3, 100, (16, 12))
    ends = torch.cat([torch.tensor([8]), torch.randint(0, 9, (15,))])  # EOS columns, the last at 8
    tokens[torch.arange(16), ends] = EOS
    tokens[torch.arange(12) > ends[:, None]] = PAD
    mask = completion_mask(tokens, EOS)
    pi.sample = lambda obs, deterministic=False: Completion(tokens, mask, torch.zeros(16, 12))  # act scores these
    return pi, obs, pi.act(obs)


@pytest.mark.parametrize("trim", ["none", "minibatch"])
def test_minibatches_of_a_rollout_start_at_ratio_one(trim):
    """At full width the minibatch forward is the rollout's scoring forward: ratio exactly 1; cut to
    each batch's own columns, it is 1 up to summation order."""
    pi, obs, step = rollout_of_uneven_prompts(trim)
    reference = policy(max_new_tokens=12, trim_padding="none")  # full width, no cut anywhere
    reference.load_state_dict(pi.state_dict())
    with torch.no_grad():
        full = reference.evaluate(obs, step.action)
        for rows in torch.randperm(len(step.action)).view(4, -1):
            minibatch_obs = {key: value[rows] for key, value in obs.items()}
            evaluation = pi.evaluate(minibatch_obs, step.action[rows])
            assert evaluation.log_prob.shape == (len(rows), 12)
            if trim == "none":
                assert torch.equal(evaluation.log_prob, step.log_prob[rows])  # ratio exactly 1
                assert torch.equal(evaluation.value, step.value[rows])
            torch.testing.assert_close(evaluation.log_prob, step.log_prob[rows], atol=1e-5, rtol=0)
            torch.testing.assert_close(evaluation.log_prob, full.log_prob[rows], atol=1e-5, rtol=0)
    assert (step.log_prob[:, 9:] == 0).all() and not step.mask[:, 9:].any()


def test_packed_minibatches_start_at_ratio_one_up_to_summation_order():
    pi, obs, step = rollout_of_uneven_prompts("pack")
    with torch.no_grad():
        for rows in torch.randperm(len(step.action)).view(4, -1):
            minibatch_obs = {key: value[rows] for key, value in obs.items()}
            evaluation = pi.evaluate(minibatch_obs, step.action[rows])
            log_ratio = evaluation.log_prob - step.log_prob[rows]
            torch.testing.assert_close(log_ratio, torch.zeros_like(log_ratio), atol=1e-5, rtol=0)
            torch.testing.assert_close(evaluation.value, step.value[rows], atol=1e-5, rtol=0)
            assert approx_kl(log_ratio, step.mask[rows]).item() < 1e-10


def test_packing_refuses_a_model_whose_logits_are_not_its_output_embedding():
    model = make_lm(0)
    other = torch.nn.Linear(32, 100, bias=False)  # not the head the model's own forward uses
    model.get_output_embeddings = lambda: other
    with pytest.raises(ValueError, match=r"trim_padding='pack': the policy's packed forward differs .* use 'minibatch'"):
        LMActorCritic(model, PAD, EOS, max_new_tokens=4, trim_padding="pack")
    LMActorCritic(make_lm(0), PAD, EOS, max_new_tokens=4, trim_padding="pack")  # its own head passes


def test_unknown_trim_mode_is_an_error_naming_it():
    with pytest.raises(ValueError, match=r"trim_padding='sometimes' is unknown; expected one of \('pack'"):
        policy(trim_padding="sometimes")


def test_value_is_the_first_decision_value():
    pi = policy(critic="separate")
    torch.nn.init.normal_(pi.value_head.weight)
    obs = left_padded()
    with torch.no_grad():
        step = pi.act(obs)
        torch.testing.assert_close(pi.value(obs), step.value[:, 0], atol=1e-5, rtol=0)


def tiny_llama() -> LlamaForCausalLM:
    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                                        num_key_value_heads=2, vocab_size=100, max_position_embeddings=64,
                                        bos_token_id=EOS, eos_token_id=EOS, pad_token_id=PAD))


@pytest.mark.parametrize("critic", ["head", "separate"])
@pytest.mark.parametrize("trim", ["none", "minibatch", "pack"])
@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_decision_values_equal_the_values_of_a_full_evaluation(family, trim, critic):
    model = make_lm(0) if family == "gpt2" else tiny_llama()
    pi = LMActorCritic(model, PAD, EOS, max_new_tokens=6, temperature=TEMPERATURE, critic=critic, trim_padding=trim)
    torch.nn.init.normal_(pi.value_head.weight)
    completion = torch.tensor([[20, 21, EOS, PAD, PAD, PAD], [22, EOS, PAD, PAD, PAD, PAD],
                               [23, 24, 25, EOS, PAD, PAD], [EOS, PAD, PAD, PAD, PAD, PAD]])
    with torch.no_grad():
        expected, got = pi.evaluate(left_padded(), completion).value, pi.decision_values(left_padded(), completion)
    assert got.shape == expected.shape == (4, 6)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def test_mask_covers_tokens_up_to_the_first_eos():
    tokens = torch.tensor([[5, EOS, 7, EOS], [5, 6, 7, 8], [EOS, 3, 3, 3]])
    assert completion_mask(tokens, EOS).tolist() == [[True, True, False, False], [True] * 4, [True, False, False, False]]
    torch.manual_seed(0)
    pi = policy(max_new_tokens=16, temperature=3.0)  # flat distributions: some completions end early
    sampled = pi.sample(left_padded(PROMPTS * 16))
    ended = (sampled.tokens == EOS).any(-1)
    assert ended.any() and not ended.all()
    first_eos = torch.where(sampled.tokens == EOS, torch.arange(16), 16).amin(-1)  # (N,)
    after = torch.arange(16) > first_eos[:, None]
    assert (sampled.tokens[after] == PAD).all()
    assert torch.equal(sampled.mask, ~after)


def test_pad_equal_to_eos_is_an_error_naming_both():
    with pytest.raises(ValueError, match=r"pad_token_id \(1\).*eos_token_id \(1\)"):
        LMActorCritic(make_lm(0), pad_token_id=EOS, eos_token_id=EOS, max_new_tokens=4)


def test_greedy_sampling_is_deterministic():
    pi, obs = policy(), left_padded()
    first, second = pi.sample(obs, deterministic=True), pi.sample(obs, deterministic=True)
    assert torch.equal(first.tokens, second.tokens)


def test_critic_head_and_separate_partition_the_parameters():
    head = policy()
    actor, critic = set(map(id, head.actor_parameters())), set(map(id, head.critic_parameters()))
    assert critic == set(map(id, head.value_head.parameters()))
    assert not actor & critic and actor | critic == set(map(id, head.parameters()))
    separate = policy(critic="separate")
    actor, critic = set(map(id, separate.actor_parameters())), set(map(id, separate.critic_parameters()))
    assert not actor & critic and actor | critic == set(map(id, separate.parameters()))
    head.train()
    assert not head.model.training  # dropout stays off in updates


@pytest.mark.parametrize("scale", [1.0, 3.0])
def test_value_function_initialised_from_the_reward_model(scale):
    rm = RewardModel.from_causal_lm(make_lm(1)).eval()
    rm.offset, rm.scale = 0.5, scale
    obs = left_padded()
    with torch.no_grad():
        expected = rm.score(obs["input_ids"], obs["attention_mask"])  # RM read at the last prompt token
        pi = policy(critic="separate", value_init=rm)
        torch.testing.assert_close(pi.value(obs), expected, atol=1e-5, rtol=0)
