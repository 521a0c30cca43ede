"""What the text bandit's score RM(x, y) is made of: named reward sources, weighted and summed, as TRL's
``reward_funcs`` with ``reward_weights``.

A source maps a step's ``Completions`` to one score per completion (N,):
- ``TokenScorer``: a reward model that shares the policy's vocabulary reads the token ids as they are;
- ``RetokenizedScorer``: a reward model with a vocabulary of its own reads prompt + completion text,
  tokenized its way (decoded once per step, shared with every other text source);
- ``FunctionReward``: a Python function ``fn(prompts, completions, **columns)`` (a verifier, a format
  check), handed the prompt rows' extra columns;
- ``GoldReward``: the embedded world's gold labeler.
"""

from __future__ import annotations

import functools
import inspect
import logging
import math
import numbers
import traceback
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor
from transformers import PreTrainedTokenizerBase

from agents.lm import trim_padding
from envs.text_encoding import pad_sequences
from ppo_core.errors import ConfigError

log = logging.getLogger(__name__)

RewardFn = Callable[[Tensor, Tensor], Tensor]  # (input_ids (N, T), attention_mask (N, T)) -> scores (N,)
GoldFn = Callable[[int, str], float]  # (prompt index, completion text) -> gold score


class Completions:
    """A step's prompts and completions as a reward source reads them: token ids on the device and, on
    first use, the prompt texts and decoded completion texts (one host round trip per step, however
    many text sources there are)."""

    def __init__(self, prompt_ids: Tensor, prompt_mask: Tensor, tokens: Tensor, mask: Tensor,
                 prompt_index: Tensor | None = None, prompt_texts: Sequence[str] | None = None,
                 tokenizer: PreTrainedTokenizerBase | None = None):
        self.prompt_ids, self.prompt_mask = prompt_ids, prompt_mask  # (N, P) left-padded
        self.tokens = tokens  # (N, L)
        self.mask = mask.bool().cumprod(-1).bool()  # (N, L): a completion ends at its mask's first False
        self.prompt_index, self.prompt_texts, self.tokenizer = prompt_index, prompt_texts, tokenizer

    @functools.cached_property
    def trimmed(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``agents.lm.trim_padding`` of the batch: only the columns some row uses."""
        return trim_padding(self.prompt_ids, self.prompt_mask, self.tokens, self.mask)

    @functools.cached_property
    def ended(self) -> Tensor:
        """(N,) bool: the completion ends with the policy's EOS (rather than being cut off)."""
        if self.tokenizer is None:
            raise ValueError("this reward source reads text: the batch needs the policy's tokenizer")
        return ((self.tokens == self.tokenizer.eos_token_id) & self.mask).any(-1)

    @functools.cached_property
    def indices(self) -> list[int]:
        if self.prompt_index is None:
            raise ValueError("this reward source reads the prompts' rows: the batch needs prompt_index")
        return self.prompt_index.tolist()

    @functools.cached_property
    def prompts(self) -> list[str]:
        if self.prompt_texts is None:
            raise ValueError("this reward source reads text: the batch needs the prompt texts")
        return [self.prompt_texts[i] for i in self.indices]

    @functools.cached_property
    def texts(self) -> list[str]:
        """The completions decoded without special tokens (the EOS that ends them, the padding after)."""
        if self.tokenizer is None:
            raise ValueError("this reward source reads text: the batch needs the policy's tokenizer")
        rows = [row[keep] for row, keep in zip(self.tokens.cpu(), self.mask.cpu())]
        return self.tokenizer.batch_decode(rows, skip_special_tokens=True)


class TokenScorer:
    """A reward model over the policy's own token ids: prompt + completion as sampled, no re-tokenising."""

    def __init__(self, score: RewardFn):
        self.score = score

    def __call__(self, batch: Completions) -> Tensor:
        prompt_ids, prompt_mask, tokens, mask = batch.trimmed
        return self.score(torch.cat([prompt_ids, tokens], 1), torch.cat([prompt_mask.long(), mask.long()], 1))


class RetokenizedScorer:
    """A reward model with its own tokenizer: it reads ``prompt + completion`` as text, encoded its way
    (with the special tokens its tokenizer adds in front), then its own EOS after a completion that ended
    with the policy's, as ``TokenScorer`` reads the sampled EOS and as the ``rm`` stage trains;
    right-padded and cut from the left to its ``context`` (logged once)."""

    def __init__(self, score: RewardFn, tokenizer: PreTrainedTokenizerBase, context: int):
        if tokenizer.pad_token_id is None:
            raise ValueError("the reward model's tokenizer has no pad token")
        self.score, self.tokenizer, self.context = score, tokenizer, int(context)
        self.eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
        self.warned = False

    def __call__(self, batch: Completions) -> Tensor:
        texts = [prompt + completion for prompt, completion in zip(batch.prompts, batch.texts)]
        ended = batch.ended.tolist()
        encoded = [ids + self.eos if end else ids for ids, end in zip(self.tokenizer(texts)["input_ids"], ended)]
        cut = [ids[-self.context:] for ids in encoded]
        if not self.warned and (cut_count := sum(len(ids) > self.context for ids in encoded)):
            log.warning("%d of %d prompt + completion texts are longer than the reward model's context of %d "
                        "tokens; they are cut from the left (logged once)", cut_count, len(encoded), self.context)
            self.warned = True
        ids, mask = pad_sequences(cut, self.tokenizer.pad_token_id, side="right")
        device = batch.tokens.device
        return self.score(ids.to(device), mask.to(device))


class FunctionReward:
    """``fn(prompts: list[str], completions: list[str], **columns) -> list[float] | array | tensor``,
    ``columns`` the prompt rows' extra fields (one list entry per completion). A wrong length or a
    non-number is a ConfigError naming the function and the row; a non-finite value is kept, and the
    text env replaces it by its ``nonfinite_penalty`` like a non-finite RM score (logged once)."""

    RESERVED = ("prompts", "completions")

    def __init__(self, fn: Callable[..., Any], name: str, columns: Mapping[str, Sequence[Any]] | None = None):
        self.fn, self.name, self.columns = fn, name, dict(columns or {})
        self.warned = False
        if clash := [key for key in self.columns if key in self.RESERVED]:
            raise ConfigError(f"the prompt rows have a column named {clash[0]!r}, which reward function {name} "
                              "already receives as an argument; rename the column")
        try:
            inspect.signature(fn).bind(prompts=[], completions=[], **dict.fromkeys(self.columns, []))
        except TypeError as error:
            raise ConfigError(f"reward function {name} cannot be called as fn(prompts, completions, "
                              f"{', '.join(f'{key}=' for key in self.columns) or '**columns'}): {error}; give it a "
                              "**kwargs parameter to take the columns it does not use") from None
        except ValueError:  # a builtin without a signature: the first call tells
            pass

    def __call__(self, batch: Completions) -> Tensor:
        indices = batch.indices
        columns = {key: [values[i] for i in indices] for key, values in self.columns.items()}
        try:
            values = self.fn(prompts=batch.prompts, completions=batch.texts, **columns)
        except Exception as error:  # the user's code: one line naming it, where it failed and why
            frame = traceback.extract_tb(error.__traceback__)[-1]
            raise ConfigError(f"reward function {self.name} raised {type(error).__name__}: {error} (at "
                              f"{frame.filename}:{frame.lineno})") from error
        scores = self._as_tensor(values, len(indices))
        if not self.warned and not bool(torch.isfinite(scores).all()):
            row = int((~torch.isfinite(scores)).nonzero()[0, 0])
            log.warning("reward function %s returned %s for completion %d (prompt %d); non-finite scores become "
                        "-env.nonfinite_penalty and are counted in objective/nonfinite", self.name,
                        float(scores[row]), row, indices[row])
            self.warned = True
        return scores.to(batch.tokens.device)

    def _as_tensor(self, values: Any, count: int) -> Tensor:
        if isinstance(values, Tensor):
            values = values.detach().cpu()
            if values.dim() != 1 or values.is_complex() or values.dtype == torch.bool:
                raise ConfigError(f"reward function {self.name} returned a tensor of shape {tuple(values.shape)} and "
                                  f"dtype {values.dtype}; expected {count} real numbers, one per completion")
            values = values.tolist()
        elif isinstance(values, np.ndarray):
            values = values.tolist()
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
            raise ConfigError(f"reward function {self.name} returned a {type(values).__name__}; expected a list, "
                              f"NumPy array or tensor of {count} numbers, one per completion")
        if len(values) != count:
            raise ConfigError(f"reward function {self.name} returned {len(values)} values for {count} completions")
        for row, value in enumerate(values):
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise ConfigError(f"reward function {self.name} returned {value!r} ({type(value).__name__}) for "
                                  f"completion {row}; expected a real number")
        return torch.tensor([float(v) for v in values], dtype=torch.float32)


class GoldReward:
    """The embedded world's gold labeler on the decoded completions."""

    def __init__(self, gold: GoldFn):
        self.gold = gold

    def __call__(self, batch: Completions) -> Tensor:
        values = [self.gold(i, text) for i, text in zip(batch.indices, batch.texts)]
        return torch.tensor(values, dtype=torch.float32, device=batch.tokens.device)


Source = Callable[[Completions], Tensor]


class RewardSet:
    """Named sources and their weights: score = Σ_i w_i · source_i(batch), each source's scores kept
    for the logs (``objective/reward/<name>``)."""

    def __init__(self, sources: Mapping[str, tuple[Source, float]]):
        if not sources:
            raise ValueError("a reward needs at least one source")
        for name, (_, weight) in sources.items():
            if not math.isfinite(weight):
                raise ValueError(f"the weight of reward {name!r} is {weight}; expected a finite number")
        self.sources = dict(sources)

    @classmethod
    def of_model(cls, score: RewardFn, name: str = "rm") -> "RewardSet":
        """One reward model over the policy's token ids, weight 1."""
        return cls({name: (TokenScorer(score), 1.0)})

    def __call__(self, batch: Completions) -> tuple[Tensor, dict[str, Tensor]]:
        """The weighted sum (N,) and each source's own scores (N,)."""
        named = {name: source(batch).float() for name, (source, _) in self.sources.items()}
        total = None
        for name, (_, weight) in self.sources.items():
            if weight == 0.0:  # logged, not summed: a NaN it returns must not reach the score
                term = torch.zeros_like(named[name])
            else:
                term = named[name] if weight == 1.0 else weight * named[name]
            total = term if total is None else total + term
        return total, named
