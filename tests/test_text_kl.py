"""KL treatments of the text bandit and PPO-ptx, against direct computations: every estimator the env
logs, the forward direction, the KL as a loss term (value and expected gradient), the adaptive β and
the pretraining gradient mixed into the update."""

import pytest
import torch

from agents.lm import LMActorCritic
from ppo_core.algorithms import make_algorithm
from ppo_core.align.objective_terms import PretrainingLoss, ReferenceKLLoss
from ppo_core.build import build_trainer
from ppo_core.buffer import RolloutBatch
from ppo_core.config import PPOConfig
from ppo_core.errors import ConfigError
from ppo_core.kl import check_kl_treatment
from envs.text_bandit import TextBanditVecEnv, tokenize_prompts
from envs.text_rewards import GoldReward, RewardSet
from tests.lm_fixtures import CONTEXT, EOS, PAD, make_lm
from tests.test_text_bandit import BETA, L, TEXTS, artifacts, parts, text_config, vec_env  # noqa: F401  (fixture)

T = 0.8


def full_log_probs(model, prompt, completion):
    """log π(·|x, y_<l) at temperature T for one unpadded sequence: (len(completion), V)."""
    ids = torch.tensor([prompt + completion])
    logits = model(input_ids=ids).logits[0, len(prompt) - 1 : -1]
    return torch.log_softmax(logits / T, -1)


def rollout_step(env, policy, seed=0):
    obs = env.reset(seed=seed)
    torch.manual_seed(seed)
    step = policy.act(obs)
    return obs, step, env.step(policy.env_action(step))


def unpadded(obs, step, i):
    prompt = obs["input_ids"][i][obs["attention_mask"][i].bool()].tolist()
    return prompt, step.action[i][step.mask[i]].tolist()


@torch.no_grad()
def test_env_logs_every_estimator_and_the_exact_kl_in_both_directions():
    env, _ = vec_env(temperature=T)
    policy = LMActorCritic(make_lm(2), PAD, EOS, max_new_tokens=L, temperature=T)
    obs, step, result = rollout_step(env, policy)
    reference = make_lm(0)
    for i in range(env.num_envs):
        prompt, completion = unpadded(obs, step, i)
        log_pi, log_ref = full_log_probs(policy.model, prompt, completion), full_log_probs(reference, prompt, completion)
        taken = torch.tensor(completion)[:, None]
        log_r = (log_ref.gather(-1, taken) - log_pi.gather(-1, taken)).squeeze(-1)  # log π_SFT/π of the samples
        expected = {
            "kl_k1": (-log_r).sum(),
            "kl_k2": (0.5 * log_r**2).sum(),
            "kl_k3": (log_r.exp() - 1 - log_r).sum(),
            "kl_exact": (log_pi.exp() * (log_pi - log_ref)).sum(),
            "kl_exact_forward": (log_ref.exp() * (log_ref - log_pi)).sum(),
        }
        for name, value in expected.items():
            torch.testing.assert_close(result.info["kl_estimates"][name][i], value, atol=1e-4, rtol=0)
    metrics = env.pop_metrics()
    assert {"kl", "kl_k1", "kl_k2", "kl_k3", "kl_exact", "kl_exact_forward", "beta"} <= set(metrics)
    assert metrics["kl_k2"] >= 0 and metrics["kl_k3"] >= 0 and metrics["kl_exact"] >= 0 and metrics["beta"] == BETA


@pytest.mark.parametrize("estimator, direction", [("k2", "reverse"), ("k3", "reverse"), ("exact", "reverse"),
                                                  ("exact", "forward")])
def test_a_kl_reward_with_a_biased_gradient_is_a_config_error(artifacts, tmp_path, estimator, direction):
    config = text_config(artifacts, f"objective.kl_estimator={estimator}", f"objective.kl_direction={direction}")
    with pytest.raises(ConfigError, match=f"objective.kl_estimator='{estimator}', objective.kl_direction='{direction}', "
                                          "objective.kl_placement='reward': as a reward, .*use .*placement=loss"):
        build_trainer(config, tmp_path / "run")
    with pytest.raises(ValueError, match="as a reward"):
        vec_env(temperature=T, estimator=estimator, direction=direction)


def test_kl_treatments_that_do_not_measure_what_they_say_are_refused(artifacts, tmp_path):
    with pytest.raises(ValueError, match="the forward KL\\(π_ref‖π\\) has no unbiased per-sample reward"):
        check_kl_treatment("k1", "forward", "reward")
    for estimator, direction in [("k1", "reverse"), ("k3", "reverse"), ("k2", "forward"), ("k1", "forward")]:
        with pytest.raises(ValueError, match="does not follow the gradient"):
            check_kl_treatment(estimator, direction, "loss")
    config = text_config(artifacts, "objective.kl_placement=loss", "objective.kl_estimator=k1")
    with pytest.raises(ConfigError, match="objective.kl_estimator='k1'.*objective.kl_placement='loss'"):
        build_trainer(config, tmp_path / "run")
    with pytest.raises(ConfigError, match="objective.kl_estimator='k5'"):
        build_trainer(text_config(artifacts, "objective.kl_estimator=k5"), tmp_path / "run")


@pytest.mark.parametrize("estimator, direction, placement", [("exact", "reverse", "loss"), ("k3", "forward", "loss")])
def test_kl_that_sums_over_the_vocabulary_asks_for_the_policy_distributions(estimator, direction, placement):
    """The single gymnasium env's own action space carries tokens, no distributions: the exact KL and
    the forward KL(π_SFT‖π) cannot be computed from it, and the step says so."""
    from agents.reward_model import RewardModel
    from envs.text_bandit import TextBanditEnv, TextReward
    from tests.lm_fixtures import make_tokenizer

    tokenizer = make_tokenizer()
    prompts = tokenize_prompts(["w5 w6 w7", "w8 w9"], tokenizer, CONTEXT // 2)
    reward = TextReward(make_lm(0), RewardModel.from_causal_lm(make_lm(1)).score, EOS, 1.0, BETA,
                        estimator, direction, placement)
    env = TextBanditEnv(prompts, reward, tokenizer, L)
    env.reset(seed=0)
    env.action_space.seed(0)
    with pytest.raises(ValueError, match=f"objective.kl_estimator={estimator} with objective.kl_direction={direction} needs the "
                                         r"policy's full distributions \(action\['log_probs'\]\)"):
        env.step(env.action_space.sample())


def grad_of(fn, x):
    x = x.detach().clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(fn(x), x)
    return grad


@pytest.mark.parametrize("estimator, direction", [("k2", "reverse"), ("k3", "forward")])
def test_loss_estimators_follow_the_gradient_of_their_direction_exactly(estimator, direction):
    """E_{x~π}[∇ k(x)] computed exactly by summing over the support, against ∇ of the exact KL."""
    torch.manual_seed(0)
    logits, ref = torch.randn(7), torch.log_softmax(torch.randn(7), -1)
    support = torch.arange(7)

    def expected_gradient_objective(z):
        log_pi = torch.log_softmax(z, -1)
        weights = log_pi.exp().detach()  # samples come from π; the estimator is differentiated through log π
        kl = {"k2": 0.5 * (ref - log_pi) ** 2, "k3": torch.expm1(ref - log_pi) - (ref - log_pi)}[estimator]
        return (weights * kl[support]).sum()

    def exact(z):
        log_pi = torch.log_softmax(z, -1)
        if direction == "reverse":
            return (log_pi.exp() * (log_pi - ref)).sum()
        return (ref.exp() * (ref - log_pi)).sum()

    torch.testing.assert_close(grad_of(expected_gradient_objective, logits), grad_of(exact, logits))


def text_batch(obs, step, result, advantages=None):
    n = len(step.action)
    advantages = torch.zeros(n, L) if advantages is None else advantages
    return RolloutBatch(obs=obs, actions=step.action, log_probs=step.log_prob, values=step.value, mask=step.mask,
                        advantages=advantages, returns=torch.zeros(n, L), extras=result.extras)


def test_exact_kl_loss_value_and_gradient_against_torch_distributions():
    env, _ = vec_env(temperature=T, placement="loss", estimator="exact")
    policy = LMActorCritic(make_lm(2), PAD, EOS, max_new_tokens=L, temperature=T)
    obs, step, result = rollout_step(env, policy)
    assert result.extras["ref_log_probs"].shape == (env.num_envs, L, 100)
    batch = text_batch(obs, step, result)
    evaluation = policy.evaluate(obs, step.action)
    loss, stats = ReferenceKLLoss("exact", "reverse")(evaluation, batch)
    (grad,) = torch.autograd.grad(loss, policy.model.lm_head.weight)

    reference = make_lm(0)
    total, count = 0.0, 0
    for i in range(env.num_envs):
        prompt, completion = unpadded(obs, step, i)
        ids = torch.tensor([prompt + completion])
        pi = torch.distributions.Categorical(logits=policy.model(input_ids=ids).logits[0, len(prompt) - 1 : -1] / T)
        with torch.no_grad():
            ref = torch.distributions.Categorical(logits=reference(input_ids=ids).logits[0, len(prompt) - 1 : -1] / T)
        total = total + torch.distributions.kl_divergence(pi, ref).sum()
        count += len(completion)
    expected = BETA * total / count
    (expected_grad,) = torch.autograd.grad(expected, policy.model.lm_head.weight)
    torch.testing.assert_close(loss, expected, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(grad, expected_grad, atol=1e-6, rtol=1e-3)
    torch.testing.assert_close(stats["ref_kl"], total.detach() / count, atol=1e-5, rtol=1e-4)


def test_k3_loss_for_the_forward_kl_is_beta_times_the_mean_sampled_k3():
    """KL(π_SFT‖π) in the loss with k3: β · mean over completion tokens of (r − 1) − log r, r = π_SFT/π
    of the sampled token, by hand from the two models (its expected gradient is ∇KL(π_SFT‖π), see
    test_loss_estimators_follow_the_gradient_of_their_direction_exactly)."""
    env, _ = vec_env(temperature=T, placement="loss", estimator="k3", direction="forward")
    policy = LMActorCritic(make_lm(2), PAD, EOS, max_new_tokens=L, temperature=T)
    obs, step, result = rollout_step(env, policy)
    loss, _ = ReferenceKLLoss("k3", "forward")(policy.evaluate(obs, step.action), text_batch(obs, step, result))
    reference, total, count = make_lm(0), 0.0, 0
    for i in range(env.num_envs):
        prompt, completion = unpadded(obs, step, i)
        taken = torch.tensor(completion)[:, None]
        with torch.no_grad():
            log_r = (full_log_probs(reference, prompt, completion).gather(-1, taken)
                     - full_log_probs(policy.model, prompt, completion).gather(-1, taken))
        total, count = total + (log_r.exp() - 1 - log_r).sum(), count + len(completion)
    torch.testing.assert_close(loss.detach(), BETA * total / count, atol=1e-5, rtol=1e-4)


def test_adaptive_beta_follows_the_controller_and_is_checkpointed():
    env, _ = vec_env(temperature=T, kl_coef_target=0.5, kl_horizon=100.0)
    policy = LMActorCritic(make_lm(2), PAD, EOS, max_new_tokens=L, temperature=T)
    obs, step, result = rollout_step(env, policy)
    error = min(max(result.info["kl"].mean().item() / 0.5 - 1, -0.2), 0.2)
    assert env.reward.kl_coef == pytest.approx(BETA * (1 + error * env.num_envs / 100.0))
    state = env.state_dict()
    env.step(policy.env_action(step))
    assert env.reward.kl_coef != state["kl_controller"]["coef"]
    env.load_state_dict(state)
    assert env.reward.kl_coef == state["kl_controller"]["coef"]


def test_ppo_ptx_adds_gamma_times_the_pretraining_gradient(tmp_path):
    """One PPO step without and with the ptx term on the same batch and the same pretraining draw: the
    gradients differ by exactly γ·∇NLL of the drawn blocks."""
    env, _ = vec_env(temperature=T)
    blocks = torch.randint(3, 100, (5, 12))
    gamma = 2.5
    grads = {}
    for coef in (0.0, gamma):
        policy = LMActorCritic(make_lm(2), PAD, EOS, max_new_tokens=L, temperature=T)
        obs, step, result = rollout_step(env, policy)
        batch = text_batch(obs, step, result, torch.randn(env.num_envs, L, generator=torch.Generator().manual_seed(1)))
        terms = [PretrainingLoss(policy.model, blocks, coef, batch_size=3)] if coef else []
        algo = make_algorithm(policy, PPOConfig(update_epochs=1, num_minibatches=1, max_grad_norm=0.0), terms)
        optimizer = algo.optimizers["policy"]
        optimizer.step = lambda: grads.setdefault(coef, [p.grad.clone() for p in policy.model.parameters()])
        torch.manual_seed(5)
        algo.update(batch)
        if coef:
            drawn = terms[0].batch
    nll_model = make_lm(2)
    nll = torch.nn.functional.cross_entropy(nll_model(input_ids=drawn).logits[:, :-1].flatten(0, 1),
                                            drawn[:, 1:].flatten())
    expected = torch.autograd.grad(gamma * nll, list(nll_model.parameters()), allow_unused=True)
    for with_ptx, without, ptx in zip(grads[gamma], grads[0.0], expected):
        torch.testing.assert_close(with_ptx - without, ptx if ptx is not None else torch.zeros_like(without),
                                   atol=1e-5, rtol=1e-4)
    torch.manual_seed(5)
    assert torch.equal(drawn, blocks[torch.randint(5, (3,))])  # drawn with the global RNG


def test_kl_in_the_loss_and_ptx_train_through_the_control_trainer(artifacts, tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("".join(f"w{3 + i % 90} w{4 + i % 80} w{5 + i % 70} w{6 + i % 60}\n" for i in range(200)))
    config = text_config(artifacts, "algo=ppo", "total_timesteps=16", "objective.kl_placement=loss",
                         "objective.kl_estimator=exact", "objective.kl_coef_target=1.0", "objective.ptx_coef=1.0", f"objective.ptx_data={corpus}")
    trainer = build_trainer(config, tmp_path / "run")
    trainer.train()
    scalars = trainer_scalars(tmp_path / "run")
    assert {"losses/ref_kl", "losses/ptx_loss", "objective/kl_exact", "objective/kl_k1", "objective/beta"} <= scalars
    with pytest.raises(ConfigError, match="objective.ptx_data='missing.txt' does not exist"):
        build_trainer(text_config(artifacts, "objective.ptx_coef=1.0", "objective.ptx_data=missing.txt"), tmp_path / "r2")
    (tmp_path / "binary.txt").write_bytes(b"\xff\xfe\x00 not text")
    (tmp_path / "blank.txt").write_text("\n  \n")
    for name, message in (("binary.txt", "is not UTF-8 text"), ("blank.txt", "holds no documents")):
        with pytest.raises(ConfigError, match=f"objective.ptx_data='{tmp_path / name}' {message}"):
            build_trainer(text_config(artifacts, "objective.ptx_coef=1.0", f"objective.ptx_data={tmp_path / name}"),
                          tmp_path / "r3")


def trainer_scalars(run_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tb"))
    events.Reload()
    return set(events.Tags()["scalars"])


@torch.no_grad()
def test_gold_reward_replaces_the_reward_model():
    def unused_rm(ids, mask):
        raise AssertionError("the reward model must not be called when the gold labeler scores")

    def gold(index, text):
        return 0.1 * index + 0.01 * len(text.split())

    tokenizer, _, _, reward = parts(unused_rm, temperature=T)
    reward.rewards = RewardSet({"gold": (GoldReward(gold), 1.0)})
    env = TextBanditVecEnv(tokenize_prompts(TEXTS, tokenizer, CONTEXT - L), reward, tokenizer, 4, L, gold=gold)
    policy = LMActorCritic(make_lm(2), PAD, EOS, max_new_tokens=L, temperature=T)
    obs, step, result = rollout_step(env, policy)
    for i in range(env.num_envs):
        _, completion = unpadded(obs, step, i)
        text = tokenizer.decode(completion, skip_special_tokens=True)
        expected = gold(int(obs["prompt_index"][i]), text) - result.info["penalty"][i] - BETA * result.info["kl"][i]
        torch.testing.assert_close(result.reward[i], expected)
        torch.testing.assert_close(result.info["source_scores"]["gold"][i], result.info["gold"][i])


