"""REINFORCE, PPO's adaptive KL penalty and TRPO, each checked on tiny batches against independent
references (torch.distributions, naive loops)."""

import copy
import dataclasses

import gymnasium as gym
import pytest
import torch
from torch import nn
from torch.distributions import Categorical, Independent, Normal, kl_divergence

import ppo_core.algorithms as algorithms
from agents.base import PolicyEvaluation
from agents.distributions import Categorical as TokenCategorical
from agents.mlp import MLPActorCritic
from ppo_core.algorithms import PPO, TRPO, Reinforce, make_algorithm
from ppo_core.buffer import RolloutBatch
from ppo_core.build import build_trainer
from ppo_core.errors import ConfigError
from tests.conftest import make_config

OBS = gym.spaces.Box(-10.0, 10.0, (3,))
SPACES = {"discrete": gym.spaces.Discrete(3), "box": gym.spaces.Box(-1.0, 1.0, (2,))}


def algo_config(*overrides: str):
    return make_config(*overrides).algo


def tiny_batch(kind: str, size: int = 64, seed: int = 0, policy: MLPActorCritic | None = None
               ) -> tuple[MLPActorCritic, RolloutBatch]:
    """A policy and a batch of its own actions; every 7th decision is masked out."""
    torch.manual_seed(seed)
    policy = policy or MLPActorCritic(OBS, SPACES[kind], hidden_sizes=(16, 16))
    obs = torch.randn(size, 3)
    with torch.no_grad():
        step = policy.act(obs)
    mask = torch.ones(size, 1, dtype=torch.bool)
    mask[::7] = False
    advantages = torch.randn(size, 1)
    batch = RolloutBatch(obs, step.action, step.log_prob, step.value, advantages,
                         step.value + advantages, mask, extras={})
    return policy, batch


def reference_distribution(policy: MLPActorCritic, obs: torch.Tensor):
    """The policy's distribution rebuilt with torch.distributions from its raw head."""
    head = policy.actor(obs)
    if policy.discrete:
        return Categorical(logits=head)
    return Independent(Normal(head, policy.log_std.exp()), 1)


def parameters(params) -> list[torch.Tensor]:
    return [p.detach().clone() for p in params]


def bitwise_equal(a, b) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b))


# ------------------------------------------------------------------------------------------- TRPO
@pytest.mark.parametrize("kind", ["discrete", "box"])
def test_trpo_step_improves_the_surrogate_within_the_kl_bound(kind):
    policy, batch = tiny_batch(kind)
    config = algo_config("algo=trpo", "algo.max_kl=0.01", "algo.normalize_advantages=false")
    algo = TRPO(policy, config)
    valid = batch.mask[:, 0]
    with torch.no_grad():
        old = reference_distribution(policy, batch.obs)
        old_log_prob = old.log_prob(batch.actions)

    def surrogate() -> float:
        with torch.no_grad():
            ratio = torch.exp(reference_distribution(policy, batch.obs).log_prob(batch.actions) - old_log_prob)
            return float((ratio * batch.advantages[:, 0])[valid].mean())

    before = surrogate()
    stats = algo.update(batch)
    with torch.no_grad():
        kl = kl_divergence(old, reference_distribution(policy, batch.obs))[valid].mean().item()
    assert stats["accepted"].item() == 1.0
    assert 0 < kl <= 0.01 * (1 + 1e-4)
    assert stats["approx_kl"].item() == pytest.approx(kl, rel=1e-4)
    assert surrogate() > before
    assert -stats["policy_loss"].item() == pytest.approx(surrogate(), abs=1e-6)
    assert stats["expected_improve"].item() > 0


@pytest.mark.parametrize("case", ["no_candidates", "no_ascent_direction"])
def test_rejected_trpo_step_keeps_the_actor_bitwise_and_still_fits_the_critic(case):
    policy, batch = tiny_batch("box")
    overrides = ["algo=trpo", "algo.normalize_advantages=false"]
    if case == "no_candidates":
        overrides.append("algo.max_backtracks=0")
    else:
        batch = batch.replace(advantages=torch.zeros_like(batch.advantages))
    algo = TRPO(policy, algo_config(*overrides))
    actor, critic = parameters(policy.actor_parameters()), parameters(policy.critic_parameters())
    stats = algo.update(batch)
    assert stats["accepted"].item() == 0.0 and stats["approx_kl"].item() == 0.0
    assert bitwise_equal(policy.actor_parameters(), actor)
    assert not bitwise_equal(policy.critic_parameters(), critic)
    assert stats["value_loss"].item() > 0


def test_trpo_moves_only_the_actor_by_the_natural_step():
    policy, batch = tiny_batch("discrete")
    algo = TRPO(policy, algo_config("algo=trpo", "algo.vf_iters=0"))
    critic = parameters(policy.critic_parameters())
    actor = parameters(policy.actor_parameters())
    algo.update(batch)
    assert bitwise_equal(policy.critic_parameters(), critic)
    assert not bitwise_equal(policy.actor_parameters(), actor)


@pytest.mark.parametrize("shared_trunk", [False, True])
def test_decision_values_are_the_values_of_a_full_evaluation(shared_trunk):
    policy = MLPActorCritic(OBS, SPACES["box"], hidden_sizes=(16, 16), shared_trunk=shared_trunk)
    obs, action = torch.randn(5, 3), torch.randn(5, 2)
    assert torch.equal(policy.decision_values(obs, action), policy.evaluate(obs, action).value)


@pytest.mark.parametrize("max_grad_norm", [0.0, 1e-3])
@pytest.mark.parametrize("every_7th_masked", [True, False])
def test_critic_fit_is_one_hand_written_adam_step_on_half_the_squared_error(max_grad_norm, every_7th_masked):
    policy, batch = tiny_batch("box")
    if not every_7th_masked:
        batch = batch.replace(mask=torch.ones_like(batch.mask))
    reference, initial = copy.deepcopy(policy.critic), parameters(policy.critic.parameters())
    algo = TRPO(policy, algo_config("algo=trpo", "algo.learning_rate=0.01", f"algo.max_grad_norm={max_grad_norm}"))
    stats = algo.fit_critic(batch, epochs=1, num_minibatches=1, dense=not every_7th_masked)
    optimizer = torch.optim.Adam(reference.parameters(), lr=0.01, eps=algo.config.adam_eps)
    valid = batch.mask.squeeze(-1)
    error = reference(batch.obs).squeeze(-1) - batch.returns.squeeze(-1)  # (B,)
    (0.5 * error[valid].square().mean()).backward()
    norm = sum(p.grad.square().sum() for p in reference.parameters()).sqrt()
    if max_grad_norm > 0:  # clip the global norm to max_grad_norm
        for p in reference.parameters():
            p.grad *= min(1.0, max_grad_norm / (float(norm) + 1e-6))
    optimizer.step()
    for got, expected in zip(policy.critic.parameters(), reference.parameters()):
        torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(stats["vf_grad_norm"], norm)
    assert float(norm) > 10 * 1e-3  # the clipped case really clips
    assert not bitwise_equal(policy.critic.parameters(), initial)


@pytest.mark.parametrize("algo", ["ppo", "trpo", "reinforce"])
def test_dropping_a_full_mask_changes_no_update_by_a_bit(algo, monkeypatch):
    """Every decision of a control batch is valid, so the losses take mask=None (plain means): the
    same parameters to the bit as the masked arithmetic, here forced by pretending a decision is padding."""
    runs = []
    for dense in (True, False):
        policy, batch = tiny_batch("box", seed=5)
        batch = batch.replace(mask=torch.ones_like(batch.mask))
        monkeypatch.setattr(algorithms, "every_decision_valid", lambda _, dense=dense: dense)
        update = make_algorithm(policy, algo_config(f"algo={algo}", "algo.num_minibatches=4"))
        torch.manual_seed(0)
        update.update(batch)
        runs.append(parameters(policy.parameters()))
    assert bitwise_equal(*runs)


def test_trpo_rejects_bad_settings_and_shared_trunks():
    from ppo_core.validation import validate

    with pytest.raises(ConfigError, match=r"algo.max_kl=0.0 is invalid; expected > 0"):
        validate(algo_config("algo=trpo", "algo.max_kl=0"), "algo.")  # the schema's rule, as build_trainer checks
    with pytest.raises(ConfigError, match=r"algo.backtrack_ratio=1.5 is invalid; expected > 0 and < 1"):
        validate(algo_config("algo=trpo", "algo.backtrack_ratio=1.5"), "algo.")
    shared = MLPActorCritic(OBS, SPACES["discrete"], shared_trunk=True)
    with pytest.raises(ConfigError, match="shared_trunk=false"):
        TRPO(shared, algo_config("algo=trpo"))


# ------------------------------------------------------------------------------------------- masks
class TokenPolicy(nn.Module):
    """A toy token-level policy: obs (B, L, 4) -> a Categorical over 5 tokens per position."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.actor = nn.Linear(4, 5)
        self.critic = nn.Linear(4, 1)

    def evaluate(self, obs: torch.Tensor, action: torch.Tensor) -> PolicyEvaluation:
        dist = TokenCategorical.from_logits(self.actor(obs))  # (B, L, 5)
        return PolicyEvaluation(dist.log_prob(action), dist.entropy(), self.decision_values(obs, action), dist)

    def decision_values(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return self.critic(obs).squeeze(-1)  # (B, L)

    def actor_parameters(self):
        return list(self.actor.parameters())

    def critic_parameters(self):
        return list(self.critic.parameters())


def token_batch(policy: TokenPolicy, garbage: bool) -> RolloutBatch:
    """Six sequences of up to 5 tokens; ``garbage`` fills the padding with other finite values."""
    gen = torch.Generator().manual_seed(0)
    obs = torch.randn(6, 5, 4, generator=gen)
    lengths = torch.tensor([5, 3, 1, 4, 2, 5])
    mask = torch.arange(5) < lengths[:, None]  # (B, L)
    with torch.no_grad():
        dist = TokenCategorical.from_logits(policy.actor(obs))
        actions = torch.multinomial(dist.log_probs.exp().reshape(-1, 5), 1, generator=gen).reshape(6, 5)
        log_probs = dist.log_prob(actions)
        values = policy.critic(obs).squeeze(-1)
    advantages = torch.randn(6, 5, generator=gen)
    batch = RolloutBatch(obs, actions, log_probs, values, advantages, values + advantages, mask, extras={})
    if not garbage:
        return batch
    pad = ~mask
    noise = torch.Generator().manual_seed(1)
    return RolloutBatch(
        torch.where(pad[..., None], 5 * torch.randn(6, 5, 4, generator=noise), obs),
        torch.where(pad, (actions + 2) % 5, actions),
        torch.where(pad, -3.0, log_probs),
        torch.where(pad, 7.0, values),
        torch.where(pad, 100.0, advantages),
        torch.where(pad, -50.0, batch.returns),
        mask,
        extras={},
    )


@pytest.mark.parametrize("algo", ["trpo", "reinforce", "ppo"])
def test_padding_tokens_never_change_an_update(algo):
    runs = []
    for garbage in (False, True):
        policy = TokenPolicy()
        update = make_algorithm(policy, algo_config(f"algo={algo}", "algo.num_minibatches=2"))
        torch.manual_seed(0)
        update.update(token_batch(policy, garbage))
        runs.append(parameters(policy.parameters()))
    for clean, padded in zip(*runs):
        torch.testing.assert_close(clean, padded, rtol=0, atol=1e-6)


# ------------------------------------------------------------------------------------------- REINFORCE
def naive_monte_carlo_returns(trainer, next_value: torch.Tensor) -> torch.Tensor:
    """G_t = r_t + γ·(0 if terminated; V(final obs) if truncated; G_{t+1} otherwise), with V of the
    observation after the rollout standing in for G_T."""
    b, gamma = trainer.buffer, trainer.config.algo.gamma
    rewards, terminated, ends, values = b["rewards"], b["terminated"], b["episode_ends"], b["values"][..., 0]
    num_steps, num_envs = rewards.shape
    returns = torch.zeros(num_steps, num_envs)
    for i in range(num_envs):
        following = float(next_value[i])
        for t in reversed(range(num_steps)):
            if terminated[t, i]:
                tail = 0.0
            elif ends[t, i]:  # truncated: V of the real final observation
                successor = values[t + 1, i] if t + 1 < num_steps else next_value[i]
                tail = float(trainer.final_values[t, i] if trainer.has_final[t, i] else successor)
            else:
                tail = following
            returns[t, i] = float(rewards[t, i]) + gamma * tail
            following = float(returns[t, i])
    return returns


@pytest.mark.parametrize("vectorization", ["sync", "vector_entry_point"])
def test_reinforce_returns_are_monte_carlo_bootstrapped_only_at_cuts(tmp_path, vectorization):
    config = make_config("algo=reinforce", "env.num_envs=4", "algo.num_steps=64", "eval_episodes=0",
                         f"env.vectorization={vectorization}", "+env.kwargs.max_episode_steps=15")
    trainer = build_trainer(config, tmp_path)
    next_value = trainer.collect_rollout()
    batch = trainer.compute_batch(next_value)
    b = trainer.buffer
    truncated = b["episode_ends"] & ~b["terminated"]
    assert b["terminated"].any() and truncated.any()
    valid = b["mask"][..., 0]  # (T, N)
    expected = naive_monte_carlo_returns(trainer, next_value)
    returns = batch.returns.reshape(valid.shape)
    torch.testing.assert_close(returns[valid], expected[valid], rtol=1e-5, atol=1e-4)
    advantages = batch.advantages.reshape(valid.shape)
    torch.testing.assert_close(advantages[valid], (expected - b["values"][..., 0])[valid], rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("baseline", [True, False])
def test_reinforce_uses_returns_minus_baseline_or_returns(monkeypatch, baseline):
    seen = []
    real = algorithms.policy_gradient_loss

    def recording(log_prob, advantages, mask=None):
        seen.append(advantages.clone())
        return real(log_prob, advantages, mask)

    monkeypatch.setattr(algorithms, "policy_gradient_loss", recording)
    policy, batch = tiny_batch("discrete")
    config = algo_config("algo=reinforce", f"algo.baseline={baseline}", "algo.normalize_advantages=false",
                         "algo.update_epochs=3")
    actor, critic = parameters(policy.actor_parameters()), parameters(policy.critic_parameters())
    stats = Reinforce(policy, config).update(batch)
    assert len(seen) == 3
    expected = batch.advantages if baseline else batch.returns
    assert all(torch.equal(a, expected) for a in seen)
    assert not bitwise_equal(policy.actor_parameters(), actor)
    assert not bitwise_equal(policy.critic_parameters(), critic)
    assert stats["approx_kl"].item() > 0


def test_reinforce_one_step_equals_a_hand_written_policy_gradient_step():
    policy, batch = tiny_batch("box")
    reference = copy.deepcopy(policy)
    config = algo_config("algo=reinforce", "algo.normalize_advantages=false", "algo.max_grad_norm=0",
                         "algo.vf_iters=0", "algo.learning_rate=0.01")
    Reinforce(policy, config).update(batch)
    # −mean over valid decisions of log π(a|s)·A, by torch.distributions, then one Adam step
    valid = batch.mask[:, 0]
    log_prob = reference_distribution(reference, batch.obs).log_prob(batch.actions)
    loss = -(log_prob * batch.advantages[:, 0])[valid].mean()
    optimizer = torch.optim.Adam(reference.actor_parameters(), lr=0.01, eps=config.adam_eps)
    loss.backward()
    optimizer.step()
    for mine, theirs in zip(policy.actor_parameters(), reference.actor_parameters()):
        torch.testing.assert_close(mine, theirs, rtol=1e-5, atol=1e-6)


def test_two_optimisers_round_trip_through_state_dict():
    policy, batch = tiny_batch("discrete")
    config = algo_config("algo=reinforce")
    algo = Reinforce(policy, config)
    algo.set_progress(0.5)
    algo.update(batch)
    restored = Reinforce(copy.deepcopy(policy), config)
    restored.load_state_dict(algo.state_dict())
    assert restored.progress_remaining == 0.5
    for name in ("actor", "critic"):
        assert restored.optimizers[name].param_groups[0]["lr"] == algo.optimizers[name].param_groups[0]["lr"]
        assert restored.optimizers[name].state_dict()["state"].keys() == algo.optimizers[name].state_dict()["state"].keys()
    assert algo.learning_rate("actor").item() == pytest.approx(0.5 * config.learning_rate)
    assert algo.learning_rate("critic").item() == pytest.approx(0.5 * config.vf_learning_rate)


# ------------------------------------------------------------------------------------------- PPO §4
def measured_d(policy: MLPActorCritic, batch: RolloutBatch) -> float:
    """KL(π_old‖π_θ) estimated with k3 over the rollout's actions: mean of (r − 1) − log r."""
    with torch.no_grad():
        log_r = reference_distribution(policy, batch.obs).log_prob(batch.actions) - batch.log_probs[:, 0]
        k3 = torch.exp(log_r) - 1 - log_r
    return float(k3[batch.mask[:, 0]].mean())


def ppo_kl_update(kl_target: float, coef: float = 1.0) -> tuple[PPO, dict, float]:
    policy, batch = tiny_batch("discrete")
    config = algo_config("algo.surrogate=kl_penalty", f"algo.penalty_kl_target={kl_target}", f"algo.penalty_coef_init={coef}",
                         "algo.learning_rate=3e-3")
    algo = PPO(policy, config)
    torch.manual_seed(0)
    stats = algo.update(batch)
    return algo, stats, measured_d(policy, batch)


def test_adaptive_kl_beta_doubles_halves_or_stays():
    _, _, d = ppo_kl_update(kl_target=1.0)
    assert d > 1e-5
    algo, stats, d_high = ppo_kl_update(kl_target=d / 10)  # d > 1.5 · target
    assert stats["penalty_coef"].item() == 1.0 and algo.kl_controller.coef == 2.0
    assert stats["kl_after_update"].item() == pytest.approx(d_high, rel=1e-4)
    algo, _, _ = ppo_kl_update(kl_target=d * 10, coef=0.5)  # d < target / 1.5
    assert algo.kl_controller.coef == 0.25
    algo, _, _ = ppo_kl_update(kl_target=d)  # inside [target / 1.5, 1.5 · target]
    assert algo.kl_controller.coef == 1.0


def test_adaptive_kl_beta_weighs_the_next_update_and_survives_a_checkpoint():
    algo, _, _ = ppo_kl_update(kl_target=1e-9)
    assert algo.kl_controller.coef == 2.0
    restored = PPO(copy.deepcopy(algo.policy), dataclasses.replace(algo.config))
    restored.load_state_dict(algo.state_dict())
    assert restored.kl_controller.coef == 2.0
    _, batch = tiny_batch("discrete", seed=1, policy=restored.policy)
    stats = restored.update(batch)
    assert stats["penalty_coef"].item() == 2.0 and restored.kl_controller.coef == 4.0


def test_ppo_critic_learning_rate_moves_only_the_critic_at_its_own_rate():
    """One Adam step moves each parameter by about its group's rate (the first Adam step is ±lr)."""
    policy, batch = tiny_batch("discrete")
    config = dataclasses.replace(algo_config("algo=ppo"), update_epochs=1, num_minibatches=1, learning_rate=1e-4,
                                 vf_learning_rate=1e-2, anneal_lr=True, max_grad_norm=0.0)
    ppo = PPO(policy, config)
    ppo.set_progress(0.5)
    assert [group["lr"] for group in ppo.optimizers["policy"].param_groups] == [0.5e-4, 0.5e-2]
    actor, critic = parameters(policy.actor_parameters()), parameters(policy.critic_parameters())
    ppo.update(batch)
    actor_step = max((a - b).abs().max() for a, b in zip(actor, policy.actor_parameters()))
    critic_step = max((a - b).abs().max() for a, b in zip(critic, policy.critic_parameters()))
    assert 0.9 * 0.5e-4 < actor_step < 1.1 * 0.5e-4 and 0.9 * 0.5e-2 < critic_step < 1.1 * 0.5e-2
    shared = MLPActorCritic(OBS, SPACES["discrete"], hidden_sizes=(16,), shared_trunk=True)
    with pytest.raises(ConfigError, match="needs a separate critic"):
        PPO(shared, config)


@pytest.mark.parametrize("max_norm", [0.0, 0.05, 1e3])
@pytest.mark.parametrize("mixed_dtypes", [False, True])
def test_clip_grad_norm_is_torch_clip_grad_norm_to_the_bit(max_norm, mixed_dtypes):
    """Against ``nn.utils.clip_grad_norm_`` on a copy, and the norm against a sum of squares."""
    def tiny_net():
        torch.manual_seed(0)
        first, second = nn.Linear(3, 8), nn.Linear(8, 2)
        if mixed_dtypes:
            second.double()
        hidden = torch.tanh(first(torch.randn(16, 3)))
        second(hidden.to(second.weight.dtype)).square().sum().backward()
        return [*first.parameters(), *second.parameters()]

    ours, theirs = tiny_net(), tiny_net()
    norm = algorithms.clip_grad_norm(ours, max_norm)
    expected = nn.utils.clip_grad_norm_(theirs, max_norm if max_norm > 0 else float("inf"), foreach=True)
    assert torch.equal(norm, expected)
    by_hand = sum(float(p.grad.double().square().sum()) for p in tiny_net()) ** 0.5
    assert float(norm) == pytest.approx(by_hand, rel=1e-5)
    for a, b in zip(ours, theirs):
        assert torch.equal(a.grad, b.grad)
    if 0 < max_norm < by_hand:
        clipped = sum(float(p.grad.double().square().sum()) for p in ours) ** 0.5
        assert clipped == pytest.approx(max_norm, rel=1e-5)
