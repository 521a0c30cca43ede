"""LoRA policies (peft): one copy of π_SFT serves as the frozen reference (adapters off) and as the
policy's base; rollouts score like updates; training moves only the adapters and the value head; the
saved policy (merged or adapters) computes what the trained one does. Gradient checkpointing gives
the gradients of the plain backward pass."""

from __future__ import annotations

import logging

import pytest
import torch

from ppo_core.align.lora import save_policy
from ppo_core.align.models import load_causal_lm
from ppo_core.build import build_trainer
from tests.test_text_bandit import L, artifacts, text_config  # noqa: F401  (fixture)

LORA = ("agent.lora_r=4", "agent.lora_alpha=8")


def perturb_adapters(model, seed=0):
    """LoRA's B starts at zero (policy = base); give it values so the two differ."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.copy_(0.5 * torch.randn(parameter.shape, generator=generator))


@torch.no_grad()
def test_the_reference_is_the_base_model_with_the_adapters_off(artifacts, tmp_path):
    trainer = build_trainer(text_config(artifacts, *LORA), tmp_path / "run")
    policy, env = trainer.policy, trainer.env
    assert policy.model is env.reward.reference  # one copy of the weights
    perturb_adapters(policy.model)
    base, _ = load_causal_lm(str(artifacts / "sft"))
    obs = env.reset(seed=0)
    step = policy.act(obs)
    result = env.step(policy.env_action(step))
    for i in range(env.num_envs):
        prompt = obs["input_ids"][i][obs["attention_mask"][i].bool()]
        completion = step.action[i][step.mask[i]]
        logits = base(input_ids=torch.cat([prompt, completion])[None]).logits[0, len(prompt) - 1: -1]
        expected = torch.log_softmax(logits, -1).gather(-1, completion[:, None]).squeeze(-1)
        torch.testing.assert_close(result.info["ref_log_prob"][i][step.mask[i]], expected, atol=1e-5, rtol=1e-5)
        assert not torch.allclose(step.log_prob[i][step.mask[i]], expected, atol=1e-3)  # the policy is adapted
    evaluation = policy.evaluate(obs, step.action)  # the first minibatch: ratio 1
    torch.testing.assert_close(evaluation.log_prob, step.log_prob, atol=1e-5, rtol=1e-5)


def test_training_moves_only_the_adapters_and_the_value_head(artifacts, tmp_path):
    trainer = build_trainer(text_config(artifacts, *LORA, "total_timesteps=16", "algo.learning_rate=1e-2"),
                            tmp_path / "run")
    before = {name: p.detach().clone() for name, p in trainer.policy.named_parameters()}
    trainer.train()
    changed = {name for name, p in trainer.policy.named_parameters() if not torch.equal(p, before[name])}
    assert changed and all("lora_" in name or name.startswith("value_head.") for name in changed), changed
    assert any("lora_A" in name for name in changed) and any("lora_B" in name for name in changed)
    assert all(p.requires_grad == ("lora_" in n) for n, p in trainer.policy.model.named_parameters())


@pytest.mark.parametrize("mode", ["merged", "adapters"])
@torch.no_grad()
def test_the_saved_policy_computes_the_trained_one(artifacts, tmp_path, mode):
    from peft import PeftModel

    trainer = build_trainer(text_config(artifacts, *LORA), tmp_path / "run")
    perturb_adapters(trainer.policy.model, seed=1)
    path = save_policy(trainer.policy, str(tmp_path / "policy"), trainer.env.tokenizer, mode)
    if mode == "merged":
        saved, _ = load_causal_lm(path)
    else:
        base, _ = load_causal_lm(str(artifacts / "sft"))
        saved = PeftModel.from_pretrained(base, path).eval()
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    torch.testing.assert_close(saved(input_ids=ids).logits, trainer.policy.model(input_ids=ids).logits,
                               atol=1e-5, rtol=1e-5)


def test_lora_refuses_a_policy_start_other_than_the_reference(artifacts, tmp_path):
    from ppo_core.errors import ConfigError

    with pytest.raises(ConfigError, match=r"agent.lora_r=4 puts adapters on π_SFT, the KL reference"):
        build_trainer(text_config(artifacts, *LORA, f"agent.model_path={tmp_path}"), tmp_path / "run")


def test_lora_refuses_a_separate_critic(artifacts, tmp_path):
    from ppo_core.errors import ConfigError

    with pytest.raises(ConfigError, match=r"agent.lora_r=4 with agent.critic=separate"):
        build_trainer(text_config(artifacts, *LORA, "agent.critic=separate"), tmp_path / "run")


def test_gradient_checkpointing_recomputes_and_gives_the_same_gradients(artifacts, tmp_path):
    grads, forwards = {}, {}
    for checkpointing in (False, True):
        trainer = build_trainer(text_config(artifacts, f"agent.gradient_checkpointing={checkpointing}"),
                                tmp_path / f"run{checkpointing}")
        policy, env = trainer.policy, trainer.env
        obs = env.reset(seed=0)
        step = policy.act(obs)
        calls = []
        block = policy.model.base_model.h[0].attn  # called from inside the checkpointed block
        hook = block.register_forward_hook(lambda *args: calls.append(1))
        evaluation = policy.evaluate(obs, step.action)
        (evaluation.log_prob.sum() + evaluation.value.sum()).backward()
        hook.remove()
        grads[checkpointing] = [p.grad.clone() for p in policy.parameters() if p.grad is not None]
        forwards[checkpointing] = len(calls)
    assert forwards == {False: 1, True: 2}  # the block ran again in the backward pass
    for plain, recomputed in zip(grads[False], grads[True], strict=True):
        torch.testing.assert_close(recomputed, plain, atol=1e-6, rtol=1e-5)


def test_bf16_is_ignored_on_the_cpu_with_a_warning(artifacts, tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        trainer = build_trainer(text_config(artifacts, "agent.mixed_precision=bf16"), tmp_path / "run")
    assert trainer.policy.autocast_dtype is None
    assert "agent.mixed_precision=bf16 is ignored on cpu" in caplog.text


def test_a_lora_run_resumes_to_the_uninterrupted_runs_parameters(artifacts, tmp_path):
    """Three LoRA trainers in one process (each puts fresh adapters on a fresh π_SFT): the resumed run
    ends where the uninterrupted one does."""
    from tests.test_trainer import assert_same_parameters, train_until_first_checkpoint

    overrides = (*LORA, "total_timesteps=32", "checkpoint_every=16", "algo.learning_rate=1e-2")
    full = build_trainer(text_config(artifacts, *overrides), tmp_path / "full")
    full.train()
    train_until_first_checkpoint(text_config(artifacts, *overrides), tmp_path / "half")
    resumed = build_trainer(text_config(artifacts, *overrides, f"resume={tmp_path / 'half' / 'checkpoint.pt'}"),
                            tmp_path / "half")
    assert resumed.policy.model is resumed.env.reward.reference and resumed.policy.model is not full.policy.model
    resumed.train()
    assert_same_parameters(full.policy.state_dict(), resumed.policy.state_dict())
