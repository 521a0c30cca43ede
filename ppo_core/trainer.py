"""The one training loop: roll out, estimate advantages, update, log, evaluate, checkpoint.

It sees a vector env, a policy and an algorithm through their interfaces only (envs/base.py,
agents/base.py, ppo_core/algorithms.py); every kind of env goes through the same lines.

In a data-parallel run (torchrun, ppo_core/distributed.py) every process runs this loop on its own
env copies, ``total_timesteps`` counts the env steps of all of them, the update sees the union of
their rollouts, and rank 0 alone logs, evaluates and writes checkpoints (which hold every rank's env
state and RNG, so that a resumed run continues exactly).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor
from tqdm import tqdm

from agents.base import ActorCritic
from envs.base import Observation, VecEnv
from ppo_core import checkpoint, distributed
from ppo_core.advantages import DECISION_REWARDS, gae, place_rewards
from ppo_core.algorithms import Algorithm
from ppo_core.buffer import RolloutBatch, RolloutBuffer, tree_map
from ppo_core.config import TrainConfig
from ppo_core.errors import ConfigError, NonFiniteError
from ppo_core.group_baseline import rollout_group_advantages, start_groups
from ppo_core.logging import RunLogger

log = logging.getLogger(__name__)

Evaluator = Callable[[int], dict[str, float]]
"""Evaluation number (0, 1, ...) -> metrics, e.g. ``mean_reward``."""


class Trainer:
    def __init__(
        self,
        config: TrainConfig,
        env: VecEnv,
        policy: ActorCritic,
        algorithm: Algorithm,
        run_dir: Path,
        evaluate: Evaluator | None = None,
        device: torch.device = torch.device("cpu"),
    ):
        self.config = config
        self.env = env
        self.policy = policy
        self.algorithm = algorithm
        self.run_dir = Path(run_dir)
        self.evaluate = evaluate  # rank 0's alone in a data-parallel run
        self.evaluates = distributed.from_main(evaluate is not None)
        self.device = device
        algo = config.algo
        self.world_size = distributed.world_size()
        self.steps_per_iteration = algo.num_steps * env.num_envs * self.world_size
        self.num_iterations = max(1, config.total_timesteps // self.steps_per_iteration)
        if self.num_iterations * self.steps_per_iteration != config.total_timesteps:
            log.info("total_timesteps=%d is not a multiple of algo.num_steps × env.num_envs%s = %d: training runs "
                     "%d env steps (%d rollouts)", config.total_timesteps,
                     " × processes" if self.world_size > 1 else "", self.steps_per_iteration,
                     self.num_iterations * self.steps_per_iteration, self.num_iterations)
        self.buffer = RolloutBuffer(algo.num_steps, device)
        # V of the real final observation where an episode was truncated (same-step autoreset)
        self.final_values = torch.zeros(algo.num_steps, env.num_envs, device=device)
        self.has_final = torch.zeros(algo.num_steps, env.num_envs, dtype=torch.bool, device=device)
        self.groups = start_groups(algo, env)  # (N,) copies that start alike, for a group baseline; else None
        self.iteration = 0
        self.global_step = 0
        self.wall_seconds = 0.0  # training time, evaluation excluded
        self.eval_history: list[dict[str, float]] = []
        self.obs: Observation = None
        self.checkpoint_path = self.run_dir / "checkpoint.pt"
        self.checkpoint_step: int | None = None  # env step of the last checkpoint this run wrote or resumed from

    def start(self, seed: int) -> None:
        """Reset the env for a fresh run (a resumed run gets its observation from the checkpoint). Rank r
        of a data-parallel run seeds its copies after those of ranks 0..r−1: together they are the
        copies one process with all of them would have."""
        self.obs = self.env.reset(seed=seed + distributed.rank() * self.env.num_envs)

    # ----------------------------------------------------------------------------- rollout
    @torch.no_grad()
    def collect_rollout(self) -> Tensor:
        """Fill the buffer with ``num_steps`` env steps; returns V of the observation after them."""
        obs = self.obs
        self.has_final.zero_()
        for t in range(self.config.algo.num_steps):
            step = self.policy.act(obs)
            result = self.env.step(self.policy.env_action(step))
            if result.final_obs is not None:
                self.has_final[t] = result.truncated
                self.final_values[t] = self.policy.value(result.final_obs)
            self.buffer.add(
                t,
                obs=obs,
                actions=step.action,
                log_probs=step.log_prob,
                values=step.value,
                mask=step.mask & result.valid.unsqueeze(-1),
                rewards=result.reward,
                terminated=result.terminated,
                episode_ends=result.terminated | result.truncated,
                extras=result.extras,
            )
            obs = result.obs
        self.obs = obs
        last_terminated = self.buffer["terminated"][-1]
        if bool(last_terminated.all()):  # e.g. one-step episodes: no bootstrap, skip the forward pass
            return torch.zeros(last_terminated.shape, device=self.device)
        return self.policy.value(obs)

    def compute_batch(self, next_value: Tensor) -> RolloutBatch:
        """GAE over the rollout, flattened to one batch. V(s_{t+1}) comes from the next step, or from the
        real final observation where an episode was truncated (bootstrapping on time limits); a step's
        reward is credited to its last decision (its only one, for a control action) unless the env
        spreads it over the decisions itself (``extras["decision_rewards"]``)."""
        algo = self.config.algo
        b = self.buffer
        values, mask = b["values"], b["mask"]  # (T, N, L)
        successor_values = torch.cat([values[1:, :, 0], next_value.unsqueeze(0)])  # (T, N)
        next_values = torch.where(self.has_final, self.final_values, successor_values)
        rewards = place_rewards(b["rewards"], mask, b.storage.get("extras", {}).get(DECISION_REWARDS))  # (T, N, L)
        advantages, returns = gae(
            rewards, values, next_values, b["terminated"], b["episode_ends"], mask, algo.gamma, algo.gae_lambda
        )
        if self.groups is not None:  # a group baseline replaces V in the advantage; V still learns the returns
            advantages = rollout_group_advantages(algo, self.groups, rewards, b["episode_ends"], mask)
        return b.flatten(advantages, returns)

    # ----------------------------------------------------------------------------- loop
    def train(self) -> dict[str, Any]:
        main = distributed.is_main()
        logger = RunLogger(self.run_dir, enabled=main)
        progress = tqdm(total=self.num_iterations * self.steps_per_iteration, initial=self.global_step,
                        unit="step", disable=not (self.config.progress and main), dynamic_ncols=True)
        next_eval = self._next_multiple(self.config.eval_every)
        next_checkpoint = self._next_multiple(self.config.checkpoint_every)
        try:
            while self.iteration < self.num_iterations:
                started = time.perf_counter()
                self.algorithm.set_progress(1.0 - self.iteration / self.num_iterations)
                failure = None
                try:
                    next_value = self.collect_rollout()
                except NonFiniteError as error:  # the env's own, named where it entered
                    failure = NonFiniteError(f"{error}; training stopped: {self._checkpoint_state()}")
                distributed.stop_together(failure)  # every rank stops, with the message of the one that failed
                with distributed.global_batch():
                    stats = self.algorithm.update(self.compute_batch(next_value))
                self.iteration += 1
                self.global_step += self.steps_per_iteration
                scalars = self._scalars(stats)  # the one host sync of an iteration
                self.wall_seconds += time.perf_counter() - started
                self._check_finite(scalars)
                scalars["charts/SPS"] = self.global_step / max(self.wall_seconds, 1e-9)
                logger.log(scalars, self.global_step)
                progress.update(self.steps_per_iteration)
                progress.set_postfix(steps_per_s=f"{scalars['charts/SPS']:.0f}",
                                     train_episode_return=f"{logger.recent_return:.1f}")
                last = self.iteration == self.num_iterations
                if self.evaluates and (last or self.global_step >= next_eval):
                    if self.evaluate is not None:
                        self._run_evaluation(logger)
                    next_eval = self._next_multiple(self.config.eval_every)
                    last = last or distributed.from_main(self.solved())
                if last or self.global_step >= next_checkpoint:
                    self.save_checkpoint()
                    next_checkpoint = self._next_multiple(self.config.checkpoint_every)
                if last:
                    break
        finally:
            progress.close()
            logger.close()
        return self.summary()

    def solved(self) -> bool:
        """The last ``stop_after_evals`` evaluations all reached ``stop_at_return`` (SB3's
        StopTrainingOnRewardThreshold asks for one; several in a row keep a lucky one from ending a run)."""
        threshold, count = self.config.stop_at_return, self.config.stop_after_evals
        recent = self.eval_history[-count:]
        return threshold is not None and len(recent) == count and all(e["mean_reward"] >= threshold for e in recent)

    def _next_multiple(self, every: int) -> float:
        return math.inf if every <= 0 else (self.global_step // every + 1) * every

    def _scalars(self, stats: dict[str, Tensor]) -> dict[str, float]:
        """The update's statistics (global already) with the episodes and env metrics of every rank."""
        failure = None
        try:
            episodes = self.env.pop_episode_stats()
        except NonFiniteError as error:  # from an env that checks its outputs once a rollout (envs/torch_classic)
            failure = NonFiniteError(f"{error}; training stopped: {self._checkpoint_state()}")
        distributed.stop_together(failure)
        values = torch.stack([v.detach().float().cpu() for v in stats.values()]).tolist()
        scalars = {f"losses/{key}": value for key, value in zip(stats, values)}
        episode_sums = [float(episodes.count), float(episodes.return_sum), float(episodes.length_sum)]
        metrics = self.env.pop_metrics()
        if self.world_size > 1:
            ranks = distributed.gather_to_all((episode_sums, metrics))
            episode_sums = [sum(values) for values in zip(*(sums for sums, _ in ranks))]
            metrics = {key: sum(m[key] for _, m in ranks if key in m) / sum(key in m for _, m in ranks)
                       for key in dict.fromkeys(key for _, m in ranks for key in m)}
        scalars.update({f"objective/{key}": value for key, value in metrics.items()})
        count, return_sum, length_sum = episode_sums
        if count > 0:
            scalars["charts/episodic_return"] = return_sum / count
            scalars["charts/episodic_length"] = length_sum / count
        return scalars

    def _check_finite(self, scalars: dict[str, float]) -> None:
        bad = [key for key, value in scalars.items()
               if key.startswith("losses/") and key != "losses/explained_variance" and not math.isfinite(value)]
        if bad:
            raise NonFiniteError(f"non-finite {', '.join(bad)} at env step {self.global_step}; training stopped: "
                                 f"{self._checkpoint_state()}")

    def _checkpoint_state(self) -> str:
        """What a stopped run leaves on disk, said truly whether or not a checkpoint exists yet."""
        if self.checkpoint_step is None:
            return "no checkpoint had been written yet"
        return f"the last good checkpoint ({self.checkpoint_path}, env step {self.checkpoint_step}) is untouched"

    def _run_evaluation(self, logger: RunLogger) -> None:
        self._record_evaluation(self.evaluate(len(self.eval_history)), logger)

    def _record_evaluation(self, result: dict[str, float], logger: RunLogger) -> None:
        """Evaluation ``len(eval_history)``'s figures into the history and the run's scalars."""
        result["env_steps"] = self.global_step
        result["wall_seconds"] = self.wall_seconds
        self.eval_history.append(result)
        log.info("evaluation at env step %d: mean return %.2f ± %.2f over %d episodes", self.global_step,
                 result["mean_reward"], result.get("std_reward", 0.0), self.config.eval_episodes)
        logger.log({f"eval/{key}": value for key, value in result.items() if key not in ("env_steps",)}, self.global_step)

    # ----------------------------------------------------------------------------- state
    def rank_state(self) -> dict[str, Any]:
        """What differs between the ranks of a data-parallel run: their envs, observations and RNGs."""
        return {"env": self.env.state_dict(), "obs": self.obs, "rng": checkpoint.rng_state()}

    def state_dict(self) -> dict[str, Any]:
        """The run's state (a data-parallel run's rank 0 adds the other ranks' ``rank_state``s)."""
        return {
            "model": self.policy.state_dict(),
            "algorithm": self.algorithm.state_dict(),
            **self.rank_state(),
            "iteration": self.iteration,
            "global_step": self.global_step,
            "wall_seconds": self.wall_seconds,
            "eval_history": self.eval_history,
            "config": dataclasses.asdict(self.config),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        saved_world = state.get("world_size", 1)
        if saved_world != self.world_size:
            raise ConfigError(f"the checkpoint was written by {saved_world} process(es) and this run has "
                              f"{self.world_size}: resume it with the same number (torchrun --nproc_per_node="
                              f"{saved_world}), so every rank continues its own env copies")
        own = state if distributed.rank() == 0 else state["ranks"][distributed.rank() - 1]
        self.policy.load_state_dict(state["model"])
        self.algorithm.load_state_dict(state["algorithm"])
        self.iteration = state["iteration"]
        self.global_step = self.checkpoint_step = state["global_step"]
        self.obs = tree_map(lambda x: x.to(self.device), own["obs"])
        if not self.env.load_state_dict(own["env"]):  # episodes not captured (async) or from another env kind
            self.obs = self.env.reset(seed=self.config.seed + self.global_step + distributed.rank() * self.env.num_envs)
        self.wall_seconds = state["wall_seconds"]
        self.eval_history = list(state["eval_history"])
        checkpoint.set_rng_state(own["rng"])

    def save_checkpoint(self) -> None:
        """Write the checkpoint atomically (rank 0, with every rank's own state); never a non-finite one."""
        if not all(torch.isfinite(p).all() for p in self.policy.parameters()):  # identical on every rank
            raise NonFiniteError(f"non-finite parameters at env step {self.global_step}; training stopped: "
                                 f"{self._checkpoint_state()}")
        others = distributed.gather_to_main(self.rank_state() if distributed.rank() > 0 else None)
        if distributed.is_main():
            state = self.state_dict()
            if self.world_size > 1:
                state.update(world_size=self.world_size, ranks=others[1:])
            checkpoint.save_atomic(state, self.checkpoint_path)
        self.checkpoint_step = self.global_step

    def summary(self) -> dict[str, Any]:
        last_eval = self.eval_history[-1] if self.eval_history else {}
        return {
            "eval_mean_return": last_eval.get("mean_reward"),
            "eval_std_return": last_eval.get("std_reward"),
            "env_steps": self.global_step,
            "wall_seconds": self.wall_seconds,
            "stopped_early": self.iteration < self.num_iterations,
            "eval_history": self.eval_history,
        }
