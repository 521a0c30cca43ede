"""The text bandit: one step per episode, a prompt in and a completion out (Ziegler et al. 2019, §2;
Ouyang et al. 2022, "InstructGPT", §3.5).

The reward of completion y to prompt x is

    r(x, y) = RM(x, y) − penalties − β · Σ_l (log π(y_l | x, y_<l) − log π_SFT(y_l | x, y_<l)),

the k1 estimate of the sequence KL to the frozen SFT policy summed over the completion's valid
tokens (InstructGPT eq. 2 without the pretraining term). Both log-probs are at the sampling
temperature T, so at T = 1 this is exactly InstructGPT's penalty. With ``kl_in_reward=False`` the
reward is the RM score alone (less penalties) and the reference log-probs travel in ``extras`` for a
KL term in the loss.

Penalties (subtracted from the RM score; TRL's ``missing_eos_penalty`` is the first):
- ``no_eos_penalty``: the completion has no EOS within ``max_new_tokens`` (cut off, not finished).
- ``empty_penalty``: the completion is EOS alone.
- ``nonfinite_penalty``: the RM returned NaN or ±inf; the score is replaced by −nonfinite_penalty
  and counted in ``info["nonfinite"]``, so a bad score never stops training.

Prompts longer than the context minus ``max_new_tokens`` are an error naming the prompt and both
lengths (``prompt_overflow="error"``, the default), or are cut from the left with one logged warning
(``prompt_overflow="truncate"``: the instruction sits at a prompt's end, so its start goes).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from agents.lm import sequence_log_probs
from envs.base import EpisodeStats, StepResult
from ppo_core.align.data import encode_prompt, pad_sequences
from ppo_core.errors import ConfigError

log = logging.getLogger(__name__)

RewardFn = Callable[[Tensor, Tensor], Tensor]  # (input_ids (N, T), attention_mask (N, T)) -> scores (N,)
GoldFn = Callable[[int, str], float]  # (prompt index, completion text) -> gold score
OVERFLOW = ("error", "truncate")
METRICS = ("rlhf_reward", "scores", "kl", "nonfinite", "no_eos", "empty", "completion_length", "gold")


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
    scores: Tensor  # (N,) RM(x, y), non-finite ones replaced
    penalty: Tensor  # (N,) subtracted from the score
    kl: Tensor  # (N,) Σ_l per_token_kl
    per_token_kl: Tensor  # (N, L) log π − log π_SFT on valid tokens, 0 elsewhere
    ref_log_prob: Tensor  # (N, L) log π_SFT at temperature T, 0 where masked
    nonfinite: Tensor  # (N,) bool
    no_eos: Tensor  # (N,) bool
    empty: Tensor  # (N,) bool


class TextReward(nn.Module):
    """RM score minus penalties minus the KL to the frozen reference, for a batch of completions.

    Holds the reference policy π_SFT (frozen, eval mode, never trained) and the reward model, and
    scores a batch with one forward of each.
    """

    def __init__(
        self,
        reference: PreTrainedModel,
        reward_model: RewardFn,
        eos_token_id: int,
        temperature: float = 1.0,
        beta: float = 0.02,
        kl_in_reward: bool = True,
        no_eos_penalty: float = 1.0,
        empty_penalty: float = 1.0,
        nonfinite_penalty: float = 10.0,
    ):
        super().__init__()
        self.reference = reference.eval().requires_grad_(False)
        if isinstance(reward_model, nn.Module):
            reward_model.eval().requires_grad_(False)
        self.reward_model = reward_model
        self.eos_token_id = int(eos_token_id)
        self.temperature, self.beta, self.kl_in_reward = float(temperature), float(beta), bool(kl_in_reward)
        self.no_eos_penalty, self.empty_penalty = float(no_eos_penalty), float(empty_penalty)
        self.nonfinite_penalty = float(nonfinite_penalty)

    def train(self, mode: bool = True) -> "TextReward":
        return super().train(False)

    @torch.no_grad()
    def forward(self, prompt_ids: Tensor, prompt_mask: Tensor, tokens: Tensor, mask: Tensor, log_prob: Tensor) -> RewardParts:
        """Score completions ``tokens`` (N, L) with ``mask`` (N, L) and the policy's ``log_prob`` (N, L)
        of prompts ``prompt_ids`` / ``prompt_mask`` (N, P)."""
        mask = mask.bool()
        ref_log_prob = sequence_log_probs(self.reference, prompt_ids, prompt_mask, tokens, mask, self.temperature)
        per_token_kl = torch.where(mask, log_prob - ref_log_prob, 0.0)  # (N, L)
        kl = per_token_kl.sum(-1)  # (N,)
        raw = self.reward_model(torch.cat([prompt_ids, tokens], 1), torch.cat([prompt_mask.long(), mask.long()], 1))
        raw = raw.float()
        nonfinite = ~torch.isfinite(raw)
        scores = torch.where(nonfinite, -self.nonfinite_penalty, raw)
        is_eos = (tokens == self.eos_token_id) & mask
        no_eos = ~is_eos.any(-1)
        empty = is_eos[:, 0]
        penalty = self.no_eos_penalty * no_eos + self.empty_penalty * empty  # (N,)
        reward = scores - penalty - (self.beta * kl if self.kl_in_reward else 0.0)
        return RewardParts(reward, scores, penalty, kl, per_token_kl, ref_log_prob, nonfinite, no_eos, empty)


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


def gold_scores(gold: GoldFn, tokenizer: PreTrainedTokenizerBase, index: Tensor, tokens: Tensor, mask: Tensor) -> Tensor:
    """Gold scores (N,) of decoded completions: a host round trip, taken only when a gold scorer is set."""
    rows = [row[keep] for row, keep in zip(tokens.cpu(), mask.cpu())]
    texts = tokenizer.batch_decode(rows, skip_special_tokens=True)
    values = [gold(int(i), text) for i, text in zip(index.tolist(), texts)]
    return torch.tensor(values, dtype=torch.float32, device=tokens.device)


class TextBanditVecEnv:
    """N prompts per step, torch-native (``envs.base.VecEnv``): every step ends N episodes.

    Prompts are drawn without replacement from a shuffled order that is renewed once used up (in order
    when ``shuffle`` is false, which evaluation uses), with the env's own ``torch.Generator``.
    ``step`` takes ``{"tokens", "mask", "log_prob"}`` (N, L) and returns the reward (N,), the reward's
    parts in ``info`` and ``extras["ref_log_prob"]`` (N, L) for the buffer.
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
    ):
        self.prompts = PromptSet(prompts.texts, prompts.input_ids.to(device), prompts.attention_mask.to(device))
        self.reward = reward
        self.tokenizer = tokenizer
        self.num_envs, self.max_new_tokens = int(num_envs), int(max_new_tokens)
        self.device, self.shuffle, self.gold = device, shuffle, gold
        self.single_observation_space = prompt_space(prompts, len(tokenizer))
        self.single_action_space = completion_space(max_new_tokens, len(tokenizer))
        self.generator = torch.Generator()  # on the CPU: its state is saved with checkpoints
        self.order = torch.arange(len(prompts.texts), device=device)
        self.cursor = 0
        self.index = torch.zeros(num_envs, dtype=torch.long, device=device)  # (N,) prompts being answered
        self.return_sum = torch.zeros((), dtype=torch.float64, device=device)
        self.episodes = 0
        self.metric_sums = torch.zeros(len(METRICS), dtype=torch.float64, device=device)
        self.metric_count, self.gold_count = 0, 0

    # ----------------------------------------------------------------------------- prompts
    def _new_order(self) -> Tensor:
        """A pass over the prompt set, moved to the device once per pass, not once per step."""
        m = len(self.prompts.texts)
        order = torch.randperm(m, generator=self.generator) if self.shuffle else torch.arange(m)
        return order.to(self.device)

    def _draw(self) -> Tensor:
        picked, needed = [], self.num_envs
        while needed > 0:
            if self.cursor == len(self.order):
                self.order, self.cursor = self._new_order(), 0
            take = self.order[self.cursor : self.cursor + needed]
            picked.append(take)
            self.cursor += len(take)
            needed -= len(take)
        return picked[0] if len(picked) == 1 else torch.cat(picked)  # (N,)

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
        tokens, mask = action["tokens"], action["mask"].bool()
        parts = self.reward(obs["input_ids"], obs["attention_mask"], tokens, mask, action["log_prob"])
        info: dict[str, Any] = parts._asdict()
        gold = None
        if self.gold is not None:
            gold = info["gold"] = gold_scores(self.gold, self.tokenizer, obs["prompt_index"], tokens, mask)
        self._record(parts, mask, gold)
        n = self.num_envs
        self.index = self._draw()
        return StepResult(
            obs=self._observe(),
            reward=parts.reward,
            terminated=torch.ones(n, dtype=torch.bool, device=self.device),
            truncated=torch.zeros(n, dtype=torch.bool, device=self.device),
            valid=torch.ones(n, dtype=torch.bool, device=self.device),
            final_obs=None,
            info=info,
            extras={"ref_log_prob": parts.ref_log_prob},
        )

    def _record(self, parts: RewardParts, mask: Tensor, gold: Tensor | None) -> None:
        zero = torch.zeros((), device=self.device)
        sums = torch.stack([parts.reward.sum(), parts.scores.sum(), parts.kl.sum(), parts.nonfinite.sum(),
                            parts.no_eos.sum(), parts.empty.sum(), mask.sum(), zero if gold is None else gold.sum()])
        self.metric_sums += sums.double()
        self.return_sum += sums[0].double()
        self.episodes += self.num_envs
        self.metric_count += self.num_envs
        self.gold_count += 0 if gold is None else self.num_envs

    # ----------------------------------------------------------------------------- statistics
    def pop_episode_stats(self) -> EpisodeStats:
        """Raw returns of the episodes (completions) since the last pop; one host sync."""
        stats = EpisodeStats(float(self.return_sum), self.episodes, self.episodes)
        self.return_sum.zero_()
        self.episodes = 0
        return stats

    def pop_metrics(self) -> dict[str, float]:
        """Means per completion since the last pop, TRL's objective/* quantities: rlhf_reward, scores,
        kl, the fractions nonfinite, no_eos and empty, completion_length in tokens, and gold when scored."""
        sums = self.metric_sums.tolist()
        metrics = {key: value / max(self.metric_count, 1) for key, value in zip(METRICS[:-1], sums)}
        if self.gold_count:
            metrics["gold"] = sums[-1] / self.gold_count
        self.metric_sums.zero_()
        self.metric_count, self.gold_count = 0, 0
        return metrics

    # ----------------------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state(), "order": self.order.clone(), "cursor": self.cursor,
                "index": self.index.clone(), "return_sum": self.return_sum.clone(), "episodes": self.episodes}

    def load_state_dict(self, state: dict[str, Any], restore_episodes: bool = True) -> None:
        """Restore the prompt stream; ``restore_episodes=False`` (evaluation) keeps this env's own."""
        if not restore_episodes:
            return
        self.generator.set_state(state["generator"])
        self.order, self.cursor = state["order"].to(self.device).clone(), int(state["cursor"])
        self.index = state["index"].to(self.device).clone()
        self.return_sum = state["return_sum"].to(self.device, torch.float64).clone()
        self.episodes = int(state["episodes"])

    def close(self) -> None:
        pass


class TextBanditEnv(gym.Env):
    """The single-step Gymnasium form: ``reset`` serves one prompt drawn with ``self.np_random``,
    ``step`` takes one completion (the ``completion_space`` dict) and ends the episode
    (``terminated=True``) with the reward of ``TextReward``. The returned observation after the step
    is the answered prompt again; it is never acted on.
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
        self.prompts, self.reward, self.tokenizer, self.gold = prompts, reward, tokenizer, gold
        self.observation_space = prompt_space(prompts, len(tokenizer))
        self.action_space = completion_space(max_new_tokens, len(tokenizer))
        self.index = 0

    def _observe(self) -> dict[str, Any]:
        return {"input_ids": self.prompts.input_ids[self.index].cpu().numpy().astype(np.int64),
                "attention_mask": self.prompts.attention_mask[self.index].cpu().numpy().astype(np.int64),
                "prompt_index": np.int64(self.index)}

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[dict[str, Any], dict]:
        super().reset(seed=seed)
        self.index = int(self.np_random.integers(len(self.prompts.texts)))
        return self._observe(), {}

    def step(self, action: dict[str, np.ndarray]) -> tuple[dict[str, Any], float, bool, bool, dict[str, Any]]:
        device = self.prompts.input_ids.device
        tokens = torch.as_tensor(np.asarray(action["tokens"]), dtype=torch.long, device=device)[None]  # (1, L)
        mask = torch.as_tensor(np.asarray(action["mask"]), device=device).bool()[None]
        log_prob = torch.as_tensor(np.asarray(action["log_prob"]), dtype=torch.float32, device=device)[None]
        index = torch.tensor([self.index], device=device)
        parts = self.reward(self.prompts.input_ids[index], self.prompts.attention_mask[index], tokens, mask, log_prob)
        info = {key: value[0].cpu().numpy() for key, value in parts._asdict().items() if key != "reward"}
        if self.gold is not None:
            info["gold"] = float(gold_scores(self.gold, self.tokenizer, index, tokens, mask)[0])
        return self._observe(), float(parts.reward[0]), True, False, info
