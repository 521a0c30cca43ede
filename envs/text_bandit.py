"""The text bandit: one step per episode, a prompt in and a completion out (Ziegler et al. 2019, §2;
Ouyang et al. 2022, "InstructGPT", §3.5).

The reward of completion y to prompt x is

    r(x, y) = RM(x, y) − penalties − β · Σ_l KL_l,

RM(x, y) the weighted sum of the configured reward sources (``envs/text_rewards.py``: reward models
over the policy's tokens or their own, Python functions, the gold labeler), KL_l the per-token KL to the frozen SFT policy at the completion's valid tokens. With the defaults
(estimator k1, direction reverse) KL_l = log π(y_l | x, y_<l) − log π_SFT(y_l | x, y_<l) and this is
InstructGPT's eq. 2 without the pretraining term. Both log-probs are at the sampling temperature T,
so at T = 1 this is exactly InstructGPT's penalty. The trainer credits it to the completion's last
token; with ``kl_placement="token_reward"`` the same reward reaches it spread over the tokens, −β·KL_l at
token l and RM(x, y) − penalties at the last (TRL's PPO), for GAE over the tokens to carry. With
``kl_placement="loss"`` the reward is the RM
score alone (less penalties) and the reference log-probs and β travel in ``extras`` for the KL term
of the loss (``ppo_core.align.objective_terms.ReferenceKLLoss``).

Penalties (subtracted from the RM score; TRL's ``missing_eos_penalty`` is the first):
- ``no_eos_penalty``: the completion has no EOS within ``max_new_tokens`` (cut off, not finished).
- ``empty_penalty``: the completion is EOS alone.
- ``nonfinite_penalty``: the score is NaN or ±inf (a reward model's or a function's); it is replaced
  by −nonfinite_penalty and counted in ``info["nonfinite"]``, so a bad score never stops training.

Prompts longer than the context minus ``max_new_tokens`` are an error naming the prompt and both
lengths (``prompt_overflow="error"``, the default), or are cut from the left with one logged warning
(``prompt_overflow="truncate"``: the instruction sits at a prompt's end, so its start goes).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from typing import Any, NamedTuple

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from agents.distributions import Categorical
from agents.lm import (
    adapter_layers,
    adapters_disabled,
    packed_logits_error,
    packed_sequence_distributions,
    pad_completion_columns,
    sequence_distributions,
)
from agents.packing import PACKING_TOLERANCE
from envs.base import EpisodeStats, StepResult
from envs.text_encoding import encode_prompt, pad_sequences
from envs.text_rewards import Completions, GoldFn, GoldReward, RewardFn, RewardSet
from ppo_core.advantages import DECISION_REWARDS, place_at_last_decision
from ppo_core.distributed import mean_over_ranks, world_size
from ppo_core.errors import ConfigError
from ppo_core.kl import ESTIMATORS, check_kl_treatment, kl_estimate, token_kl
from ppo_core.kl_control import AdaptiveKLController, FixedKLController

log = logging.getLogger(__name__)

OVERFLOW = ("error", "truncate")


class PromptSet(NamedTuple):
    """Prompts tokenized once and left-padded to the longest one."""

    texts: list[str]
    input_ids: Tensor  # (M, P)
    attention_mask: Tensor  # (M, P)


def tokenize_prompts(
    texts: Sequence[str], tokenizer: PreTrainedTokenizerBase, max_prompt_tokens: int, overflow: str = "error"
) -> PromptSet:
    """Token ids of each prompt as SFT saw them (``encode_prompt``), checked against the room left in
    the context for the completion."""
    if overflow not in OVERFLOW:
        raise ConfigError(f"env.prompt_overflow={overflow!r} is unknown; expected one of {OVERFLOW}")
    if not texts:
        raise ConfigError("the prompt set is empty")
    encoded, cut = [], 0
    for i, text in enumerate(texts):
        ids, truncated = encode_prompt(tokenizer, text, max_prompt_tokens)
        if not ids:  # the first token would be predicted from padding alone
            raise ConfigError(f"prompt {i} ({text!r}) has no tokens; every prompt needs at least one")
        if truncated and overflow == "error":
            full = len(tokenizer(text)["input_ids"])
            raise ConfigError(
                f"prompt {i} ({text[:60]!r}{'...' if len(text) > 60 else ''}) has {full} tokens but only "
                f"{max_prompt_tokens} fit (context length minus env.max_new_tokens); shorten it, lower "
                "env.max_new_tokens, or set env.prompt_overflow=truncate to cut prompts from the left"
            )
        encoded.append(ids)
        cut += truncated
    if cut:
        log.warning("truncated %d/%d prompts from the left to %d tokens", cut, len(texts), max_prompt_tokens)
    input_ids, attention_mask = pad_sequences(encoded, tokenizer.pad_token_id, side="left")
    return PromptSet(list(texts), input_ids, attention_mask)


class RewardParts(NamedTuple):
    reward: Tensor  # (N,) what the agent is trained on
    scores: Tensor  # (N,) RM(x, y), the sources' weighted sum, non-finite ones replaced
    penalty: Tensor  # (N,) subtracted from the score
    kl: Tensor  # (N,) Σ_l per_token_kl: the KL the penalty is made of
    per_token_kl: Tensor  # (N, L) the configured per-token KL on valid tokens, 0 elsewhere
    token_rewards: Tensor  # (N, L) the reward as the placement spreads it over the tokens; sums to `reward`
    ref_log_prob: Tensor  # (N, L) log π_SFT at temperature T, 0 where masked
    nonfinite: Tensor  # (N,) bool
    no_eos: Tensor  # (N,) bool
    empty: Tensor  # (N,) bool
    kl_estimates: dict[str, Tensor]  # name -> (N,) every estimator summed over the completion, for the logs
    source_scores: dict[str, Tensor]  # name -> (N,) each reward source's own score, non-finite ones replaced


def instructgpt_reward(scores: Tensor, penalty: Tensor, per_token_kl: Tensor, kl_coef: float) -> Tensor:
    """r(x, y) = RM(x, y) − penalties − β·Σ_l KL_l (Ouyang et al. 2022, eq. 2 without the ptx term):
    ``scores`` and ``penalty`` (N,), ``per_token_kl`` (N, L) zero off the completion, β = ``kl_coef``."""
    return scores - penalty - kl_coef * per_token_kl.sum(-1)


class TextReward(nn.Module):
    """RM score minus penalties minus β times the KL to the frozen reference, for a batch of completions.

    Holds the reference policy π_SFT (frozen, eval mode, never trained) and the reward sources
    (a ``RewardSet``, or one reward model over the policy's token ids), and scores a batch with one
    forward of each model on packed sequences (``agents/packing.py``, no padding),
    or, for a model that cannot be packed, cut to the columns the batch uses (``agents.lm.trim_padding``).
    The KL treatment (``ppo_core.kl``): ``placement`` reward (subtract β·Σ_l KL_l here, with k1 in the
    reverse direction KL(π‖π_SFT), the only per-sample reward with the KL's gradient), token_reward
    (the same reward, spread as −β·KL_l at token l and the score less penalties at the last token, as
    TRL's PPO does; the env hands that spread to the trainer in ``extras["decision_rewards"]``) or loss (the
    reward is the RM score and the algorithm adds β·KL to its loss, from the reference log-probs this
    env returns in ``extras``: estimator k2 or exact for the reverse direction, k3 or exact for the
    forward KL(π_SFT‖π)).
    β is fixed, or adapted towards ``kl_coef_target`` by Ziegler et al.'s controller after every step.
    Whatever is configured, every step measures k1, k2, k3 and (given π's full distributions) the
    exact KL in both directions, so a negative k1 report can be told apart from a real one.
    """

    def __init__(
        self,
        reference: PreTrainedModel,
        rewards: RewardSet | RewardFn,
        eos_token_id: int,
        temperature: float = 1.0,
        kl_coef: float = 0.05,
        estimator: str = "k1",
        direction: str = "reverse",
        placement: str = "reward",
        kl_coef_target: float | None = None,
        kl_horizon: float = 10_000,
        no_eos_penalty: float = 1.0,
        empty_penalty: float = 1.0,
        nonfinite_penalty: float = 10.0,
    ):
        super().__init__()
        check_kl_treatment(estimator, direction, placement)
        self.reference = reference.eval().requires_grad_(False)
        self.packed_reference = packed_logits_error(self.reference, eos_token_id) <= PACKING_TOLERANCE
        self.rewards = rewards if isinstance(rewards, RewardSet) else RewardSet.of_model(rewards)
        self.reference_adapters: list[nn.Module] | None = None  # LoRA layers a policy put in the reference, if any
        self.autocast_dtype: torch.dtype | None = None  # the policy's CUDA autocast dtype, for π_SFT's forwards
        self.eos_token_id = int(eos_token_id)
        self.temperature = float(temperature)
        self.estimator, self.direction, self.placement = estimator, direction, placement
        self.controller = (FixedKLController(kl_coef) if kl_coef_target is None
                           else AdaptiveKLController(kl_coef, kl_coef_target, kl_horizon))
        self.no_eos_penalty, self.empty_penalty = float(no_eos_penalty), float(empty_penalty)
        self.nonfinite_penalty = float(nonfinite_penalty)

    @property
    def kl_coef(self) -> float:
        return self.controller.coef

    def _reference_log_probs(self, batch: Completions) -> Tensor:
        """π_SFT's log-probs (N, L, V) before each completion token, at temperature T."""
        if self.packed_reference:
            return packed_sequence_distributions(self.reference, batch.prompt_ids, batch.prompt_mask, batch.tokens,
                                                 batch.mask, self.temperature, self.eos_token_id).log_probs
        distributions = sequence_distributions(self.reference, *batch.trimmed, self.temperature)
        return pad_completion_columns(distributions.log_probs, batch.tokens.shape[1])

    def train(self, mode: bool = True) -> "TextReward":
        return super().train(False)

    @torch.no_grad()
    def forward(
        self, batch: Completions, log_prob: Tensor, log_probs: Tensor | None = None, scores: Tensor | None = None,
    ) -> tuple[RewardParts, Tensor]:
        """Score the completions of ``batch`` given the policy's ``log_prob`` (N, L) (and full ``log_probs``
        (N, L, V), needed by the exact KL). Returns the parts and π_SFT's full log-probs (N, L, V).
        Given ``scores`` (N,), they replace the reward sources'."""
        tokens, mask = batch.tokens, batch.mask
        if self.reference_adapters is None:  # read at the first step, once the policy is built
            self.reference_adapters = adapter_layers(self.reference)
        precision = (torch.autocast("cuda", dtype=self.autocast_dtype) if self.autocast_dtype is not None
                     else contextlib.nullcontext())
        with adapters_disabled(self.reference_adapters), precision:
            reference = Categorical(self._reference_log_probs(batch))  # (N, L, V)
        ref_log_prob = torch.where(mask, reference.log_prob(tokens), 0.0)  # (N, L)
        if log_probs is None and (self.estimator == "exact" or self.direction == "forward"):
            raise ValueError(f"objective.kl_estimator={self.estimator} with objective.kl_direction={self.direction} needs the "
                             "policy's full distributions (action['log_probs']): the exact KL, and the forward "
                             "KL(π_SFT‖π) in either placement, sum over the vocabulary")
        per_token = {name: kl_estimate(log_prob, ref_log_prob, name) for name in ESTIMATORS}  # (N, L) each
        if log_probs is not None:  # over the vocabulary at valid tokens only: (n_valid, V), not (N, L, V)
            sampled = log_prob[mask], ref_log_prob[mask]  # (n_valid,)
            distributions = log_probs[mask], reference.log_probs[mask]  # (n_valid, V)
            for name, direction in (("exact", "reverse"), ("exact_forward", "forward")):
                per_token[name] = ref_log_prob.new_zeros(ref_log_prob.shape).masked_scatter(
                    mask, token_kl(*sampled, "exact", direction, *distributions))
        per_token = {name: torch.where(mask, kl, 0.0) for name, kl in per_token.items()}
        chosen = per_token[self.estimator if self.direction == "reverse" else "exact_forward"]  # (N, L)
        named = {}
        if scores is None:
            scores, named = self.rewards(batch)
        raw = scores.float()
        nonfinite = ~torch.isfinite(raw)
        scores = torch.where(nonfinite, -self.nonfinite_penalty, raw)
        named = {name: torch.where(torch.isfinite(value), value, -self.nonfinite_penalty) for name, value in named.items()}
        is_eos = (tokens == self.eos_token_id) & mask
        no_eos = ~is_eos.any(-1)
        empty = is_eos[:, 0]
        penalty = self.no_eos_penalty * no_eos + self.empty_penalty * empty  # (N,)
        if self.placement == "loss":  # the KL goes to the loss (ReferenceKLLoss) through extras
            reward = scores - penalty
        else:
            reward = instructgpt_reward(scores, penalty, chosen, self.kl_coef)
        if self.placement == "token_reward":  # TRL's PPO: −β·KL_l at token l, the score at the last token
            token_rewards = place_at_last_decision((scores - penalty)[None], mask[None])[0] - self.kl_coef * chosen
        else:  # all of it at the last token
            token_rewards = place_at_last_decision(reward[None], mask[None])[0]  # (N, L)
        estimates = {f"kl_{name}": value.sum(-1) for name, value in per_token.items()}
        parts = RewardParts(reward, scores, penalty, chosen.sum(-1), chosen, token_rewards, ref_log_prob, nonfinite,
                            no_eos, empty, estimates, named)
        return parts, reference.log_probs


def prompt_space(prompts: PromptSet, vocab_size: int) -> gym.spaces.Dict:
    width = prompts.input_ids.shape[1]
    return gym.spaces.Dict({
        "input_ids": gym.spaces.Box(0, vocab_size - 1, (width,), np.int64),
        "attention_mask": gym.spaces.Box(0, 1, (width,), np.int64),
        "prompt_index": gym.spaces.Discrete(len(prompts.texts)),
    })


def completion_space(max_new_tokens: int, vocab_size: int) -> gym.spaces.Dict:
    """What ``LMActorCritic.env_action`` hands over, per env."""
    return gym.spaces.Dict({
        "tokens": gym.spaces.MultiDiscrete(np.full(max_new_tokens, vocab_size, dtype=np.int64)),
        "mask": gym.spaces.MultiBinary(max_new_tokens),
        "log_prob": gym.spaces.Box(-np.inf, 0.0, (max_new_tokens,), np.float32),
    })


class TextBanditVecEnv:
    """N completions per step, torch-native (``envs.base.VecEnv``): every step ends N episodes.

    Prompts are drawn without replacement from a shuffled order that is renewed once used up (in order
    when ``shuffle`` is false, which evaluation uses), with the env's own ``torch.Generator``. With
    ``samples_per_prompt`` K a step answers N/K prompts K times each, the copies of one prompt adjacent;
    ``start_groups`` (N,) names each copy's prompt slot, the groups a group baseline (RLOO, GRPO)
    compares.
    ``step`` takes ``{"tokens", "mask", "log_prob"}`` (N, L) and returns the reward (N,), the reward's
    parts in ``info`` and ``extras["ref_log_prob"]`` (N, L) for the buffer. With ``gold`` (the embedded
    world's labeler) every completion is also gold-scored for the logs; as a reward source it is part
    of ``reward.rewards`` instead.
    """

    def __init__(
        self,
        prompts: PromptSet,
        reward: TextReward,
        tokenizer: PreTrainedTokenizerBase,
        num_envs: int,
        max_new_tokens: int,
        device: torch.device = torch.device("cpu"),
        shuffle: bool = True,
        gold: GoldFn | None = None,
        adapt_kl_coef: bool = True,
        samples_per_prompt: int = 1,
    ):
        if samples_per_prompt < 1 or num_envs % samples_per_prompt:
            raise ConfigError(f"env.num_envs={num_envs} is not a multiple of env.samples_per_prompt={samples_per_prompt}: "
                              "each step answers num_envs / samples_per_prompt prompts samples_per_prompt times each")
        self.samples_per_prompt = int(samples_per_prompt)
        self.start_groups = torch.arange(num_envs, device=device) // self.samples_per_prompt  # (N,)
        self.prompts = PromptSet(prompts.texts, prompts.input_ids.to(device), prompts.attention_mask.to(device))
        self.reward = reward
        self.tokenizer = tokenizer
        self.num_envs, self.max_new_tokens = int(num_envs), int(max_new_tokens)
        self.device, self.shuffle = device, shuffle
        self.gold = None if gold is None else GoldReward(gold)
        self.adapt_kl_coef = adapt_kl_coef and isinstance(reward.controller, AdaptiveKLController)
        self.single_observation_space = prompt_space(prompts, len(tokenizer))
        self.single_action_space = completion_space(max_new_tokens, len(tokenizer))
        self.generator = torch.Generator()  # on the CPU: its state is saved with checkpoints
        self.order = torch.arange(len(prompts.texts), device=device)
        self.cursor = 0
        self.index = torch.zeros(num_envs, dtype=torch.long, device=device)  # (N,) prompts being answered
        self.return_sum = torch.zeros((), dtype=torch.float64, device=device)
        self.episodes = 0
        self.metric_sums: dict[str, Tensor] = {}  # name -> sum over completions since the last pop
        self.metric_count = 0

    # ----------------------------------------------------------------------------- prompts
    def _new_order(self) -> Tensor:
        """A pass over the prompt set, moved to the device once per pass, not once per step."""
        m = len(self.prompts.texts)
        order = torch.randperm(m, generator=self.generator) if self.shuffle else torch.arange(m)
        return order.to(self.device)

    def _draw(self) -> Tensor:
        """The next N/K prompts of the order, each repeated K times: (N,)."""
        picked, needed = [], self.num_envs // self.samples_per_prompt
        while needed > 0:
            if self.cursor == len(self.order):
                self.order, self.cursor = self._new_order(), 0
            take = self.order[self.cursor : self.cursor + needed]
            picked.append(take)
            self.cursor += len(take)
            needed -= len(take)
        drawn = picked[0] if len(picked) == 1 else torch.cat(picked)  # (N/K,)
        return drawn if self.samples_per_prompt == 1 else drawn.repeat_interleave(self.samples_per_prompt)

    def _observe(self) -> dict[str, Tensor]:
        index = self.index
        return {"input_ids": self.prompts.input_ids[index], "attention_mask": self.prompts.attention_mask[index],
                "prompt_index": index}

    def reset(self, seed: int | None = None) -> dict[str, Tensor]:
        if seed is not None:
            self.generator.manual_seed(seed)
        self.order, self.cursor = self._new_order(), 0
        self.index = self._draw()
        return self._observe()

    # ----------------------------------------------------------------------------- step
    def step(self, action: dict[str, Tensor]) -> StepResult:
        obs = self._observe()
        tokens, mask = action["tokens"], action["mask"]
        batch = Completions(obs["input_ids"], obs["attention_mask"], tokens, mask, obs["prompt_index"],
                            self.prompts.texts, self.tokenizer)
        parts, ref_log_probs = self.reward(batch, action["log_prob"], action.get("log_probs"))
        gold = parts.source_scores.get("gold") if self.gold is not None else None
        if self.gold is not None and gold is None:
            gold = self.gold(batch)
        info: dict[str, Any] = parts._asdict()
        kl_coef = self.reward.kl_coef  # the β this step's rewards were penalised with
        metrics = {"rlhf_reward": parts.reward, "scores": parts.scores, "kl": parts.kl, **parts.kl_estimates,
                   "nonfinite": parts.nonfinite, "no_eos": parts.no_eos, "empty": parts.empty,
                   "completion_length": batch.mask.sum(-1),
                   **{f"reward/{name}": value for name, value in parts.source_scores.items()}}
        if gold is not None:
            metrics["gold"] = info["gold"] = gold
        self._record(metrics)
        if self.adapt_kl_coef:
            # one host sync per step; a data-parallel run's ranks adapt one β on all their completions
            self.reward.controller.update(mean_over_ranks(parts.kl.mean()), self.num_envs * world_size())
        n = self.num_envs
        extras = {"ref_log_prob": parts.ref_log_prob}
        if self.reward.placement == "token_reward":  # the trainer credits each token its own reward
            extras[DECISION_REWARDS] = parts.token_rewards
        if self.reward.placement == "loss":
            extras["kl_coef"] = torch.full((n,), kl_coef, device=self.device)
            if self.reward.estimator == "exact":
                extras["ref_log_probs"] = ref_log_probs
        self.index = self._draw()
        return StepResult(
            obs=self._observe(),
            reward=parts.reward,
            terminated=torch.ones(n, dtype=torch.bool, device=self.device),
            truncated=torch.zeros(n, dtype=torch.bool, device=self.device),
            valid=torch.ones(n, dtype=torch.bool, device=self.device),
            final_obs=None,
            info=info,
            extras=extras,
        )

    def _record(self, metrics: dict[str, Tensor]) -> None:
        for name, values in metrics.items():
            total = values.double().sum()
            self.metric_sums[name] = self.metric_sums[name] + total if name in self.metric_sums else total
        self.return_sum += metrics["rlhf_reward"].double().sum()
        self.episodes += self.num_envs
        self.metric_count += self.num_envs

    # ----------------------------------------------------------------------------- statistics
    def pop_episode_stats(self) -> EpisodeStats:
        """Raw returns of the episodes (completions) since the last pop; one host sync."""
        stats = EpisodeStats(float(self.return_sum), self.episodes, self.episodes)
        self.return_sum.zero_()
        self.episodes = 0
        return stats

    def pop_metrics(self) -> dict[str, float]:
        """Means per completion since the last pop (TRL's objective/* quantities): rlhf_reward, scores,
        kl (the penalised one) and kl_k1, kl_k2, kl_k3, kl_exact, kl_exact_forward (sums over the
        completion), the fractions nonfinite, no_eos and empty, completion_length in tokens, gold when
        scored; and beta, the current KL coefficient ``kl_coef``. One host sync."""
        names = list(self.metric_sums)
        values = torch.stack(list(self.metric_sums.values())).tolist() if names else []
        metrics = {name: value / max(self.metric_count, 1) for name, value in zip(names, values)}
        metrics["beta"] = self.reward.kl_coef  # logged as objective/beta
        self.metric_sums, self.metric_count = {}, 0
        return metrics

    # ----------------------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state(), "order": self.order.clone(), "cursor": self.cursor,
                "index": self.index.clone(), "return_sum": self.return_sum.clone(), "episodes": self.episodes,
                "kl_controller": self.reward.controller.state_dict()}

    def load_state_dict(self, state: dict[str, Any], restore_episodes: bool = True) -> bool:
        """Restore the prompt stream; ``restore_episodes=False`` (evaluation) keeps this env's own."""
        if not restore_episodes:
            return True
        self.generator.set_state(state["generator"])
        self.order, self.cursor = state["order"].to(self.device).clone(), int(state["cursor"])
        self.index = state["index"].to(self.device).clone()
        self.return_sum = state["return_sum"].to(self.device, torch.float64).clone()
        self.episodes = int(state["episodes"])
        self.reward.controller.load_state_dict(state["kl_controller"])
        return True

    def close(self) -> None:
        pass


class TextBanditEnv(gym.Env):
    """The single-step Gymnasium form: ``reset`` serves one prompt drawn with ``self.np_random``,
    ``step`` takes one completion (the ``completion_space`` dict) and ends the episode
    (``terminated=True``) with the reward of ``TextReward``. It is a ``TextBanditVecEnv`` of one copy
    (fixed β) behind NumPy in and out; the observation after the step is the answered prompt again,
    never acted on.
    """

    metadata = {"render_modes": []}

    def __init__(
        self,
        prompts: PromptSet,
        reward: TextReward,
        tokenizer: PreTrainedTokenizerBase,
        max_new_tokens: int,
        gold: GoldFn | None = None,
    ):
        self.device = prompts.input_ids.device
        self.vec = TextBanditVecEnv(prompts, reward, tokenizer, 1, max_new_tokens, self.device, shuffle=False,
                                    gold=gold, adapt_kl_coef=False)
        self.observation_space = self.vec.single_observation_space
        self.action_space = self.vec.single_action_space
        self.index = 0

    def _observe(self) -> dict[str, Any]:
        self.vec.index = torch.tensor([self.index], device=self.device)
        obs = {key: value[0].cpu().numpy().astype(np.int64) for key, value in self.vec._observe().items()}
        return {**obs, "prompt_index": np.int64(self.index)}  # Discrete: a scalar, not a 0-d array

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[dict[str, Any], dict]:
        super().reset(seed=seed)
        self.index = int(self.np_random.integers(len(self.vec.prompts.texts)))
        return self._observe(), {}

    def step(self, action: dict[str, np.ndarray]) -> tuple[dict[str, Any], float, bool, bool, dict[str, Any]]:
        self._observe()  # the vector env answers this env's prompt
        dtypes = {"tokens": torch.long, "mask": torch.bool, "log_prob": torch.float32, "log_probs": torch.float32}
        batched = {key: torch.as_tensor(np.asarray(value), device=self.device).to(dtypes[key])[None]  # (1, ...)
                   for key, value in action.items() if key in dtypes}
        result = self.vec.step(batched)
        info = {key: value[0].cpu().numpy() for key, value in result.info.items()
                if key not in ("reward", "kl_estimates", "source_scores")}
        info.update({key: float(value[0]) for key, value in result.info["kl_estimates"].items()})
        info.update({f"reward/{key}": float(value[0]) for key, value in result.info["source_scores"].items()})
        return self._observe(), float(result.reward[0]), True, False, info
