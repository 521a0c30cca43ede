"""A seed batch: S runs that differ only in seed, trained in one process as one computation.

Each run is an ordinary ``Trainer`` (its own env copies, evaluation env, run directory, TensorBoard
scalars, checkpoint and summary); this loop stacks their policies and optimiser states and does the
rollouts and updates of all of them at once. What stays each run's own: its env copies and their
normalisers, its random generator (a copy of the global state its own run would have, so action draws
and minibatch permutations are the run's), its advantage whitening, gradient clipping, early stops
(``ppo_core/batched_ppo.py``), evaluations and ``stop_at_return``. A run that finishes leaves the batch;
the others go on. Its checkpoint is written in the single-run layout, by its own ``Trainer``, so a run
of a batch can be evaluated, compared or resumed on its own like any other.

The training clock is the batch's: a run's ``wall_seconds`` is the time the batch trained while the run
was in it (the per-seed cost is that divided by the runs in the batch).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import torch
from torch import Tensor
from tqdm import tqdm

from envs.base import StepResult, VecEnv
from ppo_core.advantages import gae, place_at_last_decision
from ppo_core.batched_adam import BatchedAdam
from ppo_core.batched_evaluation import evaluate_runs
from ppo_core.batched_ppo import StackedPolicy, ppo_update
from ppo_core.batched_reinforce import reinforce_update
from ppo_core.batched_trpo import trpo_update
from ppo_core.buffer import RolloutBatch, RolloutBuffer
from ppo_core.errors import NonFiniteError
from ppo_core.evaluation import RunEvaluator
from ppo_core.logging import RunLogger
from ppo_core.trainer import Trainer

log = logging.getLogger(__name__)

ADAM_BETAS = (0.9, 0.999)  # torch.optim.Adam's defaults, which the single-run algorithms use


class StackedStep(NamedTuple):
    """One env step of every run of a batch: ``StepResult``'s fields stacked over runs (S, N, ...)."""

    obs: Tensor  # (S, N, ...)
    reward: Tensor  # (S, N)
    terminated: Tensor  # (S, N) bool
    truncated: Tensor  # (S, N) bool
    valid: Tensor  # (S, N) bool
    final_obs: Tensor | None  # (S, N, ...) real last observations where ``has_final``; None if no run has any
    has_final: Tensor | None  # (S, N) bool: truncated in a run that reported final observations

    @classmethod
    def of(cls, results: Sequence[StepResult]) -> "StackedStep":
        stack = lambda name: torch.stack([getattr(r, name) for r in results])  # noqa: E731
        final_obs = has_final = None
        if any(r.final_obs is not None for r in results):
            final_obs = torch.stack([r.obs if r.final_obs is None else r.final_obs for r in results])
            has_final = torch.stack([r.truncated if r.final_obs is not None else torch.zeros_like(r.truncated)
                                     for r in results])
        return cls(stack("obs"), stack("reward"), stack("terminated"), stack("truncated"), stack("valid"),
                   final_obs, has_final)


EnvStepper = Callable[[Sequence[VecEnv], Tensor], StackedStep]
"""(each run's env, actions (S, N, ...)) -> the step of all of them (envs/stacked.py)."""


def step_each(envs: Sequence[VecEnv], actions: Tensor) -> StackedStep:
    """Each run's env stepped in turn on its row of ``actions``."""
    return StackedStep.of([env.step(action) for env, action in zip(envs, actions)])


def generator_from_global() -> torch.Generator:
    """A CPU generator in the global generator's current state: what the run built just now would draw."""
    generator = torch.Generator()
    generator.set_state(torch.get_rng_state())
    return generator


class BatchedTrainer:
    def __init__(self, trainers: Sequence[Trainer], generators: Sequence[torch.Generator],
                 stack: Callable[[list[Any]], StackedPolicy], step_envs: EnvStepper = step_each,
                 step_eval_envs: EnvStepper = step_each):
        iterations = {t.iteration for t in trainers}
        if len(iterations) != 1:
            raise ValueError(f"the runs of a batch must be at one iteration, got {sorted(iterations)}")
        self.trainers = list(trainers)
        self.generators = list(generators)
        self.step_envs, self.step_eval_envs = step_envs, step_eval_envs
        first = self.trainers[0]
        self.config, self.device = first.config, first.device
        self.algo = self.config.algo
        self.num_envs = first.env.num_envs
        self.steps_per_iteration, self.num_iterations = first.steps_per_iteration, first.num_iterations
        self.iteration, self.global_step = first.iteration, first.global_step
        self.policy = stack([t.policy for t in self.trainers])
        # each single-run optimiser's parameters (None: all), by its name in Algorithm.optimizers
        self.groups = {"ppo": {"policy": None}, "trpo": {"critic": self.policy.critic_names},
                       "reinforce": {"actor": self.policy.actor_names, "critic": self.policy.critic_names}
                       }[self.algo.name]
        self.optimizers = {name: BatchedAdam(len(self.trainers), self.policy.size_of(names), ADAM_BETAS,
                                             self.algo.adam_eps, self.device) for name, names in self.groups.items()}
        for run, trainer in enumerate(self.trainers):
            self._load_optimizer_state(run, trainer)
        self.obs = torch.stack([t.obs for t in self.trainers])  # (S, N, D)
        self.loggers = [RunLogger(t.run_dir) for t in self.trainers]
        self.summaries: dict[str, dict[str, Any]] = {}  # run dir -> summary, as runs finish
        self.failures: list[str] = []

    # ----------------------------------------------------------------------------- optimiser state
    def _template_parameters(self, trainer: Trainer) -> dict[str, torch.nn.Parameter]:
        return dict(trainer.policy.named_parameters())

    def _load_optimizer_state(self, run: int, trainer: Trainer) -> None:
        """The run's own Adam states (a resumed run's) into its rows of the batched optimisers."""
        parameters = self._template_parameters(trainer)
        for group, names in self.groups.items():
            optimizer = trainer.algorithm.optimizers[group]
            states = {name: optimizer.state.get(parameters[name]) for name in names or self.policy.names}
            if not all(states.values()):
                continue  # a fresh run: zero moments, step 0
            steps = {float(s["step"]) for s in states.values()}
            self.optimizers[group].load_run_state(
                run, steps.pop(), self.policy.flat_run({n: s["exp_avg"] for n, s in states.items()}, names),
                self.policy.flat_run({n: s["exp_avg_sq"] for n, s in states.items()}, names))

    def _write_back(self, run: int) -> None:
        """Run ``run``'s parameters, Adam states and loop state into its own Trainer."""
        trainer = self.trainers[run]
        self.policy.write_back(run, trainer.policy)
        parameters = self._template_parameters(trainer)
        for group, names in self.groups.items():
            steps, exp_avg, exp_avg_sq = self.optimizers[group].run_state(run)
            if steps == 0:
                continue
            moments = self.policy.unflat_run(exp_avg, names), self.policy.unflat_run(exp_avg_sq, names)
            optimizer = trainer.algorithm.optimizers[group]
            for name in names or self.policy.names:
                optimizer.state[parameters[name]] = {"step": torch.tensor(steps, dtype=torch.float32),
                                                     "exp_avg": moments[0][name], "exp_avg_sq": moments[1][name]}
        trainer.obs = self.obs[run].clone()
        trainer.iteration, trainer.global_step = self.iteration, self.global_step

    def _save_checkpoint(self, run: int) -> None:
        """The run's checkpoint in the single-run layout, with its own generator as the global RNG state."""
        self._write_back(run)
        global_state = torch.get_rng_state()
        torch.set_rng_state(self.generators[run].get_state())
        try:
            self.trainers[run].save_checkpoint()
        finally:
            torch.set_rng_state(global_state)

    # ----------------------------------------------------------------------------- rollout
    @torch.no_grad()
    def collect_rollout(self, buffer: RolloutBuffer, has_final: Tensor, final_values: Tensor) -> Tensor:
        """``num_steps`` steps of every run's env copies into ``buffer`` (T, S, N, ...); returns V of
        the observations after them (S, N). As ``Trainer.collect_rollout``, run by run."""
        obs = self.obs
        has_final.zero_()
        for t in range(self.algo.num_steps):
            step = self.policy.act(obs, self.generators)
            result = self._step(self.policy.env_action(step))
            if result.final_obs is not None:  # V of real final observations, where truncated
                has_final[t] = result.has_final
                final_values[t] = self.policy.value(result.final_obs)
            buffer.add(
                t,
                obs=obs,
                actions=step.action,
                log_probs=step.log_prob,
                values=step.value,
                mask=step.mask & result.valid.unsqueeze(-1),
                rewards=result.reward,
                terminated=result.terminated,
                episode_ends=result.terminated | result.truncated,
            )
            obs = result.obs
        self.obs = obs
        return self.policy.value(obs)

    def _step(self, actions: Tensor) -> StackedStep:
        try:
            return self.step_envs([t.env for t in self.trainers], actions)
        except NonFiniteError as error:  # the env's own, named where it entered
            states = "; ".join(f"{t.run_dir}: {t._checkpoint_state()}" for t in self.trainers)
            raise NonFiniteError(f"{error}; the batch stopped: {states}") from None

    def compute_batch(self, buffer: RolloutBuffer, has_final: Tensor, final_values: Tensor, next_value: Tensor
                      ) -> RolloutBatch:
        """GAE per env copy, as ``Trainer.compute_batch``, then each run's steps as one row: (S, T·N, ...)."""
        values, mask = buffer["values"], buffer["mask"]  # (T, S, N, L)
        num_steps, num_runs, num_envs, decisions = values.shape
        successor_values = torch.cat([values[1:, ..., 0], next_value.unsqueeze(0)])  # (T, S, N)
        next_values = torch.where(has_final, final_values, successor_values)
        rewards = place_at_last_decision(buffer["rewards"], mask)  # (T, S, N, L)
        copies = lambda x: x.reshape(num_steps, num_runs * num_envs, *x.shape[3:])  # noqa: E731  (T, S·N, ...)
        advantages, returns = gae(copies(rewards), copies(values), copies(next_values), copies(buffer["terminated"]),
                                  copies(buffer["episode_ends"]), copies(mask), self.algo.gamma, self.algo.gae_lambda)
        by_run = lambda x: x.reshape(num_steps, num_runs, num_envs, *x.shape[2:]).transpose(0, 1).reshape(  # noqa: E731
            num_runs, num_steps * num_envs, *x.shape[2:])
        stored = lambda name: by_run(buffer[name].reshape(num_steps, num_runs * num_envs, *buffer[name].shape[3:]))  # noqa: E731
        return RolloutBatch(obs=stored("obs"), actions=stored("actions"), log_probs=stored("log_probs"),
                            values=stored("values"), advantages=by_run(advantages), returns=by_run(returns),
                            mask=stored("mask"), extras={})

    # ----------------------------------------------------------------------------- update
    def update(self, batch: RolloutBatch) -> dict[str, Tensor]:
        """Every run's update by its algorithm's rule, with the step sizes and clip range its own
        algorithm has at this point of training (they anneal alike: the runs are at one iteration)."""
        algorithms = [t.algorithm for t in self.trainers]
        lead = algorithms[0]
        lr = {name: lead.optimizers[name].param_groups[0]["lr"] for name in self.groups}
        every = lambda value: torch.full((len(algorithms),), float(value))  # noqa: E731
        if self.algo.name == "trpo":
            stats = trpo_update(self.policy, self.optimizers["critic"], batch, self.algo, lr["critic"], self.generators)
            return {**stats, "learning_rate": every(lr["critic"])}
        if self.algo.name == "reinforce":
            stats = reinforce_update(self.policy, self.optimizers["actor"], self.optimizers["critic"], batch,
                                     self.algo, lr["actor"], lr["critic"], self.generators)
            return {**stats, "learning_rate": every(lr["actor"]), "vf_learning_rate": every(lr["critic"])}
        penalty = None
        if lead.kl_controller is not None:
            penalty = torch.tensor([a.kl_controller.coef for a in algorithms], device=self.device)
        stats = ppo_update(self.policy, self.optimizers["policy"], batch, self.algo, lr["policy"], lead.clip_eps,
                           self.generators, penalty)
        stats["learning_rate"] = every(lr["policy"])
        if penalty is not None:
            stats["penalty_coef"] = penalty  # the β this update was penalised with
            for algorithm, kl in zip(algorithms, stats["kl_after_update"].tolist()):
                algorithm.kl_controller.update(kl)
        else:
            stats["clip_eps"] = every(lead.clip_eps)
        return stats

    # ----------------------------------------------------------------------------- loop
    def train(self) -> tuple[dict[str, dict[str, Any]], list[str]]:
        """Train every run to its end; returns each run's summary by run directory, and what stopped
        the runs that failed (a non-finite loss stops its run only, its last good checkpoint untouched)."""
        progress = tqdm(total=self.num_iterations * self.steps_per_iteration, initial=self.global_step,
                        unit="step", disable=not self.config.progress, dynamic_ncols=True)
        next_eval = self._next_multiple(self.config.eval_every)
        next_checkpoint = self._next_multiple(self.config.checkpoint_every)
        try:
            while self.trainers and self.iteration < self.num_iterations:
                buffer = RolloutBuffer(self.algo.num_steps, self.device)
                shape = (self.algo.num_steps, len(self.trainers), self.num_envs)
                has_final = torch.zeros(shape, dtype=torch.bool, device=self.device)
                final_values = torch.zeros(shape, device=self.device)
                started = time.perf_counter()
                remaining = 1.0 - self.iteration / self.num_iterations
                for trainer in self.trainers:
                    trainer.algorithm.set_progress(remaining)
                next_value = self.collect_rollout(buffer, has_final, final_values)
                stats = self.update(self.compute_batch(buffer, has_final, final_values, next_value))
                self.iteration += 1
                self.global_step += self.steps_per_iteration
                scalars = [t._scalars({k: v[run] for k, v in stats.items()}) for run, t in enumerate(self.trainers)]
                elapsed = time.perf_counter() - started
                progress.update(self.steps_per_iteration)
                last = self.iteration == self.num_iterations
                evaluate = self.config.eval_episodes > 0 and (last or self.global_step >= next_eval)
                checkpoint = self.global_step >= next_checkpoint
                failed = [not self._log(run, scalars[run], elapsed) for run in range(len(self.trainers))]
                results = self._evaluate([run for run, bad in enumerate(failed) if not bad]) if evaluate else {}
                finished = [bad or self._finish_iteration(run, results.get(run), last, checkpoint)
                            for run, bad in enumerate(failed)]
                if evaluate:
                    next_eval = self._next_multiple(self.config.eval_every)
                if checkpoint:
                    next_checkpoint = self._next_multiple(self.config.checkpoint_every)
                self._drop([run for run, done in enumerate(finished) if done])
        finally:
            progress.close()
            for logger in self.loggers:
                logger.close()
        return self.summaries, self.failures

    def _log(self, run: int, scalars: dict[str, float], elapsed: float) -> bool:
        """Run ``run``'s iteration into its clock and scalars, as its own ``Trainer.train`` would;
        False if its update was not finite (the run stops, its last good checkpoint untouched)."""
        trainer = self.trainers[run]
        trainer.wall_seconds += elapsed
        trainer.iteration, trainer.global_step = self.iteration, self.global_step
        try:
            trainer._check_finite(scalars)
        except NonFiniteError as error:
            self.failures.append(f"{trainer.run_dir}: {error}")
            return False
        scalars["charts/SPS"] = trainer.global_step / max(trainer.wall_seconds, 1e-9)
        self.loggers[run].log(scalars, trainer.global_step)
        return True

    def _evaluate(self, runs: list[int]) -> dict[int, dict[str, float]]:
        """The evaluations of ``runs``, by run, played together (ppo_core/batched_evaluation.py) by each
        run's ``RunEvaluator`` halves."""
        evaluators: dict[int, RunEvaluator] = {run: self.trainers[run].evaluate for run in runs
                                               if self.trainers[run].evaluate is not None}
        if not evaluators:
            return {}
        seeds = [e.prepare(len(self.trainers[run].eval_history)) for run, e in evaluators.items()]
        runs = list(evaluators)
        index = torch.tensor(runs, dtype=torch.long, device=self.device)
        episodes = evaluate_runs(self.policy.subset(index), [e.eval_env for e in evaluators.values()], seeds,
                                 self.step_eval_envs)
        return {run: evaluators[run].report(result) for run, result in zip(runs, episodes)}

    def _finish_iteration(self, run: int, evaluation: dict[str, float] | None, last: bool, checkpoint: bool) -> bool:
        """Record run ``run``'s evaluation, checkpoint it as its own ``Trainer.train`` would; whether it is done."""
        trainer = self.trainers[run]
        if evaluation is not None:
            trainer._record_evaluation(evaluation, self.loggers[run])
            last = last or trainer.solved()
        if last or checkpoint:
            try:
                self._save_checkpoint(run)
            except NonFiniteError as error:
                self.failures.append(f"{trainer.run_dir}: {error}")
                return True
        if last:
            self.summaries[str(trainer.run_dir)] = trainer.summary()
        return last

    def _drop(self, runs: list[int]) -> None:
        """Runs that finished leave the batch; the others' stacked state is kept."""
        if not runs:
            return
        for run in runs:
            self.loggers[run].close()
        keep = [run for run in range(len(self.trainers)) if run not in runs]
        index = torch.tensor(keep, dtype=torch.long, device=self.device)
        self.trainers = [self.trainers[i] for i in keep]
        self.generators = [self.generators[i] for i in keep]
        self.loggers = [self.loggers[i] for i in keep]
        if keep:
            self.policy.select(index)
            for optimizer in self.optimizers.values():
                optimizer.select(index)
            self.obs = self.obs[index]

    def _next_multiple(self, every: int) -> float:
        return math.inf if every <= 0 else (self.global_step // every + 1) * every
