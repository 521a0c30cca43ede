"""Update rules: REINFORCE, PPO and TRPO. Each algorithm owns its optimiser(s) and turns one rollout
batch into new parameters: ``update(batch) -> stats``. The trainer does everything else.

They see the policy only through ``evaluate`` and per-decision tensors (B, L) with a mask, so one
update serves an action of one decision (L = 1, every control task) and one of many."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence

import torch
from torch import Tensor, nn

from agents.base import ActorCritic, PolicyEvaluation
from agents.distributions import Distribution
from ppo_core.advantages import explained_variance, whiten
from ppo_core.auxiliary import AuxiliaryLoss, total_auxiliary_loss
from ppo_core.buffer import RolloutBatch
from ppo_core.config import AlgoConfig, PPOConfig, ReinforceConfig, TRPOConfig
from ppo_core.distributed import all_true, sum_gradients, sum_over_ranks
from ppo_core.errors import ConfigError
from ppo_core.kl_control import PPOKLPenaltyController
from ppo_core.masked import masked_mean
from ppo_core.losses import (
    approx_kl,
    clipped_surrogate_loss,
    entropy_bonus,
    kl_penalty_surrogate_loss,
    policy_gradient_loss,
    value_loss,
)
from ppo_core.trpo import trpo_step

Stats = dict[str, Tensor]


def clip_grad_norm(parameters: list[nn.Parameter], max_norm: float) -> Tensor:
    """The global L2 norm of the parameters' gradients, which are scaled in place to at most
    ``max_norm`` (0: measure only). The arithmetic of ``nn.utils.clip_grad_norm_(foreach=True)`` to
    the bit, without its per-call grouping of tensors by device and dtype, which at MLP sizes costs
    more than the norm itself (96 µs against 42 a call); gradients of mixed dtypes still go through it."""
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return torch.zeros(())
    if len({(g.device, g.dtype) for g in grads}) > 1:
        return nn.utils.clip_grad_norm_(parameters, max_norm if max_norm > 0 else float("inf"), foreach=True)
    norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
    if max_norm > 0:
        torch._foreach_mul_(grads, torch.clamp(max_norm / (norm + 1e-6), max=1.0))
    return norm


class StatsMeter:
    """Means of tensor statistics, kept on their device until read (no host syncs); one stack and mean
    per read instead of an add per step."""

    def __init__(self) -> None:
        self.values: dict[str, list[Tensor]] = defaultdict(list)

    def add(self, stats: Stats) -> None:
        for key, value in stats.items():
            self.values[key].append(value.detach())

    def means(self) -> Stats:
        return {key: torch.stack(values).float().mean() for key, values in self.values.items()}


class Algorithm:
    """Shared pieces: named Adam optimisers with linear LR annealing, clipped gradient steps, critic
    regression and checkpointable state. PPO owns one optimiser over the whole policy; TRPO and
    REINFORCE give the critic its own. ``auxiliary`` terms (ppo_core/auxiliary.py, contributed
    by the run's objective) are added to every algorithm's policy loss."""

    second_order = False
    """Whether the update differentiates through the policy twice (the builder tells the policy)."""

    def __init__(self, policy: ActorCritic, config: AlgoConfig, auxiliary: Sequence[AuxiliaryLoss] = ()):
        self.policy = policy
        self.config = config
        self.auxiliary = list(auxiliary)
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.optimized: dict[str, list[nn.Parameter]] = {}
        self.progress_remaining = 1.0

    def add_optimizer(
        self, name: str, parameters: Iterable[nn.Parameter], learning_rate: float,
        own_rates: Sequence[tuple[Iterable[nn.Parameter], float]] = (),
    ) -> None:
        """Adam ``name`` over ``parameters`` at ``learning_rate``, except the parameters of each
        ``own_rates`` entry, which get that entry's rate (e.g. a fresh value head beside a pretrained trunk)."""
        parameters = list(parameters)
        groups, claimed = [], set()
        for subset, rate in own_rates:
            subset = list(subset)
            claimed.update(id(p) for p in subset)
            groups.append({"params": subset, "lr": rate, "base_lr": rate})
        rest = [p for p in parameters if id(p) not in claimed]
        groups.insert(0, {"params": rest, "lr": learning_rate, "base_lr": learning_rate})
        self.optimized[name] = parameters
        # fused: one kernel for all parameters, 4x faster than the per-tensor loop at MLP sizes
        self.optimizers[name] = torch.optim.Adam(groups, lr=learning_rate, eps=self.config.adam_eps, fused=True)

    def learning_rate(self, name: str) -> Tensor:
        return torch.tensor(self.optimizers[name].param_groups[0]["lr"])

    def set_progress(self, remaining: float) -> None:
        """``remaining`` goes from 1 at the start of training to 0 at its end."""
        self.progress_remaining = remaining
        if self.config.anneal_lr:
            for name, optimizer in self.optimizers.items():
                for group in optimizer.param_groups:
                    group["lr"] = remaining * group["base_lr"]

    def gradient_step(self, loss: Tensor, name: str) -> Tensor:
        """Backpropagate, sum the gradients over the processes of a data-parallel run, clip the global
        gradient norm of optimiser ``name``'s parameters, step; returns the pre-clip norm."""
        optimizer = self.optimizers[name]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        sum_gradients(self.optimized[name])
        grad_norm = clip_grad_norm(self.optimized[name], self.config.max_grad_norm)
        optimizer.step()
        return grad_norm

    def fit_critic(self, batch: RolloutBatch, epochs: int, num_minibatches: int, dense: bool) -> Stats:
        """Regress V on the batch's returns, ½(V − R)² over valid decisions, with the "critic" optimiser;
        ``dense`` (every decision valid, see ``every_decision_valid``) drops the mask from the loss."""
        meter = StatsMeter()
        size = max(1, len(batch) // num_minibatches)
        for _ in range(epochs):
            for minibatch in shuffled_minibatches(batch, size):
                value = self.policy.decision_values(minibatch.obs, minibatch.actions)  # (b, L)
                loss, _ = value_loss(value, minibatch.returns, mask=None if dense else minibatch.mask)
                meter.add({"value_loss": loss, "vf_grad_norm": self.gradient_step(loss, "critic")})
        return meter.means()

    def auxiliary_loss(self, evaluation: PolicyEvaluation, batch: RolloutBatch, refresh: bool) -> tuple[Tensor | float, Stats]:
        """Σ of the auxiliary terms on ``batch``; ``refresh`` first draws their data for a new step."""
        if refresh:
            for term in self.auxiliary:
                term.refresh()
        return total_auxiliary_loss(self.auxiliary, evaluation, batch)

    def update(self, batch: RolloutBatch) -> Stats:
        raise NotImplementedError

    def state_dict(self) -> dict:
        optimizers = {name: optimizer.state_dict() for name, optimizer in self.optimizers.items()}
        return {"optimizers": optimizers, "progress_remaining": self.progress_remaining}

    def load_state_dict(self, state: dict) -> None:
        for name, optimizer in self.optimizers.items():
            optimizer.load_state_dict(state["optimizers"][name])
        self.set_progress(state["progress_remaining"])


def separate_critic_parameters(policy: ActorCritic, algo: str) -> list[nn.Parameter]:
    """The critic's own parameters; a policy whose critic shares the actor's trunk cannot give them."""
    try:
        return list(policy.critic_parameters())
    except ValueError as error:
        raise ConfigError(f"algo={algo} fits the critic with its own optimiser and needs a separate critic "
                          f"(agent.shared_trunk=false): {error}") from None


def require(config: AlgoConfig, key: str, ok: bool, expected: str) -> None:
    if not ok:
        raise ConfigError(f"algo.{key}={getattr(config, key)!r} is invalid; expected {expected}")


def every_decision_valid(batch: RolloutBatch) -> bool:
    """Whether the mask is all True (control actions always are). The losses then take mask=None: plain
    means, the same numbers to the bit as the masked ones (ppo_core/masked.py) with half the ops.
    One host sync per update; in a data-parallel run, all ranks' batches decide together."""
    return all_true(batch.mask.all())


def batch_stats(batch: RolloutBatch) -> Stats:
    """Diagnostics of the rollout itself, logged beside the losses."""
    return {"explained_variance": explained_variance(batch.values, batch.returns, batch.mask)}


def shuffled_minibatches(batch: RolloutBatch, size: int) -> Iterator[RolloutBatch]:
    """A random partition of the batch; the batch itself when one minibatch holds all of it."""
    if size >= len(batch):
        yield batch
        return
    for indices in torch.randperm(len(batch), device=batch.mask.device).split(size):
        yield batch.select(indices)


class PPO(Algorithm):
    """Proximal Policy Optimization (Schulman et al. 2017): epochs of minibatch steps on a
    clipped (§3) or adaptive-KL-penalised (§4) surrogate, plus value loss and entropy bonus.

    surrogate=kl_penalty penalises KL(π_old‖π_θ), estimated with k3 = (r − 1) − log r over the
    rollout's own actions (sampled from π_old). After the update epochs, d is that estimate over the
    whole batch at the new parameters; β halves when d < penalty_kl_target / 1.5 and doubles
    when d > 1.5 · penalty_kl_target, and the new β weighs the next update (§4).
    """

    config: PPOConfig

    def __init__(self, policy: ActorCritic, config: PPOConfig, auxiliary: Sequence[AuxiliaryLoss] = ()):
        if config.surrogate == "kl_penalty":
            require(config, "penalty_kl_target", config.penalty_kl_target > 0, "> 0 with algo.surrogate=kl_penalty")
        super().__init__(policy, config, auxiliary)
        own_rates = []
        if config.vf_learning_rate is not None:
            own_rates.append((separate_critic_parameters(policy, "ppo with algo.vf_learning_rate"), config.vf_learning_rate))
        self.add_optimizer("policy", policy.parameters(), config.learning_rate, own_rates)
        self.kl_controller = (PPOKLPenaltyController(config.penalty_coef_init, config.penalty_kl_target)
                              if config.surrogate == "kl_penalty" else None)

    @property
    def clip_eps(self) -> float:
        return self.config.clip_eps * (self.progress_remaining if self.config.anneal_clip else 1.0)

    def _policy_loss(self, log_prob: Tensor, batch: RolloutBatch, advantages: Tensor, mask: Tensor | None
                     ) -> tuple[Tensor, Stats]:
        if self.config.surrogate == "clip":
            return clipped_surrogate_loss(log_prob, batch.log_probs, advantages, self.clip_eps, mask)
        return kl_penalty_surrogate_loss(log_prob, batch.log_probs, advantages, self.kl_controller.coef, mask)

    def update(self, batch: RolloutBatch) -> Stats:
        cfg = self.config
        meter = StatsMeter()
        minibatch_size = max(1, len(batch) // cfg.num_minibatches)
        clip_value = self.clip_eps if cfg.clip_value_loss else None
        dense = every_decision_valid(batch)
        for _ in range(cfg.update_epochs):
            epoch_meter = StatsMeter()
            for minibatch in shuffled_minibatches(batch, minibatch_size):
                evaluation = self.policy.evaluate(minibatch.obs, minibatch.actions)
                mask = None if dense else minibatch.mask
                advantages = minibatch.advantages
                if cfg.normalize_advantages:
                    advantages = whiten(advantages, mask)
                pg_loss, pg_stats = self._policy_loss(evaluation.log_prob, minibatch, advantages, mask)
                v_loss, _ = value_loss(evaluation.value, minibatch.returns, minibatch.values, clip_value, mask)
                entropy_loss, entropy = entropy_bonus(evaluation.entropy, cfg.ent_coef, mask)
                aux_loss, aux_stats = self.auxiliary_loss(evaluation, minibatch, refresh=True)
                loss = pg_loss + cfg.vf_coef * v_loss + entropy_loss + aux_loss
                grad_norm = self.gradient_step(loss, "policy")
                step_stats = {"policy_loss": pg_loss, "value_loss": v_loss, "entropy": entropy,
                              "loss": loss, "grad_norm": grad_norm, **pg_stats, **aux_stats}
                meter.add(step_stats)
                epoch_meter.add({"approx_kl": pg_stats["approx_kl"]})
            epoch_kl = epoch_meter.means()["approx_kl"]
            if cfg.early_stop_kl is not None and epoch_kl.item() > cfg.early_stop_kl:
                break
        stats = {**meter.means(), **batch_stats(batch), "learning_rate": self.learning_rate("policy")}
        if cfg.surrogate == "kl_penalty":
            d = self.kl_after_update(batch)
            stats["penalty_coef"] = torch.tensor(self.kl_controller.coef)  # the β this update was penalised with
            stats["kl_after_update"] = d
            self.kl_controller.update(d.item())
        else:
            stats["clip_eps"] = torch.tensor(self.clip_eps)
        return stats

    @torch.no_grad()
    def kl_after_update(self, batch: RolloutBatch) -> Tensor:
        """d of §4: KL(π_old‖π_θ) over the whole batch at the current parameters (k3 estimate)."""
        log_prob = self.policy.evaluate(batch.obs, batch.actions).log_prob  # (B, L)
        return approx_kl(log_prob - batch.log_probs, batch.mask)

    def state_dict(self) -> dict:
        state = super().state_dict()
        if self.kl_controller is not None:
            state["kl_controller"] = self.kl_controller.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        if self.kl_controller is not None:
            self.kl_controller.load_state_dict(state["kl_controller"])


class TRPO(Algorithm):
    """Trust Region Policy Optimization (Schulman et al. 2015). Per rollout, one step of the actor on
    the whole batch: maximise the surrogate L(θ) = E[π_θ/π_old · A] subject to the mean
    KL(π_old‖π_θ) ≤ max_kl (§6, eq. 14), by conjugate gradient on the damped Fisher-vector product,
    a step scaled to the KL bound and a backtracking line search that keeps the old parameters when
    no candidate improves within the bound (App. C). Then epochs of minibatch regression of the
    critic with its own Adam, which is what ``learning_rate`` and ``anneal_lr`` act on.

    The KL is exact per decision (``Distribution.kl``) and averaged over valid decisions only, so
    padding never counts.
    """

    config: TRPOConfig
    second_order = True  # the Fisher-vector product is a Hessian-vector product of the KL

    def __init__(self, policy: ActorCritic, config: TRPOConfig, auxiliary: Sequence[AuxiliaryLoss] = ()):
        super().__init__(policy, config, auxiliary)
        self.actor_parameters = list(policy.actor_parameters())
        self.add_optimizer("critic", separate_critic_parameters(policy, "trpo"), config.learning_rate)

    def objectives(
        self, batch: RolloutBatch, advantages: Tensor, old: Distribution, mask: Tensor | None, auxiliary: bool = True
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Surrogate (with the entropy bonus and, unless ``auxiliary`` is false, minus the auxiliary
        losses), mean KL(π_old‖π_θ) and mean entropy at the current parameters, all means over the
        decisions ``mask`` keeps (None: all of them)."""
        evaluation = self.policy.evaluate(batch.obs, batch.actions)
        ratio = torch.exp(evaluation.log_prob - batch.log_probs)  # (B, L)
        entropy_loss, entropy = entropy_bonus(evaluation.entropy, self.config.ent_coef, mask)
        aux_loss, _ = self.auxiliary_loss(evaluation, batch, refresh=False) if auxiliary else (0.0, {})
        surrogate = masked_mean(ratio * advantages, mask) - entropy_loss - aux_loss
        kl = old.kl(evaluation.distribution).reshape(batch.mask.shape)  # (B, L): one KL per decision
        return surrogate, masked_mean(kl, mask), entropy

    def update(self, batch: RolloutBatch) -> Stats:
        cfg = self.config
        mask = None if every_decision_valid(batch) else batch.mask
        advantages = whiten(batch.advantages, mask) if cfg.normalize_advantages else batch.advantages
        for term in self.auxiliary:  # one draw per update: the line search compares one objective
            term.refresh()
        with torch.no_grad():
            old = self.policy.evaluate(batch.obs, batch.actions).distribution.detach()  # a snapshot
        info = trpo_step(
            lambda: self.objectives(batch, advantages, old, mask)[0],
            lambda: self.objectives(batch, advantages, old, mask, auxiliary=False)[1],
            self.actor_parameters,
            cfg.max_kl,
            damping=cfg.damping,
            cg_iters=cfg.cg_iters,
            max_backtracks=cfg.max_backtracks,
            backtrack_ratio=cfg.backtrack_ratio,
            accept_ratio=cfg.accept_ratio,
            reduce=sum_over_ranks,
        )
        with torch.no_grad():
            surrogate, kl, entropy = self.objectives(batch, advantages, old, mask)
        policy_stats = {
            "policy_loss": -surrogate,
            "entropy": entropy,
            "approx_kl": kl,  # exact mean KL(π_old‖π_θ) after the step: 0 when rejected
            "accepted": torch.tensor(float(info.accepted)),
            "step_fraction": torch.tensor(info.step_fraction),
            "backtracks": torch.tensor(float(info.backtracks)),
            "expected_improve": torch.tensor(info.expected_improve),
            "improvement": torch.tensor(info.improvement),
        }
        critic_stats = self.fit_critic(batch, cfg.vf_iters, cfg.num_minibatches, dense=mask is None)
        return {**policy_stats, **critic_stats, **batch_stats(batch), "learning_rate": self.learning_rate("critic")}


class Reinforce(Algorithm):
    """REINFORCE (Williams 1992) with a learned state-value baseline (Sutton & Barto 2018, §13.4):
    ``update_epochs`` full-batch steps on −E[log π(a|s) · A], then epochs of minibatch regression of
    the critic with its own Adam (``vf_learning_rate``).

    With gae_lambda = 1 the trainer's advantages are A = G − V(s), G the Monte-Carlo discounted
    return, bootstrapped from V only where the rollout cuts an episode (time-limit truncation, the
    rollout's end); gae_lambda < 1 makes this an advantage actor-critic. baseline=false uses G itself
    for the policy gradient; the critic is still fitted because those cut-off tails bootstrap from
    it. normalize_advantages whitens A (or G) over the batch; for G that subtracts the batch mean, a
    constant baseline, so the textbook estimator is baseline=false with normalize_advantages=false.
    """

    config: ReinforceConfig

    def __init__(self, policy: ActorCritic, config: ReinforceConfig, auxiliary: Sequence[AuxiliaryLoss] = ()):
        if not config.baseline:  # the policy gradient then reads the returns, not the advantages
            require(config, "advantage", config.advantage == "gae", "gae with algo.baseline=false, which trains on G itself")
        super().__init__(policy, config, auxiliary)
        self.add_optimizer("actor", policy.actor_parameters(), config.learning_rate)
        self.add_optimizer("critic", separate_critic_parameters(policy, "reinforce"), config.vf_learning_rate)

    def update(self, batch: RolloutBatch) -> Stats:
        cfg = self.config
        mask = None if every_decision_valid(batch) else batch.mask
        advantages = batch.advantages if cfg.baseline else batch.returns  # (B, L)
        if cfg.normalize_advantages:
            advantages = whiten(advantages, mask)
        meter = StatsMeter()
        for _ in range(cfg.update_epochs):
            evaluation = self.policy.evaluate(batch.obs, batch.actions)
            pg_loss, _ = policy_gradient_loss(evaluation.log_prob, advantages, mask)
            entropy_loss, entropy = entropy_bonus(evaluation.entropy, cfg.ent_coef, mask)
            aux_loss, aux_stats = self.auxiliary_loss(evaluation, batch, refresh=True)
            grad_norm = self.gradient_step(pg_loss + entropy_loss + aux_loss, "actor")
            meter.add({"policy_loss": pg_loss, "entropy": entropy, "grad_norm": grad_norm, **aux_stats})
        with torch.no_grad():
            log_prob = self.policy.evaluate(batch.obs, batch.actions).log_prob
        stats = {**meter.means(), "approx_kl": approx_kl(log_prob - batch.log_probs, batch.mask)}
        critic_stats = self.fit_critic(batch, cfg.vf_iters, cfg.num_minibatches, dense=mask is None)
        return {**stats, **critic_stats, **batch_stats(batch), "learning_rate": self.learning_rate("actor"),
                "vf_learning_rate": self.learning_rate("critic")}


ALGORITHMS: dict[str, type[Algorithm]] = {"ppo": PPO, "trpo": TRPO, "reinforce": Reinforce}


def make_algorithm(policy: ActorCritic, config: AlgoConfig, auxiliary: Sequence[AuxiliaryLoss] = ()) -> Algorithm:
    if config.name not in ALGORITHMS:
        raise ConfigError(f"algo.name={config.name!r} is unknown; expected one of {sorted(ALGORITHMS)}")
    return ALGORITHMS[config.name](policy, config, auxiliary)
