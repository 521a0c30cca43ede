"""A Hugging Face causal LM as an actor-critic over completions (Ouyang et al. 2022, "InstructGPT").

An observation is a batch of LEFT-padded prompts, ``{"input_ids": (N, P), "attention_mask": (N, P)}``
(other keys, e.g. ``prompt_index``, are ignored). An action is a completion of exactly
``max_new_tokens`` = L tokens, right-padded with ``pad_token_id`` after its first EOS; each token is
one decision. Log-probs come from ``token_log_probs`` (logits / T, then log-softmax) in sampling and
in training alike, and the rollout's log-probs and values come from the same ``_forward`` that
``evaluate`` uses, so the first PPO minibatch has ratio 1 (up to float summation order, ~1e-6).

Prompts arrive left-padded to the longest of their whole set and completions right-padded to L, so a
batch carries columns that none of its rows uses. ``trim_padding`` says how forwards skip them:

- ``"pack"`` (default): no forward sees padding. Each batch's sequences are laid end to end in rows
  of its longest (``agents/packing.py``), and the vocabulary projection runs only where a completion
  token is predicted. The fastest by far on the CPU when prompt lengths vary (benchmarks/RESULTS.md);
  each packing reads the sequence lengths on the host, syncs a GPU would wait on. The rollout and a
  minibatch pack their rows differently, so the first ratio is 1 up to float summation order (~1e-6).
  Needs a model (and a separate value trunk) whose attention honours packed position ids and whose
  logits are its output embedding of the last hidden state (GPT-2, Llama and most decoders; checked
  when the policy is built).
- ``"minibatch"``: every forward is cut to its own batch's columns, minibatches included; the first
  ratio is 1 up to summation order. The fastest mode for a model that packing refuses.
- ``"none"``: every forward at the full width, the reference the other modes are tested against.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
from collections.abc import Iterator
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import PreTrainedModel

from agents.base import Observation, PolicyEvaluation, PolicyStep
from agents.distributions import Categorical
from agents.packing import PACKING_TOLERANCE, pack, packing_error, position_ids
from agents.reward_model import RewardModel

CRITICS = ("head", "separate")
TRIM_MODES = ("pack", "minibatch", "none")


class Completion(NamedTuple):
    """What the sampling loop produced, before the fresh scoring pass of ``act``."""

    tokens: Tensor  # (N, L) right-padded with pad after the first EOS
    mask: Tensor  # (N, L) bool: tokens up to and including the first EOS
    log_prob: Tensor  # (N, L) generation-time log π(y_l | x, y_<l) at temperature T; 0 where masked


def completion_mask(tokens: Tensor, eos_token_id: int) -> Tensor:
    """(N, L) bool: the tokens up to and including the first EOS (all of them when there is none)."""
    is_eos = (tokens == eos_token_id).long()  # (N, L)
    return (is_eos.cumsum(-1) - is_eos) == 0


def token_log_probs(logits: Tensor, temperature: float) -> Tensor:
    """log-softmax(logits / T) over the vocabulary: (..., V).

    The one place a sampling distribution is defined: the rollout samples from it and training scores
    the same tokens under it. There is no top-k or top-p filtering: after one update a sampled token can
    fall outside the new policy's filtered support, and its ratio and every KL to it become infinite
    (TRL samples RL rollouts unfiltered for the same reason).
    """
    return torch.log_softmax(logits.float() / temperature, dim=-1)


def used_columns(prompt_mask: Tensor, mask: Tensor) -> tuple[int, int]:
    """First prompt column and one-past-last completion column that any row uses (one host sync).

    Prompts are left-padded (to the longest of their set) and completions right-padded after EOS, so
    a batch usually needs far fewer columns than it carries.
    """
    prompt_used = prompt_mask.bool().any(0).long()  # (P,)
    completion_used = mask.bool().any(0).long()  # (L,)
    # an all-zero mask gives argmax 0: nothing is cut
    start, unused_tail = torch.stack([prompt_used.argmax(), completion_used.flip(0).argmax()]).tolist()
    return start, completion_used.shape[0] - unused_tail


def trim_padding(prompt_ids: Tensor, prompt_mask: Tensor, tokens: Tensor, mask: Tensor) -> tuple[Tensor, ...]:
    """The batch cut to the columns some row uses: prompt_ids, prompt_mask (N, P'), tokens, mask (N, L').

    Positions come from the attention mask and attention is causal, so every kept output is the same
    function of the same inputs; only floating-point summation order may differ (~1e-6).
    """
    start, end = used_columns(prompt_mask, mask)
    return prompt_ids[:, start:], prompt_mask[:, start:], tokens[:, :end], mask[:, :end]


def pad_completion_columns(x: Tensor, length: int) -> Tensor:
    """Zero-pad dim 1 of ``x`` (N, L', ...) back to ``length`` completion columns after ``trim_padding``."""
    cut = length - x.shape[1]
    return x if cut == 0 else F.pad(x, (0, 0) * (x.dim() - 2) + (0, cut))


def sequence_inputs(prompt_ids: Tensor, prompt_mask: Tensor, tokens: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Model inputs that predict every completion token: prompt plus all but the last completion token.

    Returns input_ids, attention_mask and position_ids, each (N, P + L − 1); the last L positions
    predict tokens 0 .. L − 1. Completion positions after the first EOS are masked out.
    """
    input_ids = torch.cat([prompt_ids, tokens[:, :-1]], dim=1)
    attention_mask = torch.cat([prompt_mask.long(), mask[:, :-1].long()], dim=1)
    return input_ids, attention_mask, position_ids(attention_mask)


def completion_logits(
    model: PreTrainedModel, prompt_ids: Tensor, prompt_mask: Tensor, tokens: Tensor, mask: Tensor, hidden: bool = False
) -> tuple[Tensor, Tensor | None]:
    """One forward over prompt + completion: logits that predict each completion token (N, L, V) and,
    when ``hidden``, the final hidden states at those positions (N, L, H)."""
    length = tokens.shape[1]
    input_ids, attention_mask, positions = sequence_inputs(prompt_ids, prompt_mask, tokens, mask)
    out = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=positions,
                output_hidden_states=hidden, logits_to_keep=length, use_cache=False)
    return out.logits, (out.hidden_states[-1][:, -length:] if hidden else None)


def trunk_hidden(trunk: nn.Module, prompt_ids: Tensor, prompt_mask: Tensor, tokens: Tensor, mask: Tensor) -> Tensor:
    """Final hidden states of a transformer trunk (no LM head) at the positions that predict each
    completion token: (N, L, H)."""
    input_ids, attention_mask, positions = sequence_inputs(prompt_ids, prompt_mask, tokens, mask)
    out = trunk(input_ids=input_ids, attention_mask=attention_mask, position_ids=positions, use_cache=False)
    return out.last_hidden_state[:, -tokens.shape[1]:]


def packed_completion_hidden(
    trunk: nn.Module, prompt_ids: Tensor, prompt_mask: Tensor, tokens: Tensor, mask: Tensor, fill_id: int
) -> Tensor:
    """``trunk_hidden`` from a packed forward (``agents/packing.py``): final hidden states at the
    positions that predict each completion token (N, L, H), arbitrary where ``mask`` is False."""
    input_ids, attention_mask, _ = sequence_inputs(prompt_ids, prompt_mask, tokens, mask)
    last_prompt_column = prompt_ids.shape[1] - 1  # predicts the first completion token
    packed = pack(input_ids, attention_mask, fill_id, required_column=last_prompt_column)
    return packed.unpack(packed.hidden_states(trunk), slice(last_prompt_column, None))


def at_decisions(values: Tensor, mask: Tensor) -> Tensor:
    """Values of the valid decisions (n, ...) placed in a zero tensor (N, L, ...) at ``mask``."""
    placed = values.new_zeros(*mask.shape, *values.shape[1:])
    placed[mask] = values  # in place: no second (N, L, V) tensor; gradients still reach ``values``
    return placed


def packed_logits_error(model: PreTrainedModel, fill_id: int) -> float:
    """How far the packed path is from the model's own forward: the trunk's ``packing_error``, and the
    largest |difference| between the model's logits and its output embedding of the trunk's last
    hidden states (which the packed path computes instead), on a short sequence."""
    ids = torch.tensor([[2, 3, 4, 5]], device=model.device) % model.get_output_embeddings().weight.shape[0]
    with torch.no_grad():
        logits = model(input_ids=ids, use_cache=False).logits
        projected = model.get_output_embeddings()(model.base_model(input_ids=ids, use_cache=False).last_hidden_state)
    return max(packing_error(model.base_model, fill_id), (projected - logits).abs().max().item())


def sequence_distributions(
    model: PreTrainedModel, prompt_ids: Tensor, prompt_mask: Tensor, tokens: Tensor, mask: Tensor, temperature: float
) -> Categorical:
    """π(· | x, y_<l) at temperature T before each completion token: log-probs (N, L, V).
    The text env scores its frozen reference π_SFT with this."""
    logits, _ = completion_logits(model, prompt_ids, prompt_mask, tokens, mask)
    return Categorical(token_log_probs(logits, temperature))


def projected_log_probs(model: PreTrainedModel, hidden: Tensor, temperature: float) -> Tensor:
    """``token_log_probs`` of the model's output embedding of final hidden states: (..., H) -> (..., V)."""
    return token_log_probs(model.get_output_embeddings()(hidden), temperature)


def packed_sequence_distributions(
    model: PreTrainedModel, prompt_ids: Tensor, prompt_mask: Tensor, tokens: Tensor, mask: Tensor, temperature: float,
    fill_id: int,
) -> Categorical:
    """``sequence_distributions`` from a packed forward, the vocabulary projected at valid tokens only:
    log-probs (N, L, V), 0 where ``mask`` is False. For models that pass ``packed_logits_error``."""
    hidden = packed_completion_hidden(model.base_model, prompt_ids, prompt_mask, tokens, mask, fill_id)[mask]  # (n, H)
    return Categorical(at_decisions(projected_log_probs(model, hidden, temperature), mask))


def adapter_layers(model: nn.Module) -> list[nn.Module]:
    """The LoRA (peft) layers injected into ``model``: modules that can switch their adapters off."""
    return [m for m in model.modules() if hasattr(m, "adapter_layer_names") and callable(getattr(m, "enable_adapters", None))]


@contextlib.contextmanager
def adapters_disabled(layers: list[nn.Module]) -> Iterator[None]:
    """Run the model of ``layers`` (``adapter_layers``) as its base weights: a LoRA policy's frozen
    reference π_SFT is the same model with its adapters off, so one copy of it is in memory."""
    for layer in layers:
        layer.enable_adapters(False)
    try:
        yield
    finally:
        for layer in layers:
            layer.enable_adapters(True)


def checkpointed_layers(model: nn.Module) -> list[nn.Module]:
    """The transformer blocks that recompute their activations in the backward pass once
    ``gradient_checkpointing_enable`` was called (transformers' ``GradientCheckpointingLayer``)."""
    return [m for m in model.modules() if getattr(m, "gradient_checkpointing", False)]


def kv_cache_argument(model: nn.Module) -> str:
    """The keyword a model's forward takes its KV cache by: ``cache`` in recent transformers 5.x,
    ``past_key_values`` (deprecated there, with a warning per call) before."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def kv_cache(output) -> object:
    """The KV cache a forward returned, under either name."""
    return output["cache"] if "cache" in output else output["past_key_values"]


class LMActorCritic(nn.Module):
    """Policy π_θ(y | x) = Π_l π_θ(y_l | x, y_<l) of a causal LM, and a per-token critic.

    V before decision l is a linear value head on the final hidden state at the position that
    predicts token l (the last prompt token for l = 0), as in Ziegler et al. 2019 and Stiennon et al.
    2020. ``critic="head"`` puts that head on the policy's own trunk: ``critic_parameters()`` is then
    the head alone, but PPO's combined loss (policy + vf_coef · value) still backpropagates the value
    loss into the shared trunk. ``critic="separate"`` gives the critic its own trunk, initialised from
    ``value_init`` (a reward model, as InstructGPT §3.5 initialises the value function from the RM) or
    else from a copy of the policy's initial trunk.

    Dropout is off in rollouts and updates alike (``train()`` keeps the module in eval mode): the
    rollout's log-probs must be those of the function being trained. ``trim_padding`` says how scoring
    forwards skip padding: packed, or cut to the columns a batch uses (module docstring).
    """

    def __init__(
        self,
        model: PreTrainedModel,
        pad_token_id: int,
        eos_token_id: int,
        max_new_tokens: int,
        temperature: float = 1.0,
        critic: str = "head",
        value_init: RewardModel | None = None,
        exit_check_every: int = 4,
        trim_padding: str = "pack",
        autocast_dtype: torch.dtype | None = None,
        gradient_checkpointing: bool = False,
    ):
        super().__init__()
        if pad_token_id is None or eos_token_id is None or pad_token_id == eos_token_id:
            raise ValueError(
                f"pad_token_id ({pad_token_id}) must be set and differ from eos_token_id ({eos_token_id}): "
                "completions are right-padded after EOS and the mask is read off the first EOS; give the "
                "tokenizer its own pad token (e.g. '<|pad|>') and resize the model's embeddings"
            )
        if critic not in CRITICS:
            raise ValueError(f"critic={critic!r} is unknown; expected one of {CRITICS}")
        if trim_padding not in TRIM_MODES:
            raise ValueError(f"trim_padding={trim_padding!r} is unknown; expected one of {TRIM_MODES}")
        if value_init is not None and critic != "separate":
            raise ValueError("value_init needs critic='separate' (the value function gets its own trunk)")
        if temperature <= 0 or max_new_tokens < 1 or exit_check_every < 1:
            raise ValueError(f"need temperature > 0 (got {temperature}), max_new_tokens >= 1 (got {max_new_tokens}), "
                             f"exit_check_every >= 1 (got {exit_check_every})")
        self.model = model
        self.cache_argument = kv_cache_argument(model)  # read once: the sampling loop passes it every token
        self.pad_token_id, self.eos_token_id = int(pad_token_id), int(eos_token_id)
        self.max_new_tokens, self.temperature = int(max_new_tokens), float(temperature)
        self.exit_check_every = int(exit_check_every)
        self.critic = critic
        self.trim_padding = trim_padding
        self.autocast_dtype = autocast_dtype
        self.checkpointed: list[nn.Module] = []
        if gradient_checkpointing:
            enable = getattr(model, "activation_checkpointing_enable", None)  # transformers >= 5.2 calls it this
            if enable is not None:
                enable(activation_checkpointing_kwargs={"use_reentrant": False})
            else:
                model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            self.checkpointed = checkpointed_layers(model)
            if not self.checkpointed:
                raise ValueError(f"{type(model).__name__} has no layers that support gradient checkpointing")
        self.value_trunk: nn.Module | None = None
        if critic == "separate":
            self.value_trunk = value_init.trunk if value_init is not None else copy.deepcopy(model.base_model)
        trunk_config = (self.value_trunk or model).config.get_text_config()
        self.value_head = nn.Linear(trunk_config.hidden_size, 1)
        nn.init.zeros_(self.value_head.weight)  # V = 0 at first: the value loss leaves a shared trunk alone
        nn.init.zeros_(self.value_head.bias)
        if value_init is not None:
            with torch.no_grad():
                bias = value_init.head.bias if value_init.head.bias is not None else 0.0
                if value_init.scale == 1.0:
                    self.value_head.weight.copy_(value_init.head.weight)
                    self.value_head.bias.copy_(bias + value_init.offset)
                else:  # V starts as the reward model's normalised score, scale · (w·h + b + offset)
                    self.value_head.weight.copy_(value_init.scale * value_init.head.weight)
                    self.value_head.bias.copy_(value_init.scale * (bias + value_init.offset))
        self.train(False)
        if trim_padding == "pack":
            self._check_packing()

    def _check_packing(self) -> None:
        """Refuse trim_padding="pack" for a policy (or a separate value trunk) whose packed forward is not
        its padded one."""
        errors = {"policy": packed_logits_error(self.model, self.eos_token_id)}
        if self.value_trunk is not None:
            errors["value trunk"] = packing_error(self.value_trunk, self.eos_token_id)
        for name, error in errors.items():
            if error > PACKING_TOLERANCE:
                raise ValueError(f"trim_padding='pack': the {name}'s packed forward differs from its padded one by "
                                 f"{error:.3g} (its attention ignores packed position ids, or its logits are not its "
                                 "output embedding of the last hidden state); use 'minibatch'")

    def train(self, mode: bool = True) -> "LMActorCritic":
        """Always eval mode, so dropout never makes the rollout and the update score different functions."""
        return super().train(False)

    def autocast(self) -> contextlib.AbstractContextManager:
        """bf16 (or the configured dtype) autocast for the LM forwards on CUDA; nothing otherwise."""
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type="cuda", dtype=self.autocast_dtype)

    @contextlib.contextmanager
    def recomputed_blocks(self) -> Iterator[None]:
        """With gradient checkpointing, a forward that builds a graph flags the transformer blocks alone
        (not their children: dropout stays off) as training, the condition under which transformers
        recomputes a block in the backward pass; sampling never sees the flag, so it keeps its KV cache."""
        flag = bool(self.checkpointed) and torch.is_grad_enabled()
        for layer in self.checkpointed if flag else ():
            layer.training = True
        try:
            yield
        finally:
            for layer in self.checkpointed if flag else ():
                layer.training = False

    # ----------------------------------------------------------------------------- scoring
    def _forward(self, obs: Observation, tokens: Tensor, mask: Tensor, trim: bool) -> tuple[Categorical, Tensor]:
        """Token distributions (N, L, V) at temperature T and values V before each decision (N, L).

        With ``trim`` the forward sees only the columns this batch uses; the cut completion columns
        (after every row's EOS) come back as zeros, outside the mask.
        """
        with self.autocast(), self.recomputed_blocks():
            return self._scores(obs, tokens, mask, trim)

    def _scores(self, obs: Observation, tokens: Tensor, mask: Tensor, trim: bool
                                               ) -> tuple[Categorical, Tensor]:
        prompt_ids, prompt_mask = obs["input_ids"], obs["attention_mask"]
        if self.trim_padding == "pack":
            return self._packed_forward(prompt_ids, prompt_mask, tokens, mask)
        length = tokens.shape[1]
        if trim:
            prompt_ids, prompt_mask, tokens, mask = trim_padding(prompt_ids, prompt_mask, tokens, mask)
        head = self.critic == "head"
        logits, hidden = completion_logits(self.model, prompt_ids, prompt_mask, tokens, mask, hidden=head)
        if not head:
            hidden = trunk_hidden(self.value_trunk, prompt_ids, prompt_mask, tokens, mask)
        log_probs = token_log_probs(logits, self.temperature)  # (N, L', V)
        values = self.value_head(hidden).squeeze(-1).float()  # (N, L'), float32 under bf16 autocast too
        return Categorical(pad_completion_columns(log_probs, length)), pad_completion_columns(values, length)

    def _packed_forward(self, prompt_ids: Tensor, prompt_mask: Tensor, tokens: Tensor, mask: Tensor
                        ) -> tuple[Categorical, Tensor]:
        """``_forward`` without padding: one packed pass per trunk, the vocabulary projection at the n
        valid decisions only; log-probs and values are 0 where ``mask`` is False."""
        hidden = packed_completion_hidden(self.model.base_model, prompt_ids, prompt_mask, tokens, mask,
                                          self.eos_token_id)[mask]  # (n, H)
        log_probs = projected_log_probs(self.model, hidden, self.temperature)  # (n, V)
        if self.value_trunk is not None:
            hidden = packed_completion_hidden(self.value_trunk, prompt_ids, prompt_mask, tokens, mask,
                                              self.eos_token_id)[mask]
        values = self.value_head(hidden).squeeze(-1).float()  # (n,)
        return Categorical(at_decisions(log_probs, mask)), at_decisions(values, mask)

    def _evaluate(self, obs: Observation, action: Tensor, trim: bool) -> PolicyEvaluation:
        mask = completion_mask(action, self.eos_token_id)  # (B, L)
        dist, value = self._forward(obs, action, mask, trim)
        log_prob = torch.where(mask, dist.log_prob(action), 0.0)  # (B, L)
        return PolicyEvaluation(log_prob, dist.entropy(), value, dist)

    def evaluate(self, obs: Observation, action: Tensor) -> PolicyEvaluation:
        """Scores stored completions: packed, or cut to their own columns with ``trim_padding="minibatch"``."""
        return self._evaluate(obs, action, self.trim_padding == "minibatch")

    def decision_values(self, obs: Observation, action: Tensor) -> Tensor:
        """V before each decision (B, L) from the critic's trunk alone: the value trunk, or for
        critic="head" the policy's trunk without the vocabulary projection and its log-softmax."""
        with self.autocast(), self.recomputed_blocks():
            return self._decision_values(obs, action).float()

    def _decision_values(self, obs: Observation, action: Tensor) -> Tensor:
        mask = completion_mask(action, self.eos_token_id)  # (B, L)
        prompt_ids, prompt_mask, tokens, length = obs["input_ids"], obs["attention_mask"], action, action.shape[1]
        trunk = self.value_trunk if self.value_trunk is not None else self.model.base_model
        if self.trim_padding == "pack":
            hidden = packed_completion_hidden(trunk, prompt_ids, prompt_mask, tokens, mask, self.eos_token_id)
            return at_decisions(self.value_head(hidden[mask]).squeeze(-1), mask)
        if self.trim_padding == "minibatch":
            prompt_ids, prompt_mask, tokens, mask = trim_padding(prompt_ids, prompt_mask, tokens, mask)
        values = self.value_head(trunk_hidden(trunk, prompt_ids, prompt_mask, tokens, mask)).squeeze(-1)  # (B, L')
        return pad_completion_columns(values, length)

    def value(self, obs: Observation) -> Tensor:
        """V at the last prompt token: (N,)."""
        with self.autocast():
            return self._prompt_value(obs).float()

    def _prompt_value(self, obs: Observation) -> Tensor:
        prompt_ids, prompt_mask = obs["input_ids"], obs["attention_mask"]
        inputs = dict(input_ids=prompt_ids, attention_mask=prompt_mask, position_ids=position_ids(prompt_mask))
        if self.critic == "head":
            hidden = self.model(**inputs, output_hidden_states=True, logits_to_keep=1, use_cache=False).hidden_states[-1]
        else:
            hidden = self.value_trunk(**inputs).last_hidden_state
        return self.value_head(hidden[:, -1]).squeeze(-1)

    # ----------------------------------------------------------------------------- acting
    @torch.no_grad()
    def sample(self, obs: Observation, deterministic: bool = False) -> Completion:
        """Batched ancestral sampling (greedy when ``deterministic``) with the KV cache.

        The only host sync is the early exit: every ``exit_check_every`` tokens, stop once all rows
        have emitted EOS (the rest of the completion stays pad).
        """
        with self.autocast():
            return self._sample(obs, deterministic)

    def _sample(self, obs: Observation, deterministic: bool) -> Completion:
        prompt_ids, prompt_mask = obs["input_ids"], obs["attention_mask"]  # (N, P)
        n, p = prompt_ids.shape
        length = self.max_new_tokens
        tokens = prompt_ids.new_full((n, length), self.pad_token_id)  # (N, L)
        log_prob = torch.zeros(n, length, device=prompt_ids.device)  # (N, L)
        attention = torch.cat([prompt_mask.long(), prompt_mask.new_ones(n, length - 1, dtype=torch.long)], dim=1)
        positions = position_ids(prompt_mask)  # (N, P)
        next_position = positions[:, -1:] + 1  # (N, 1)
        done = torch.zeros(n, dtype=torch.bool, device=prompt_ids.device)
        out = self.model(input_ids=prompt_ids, attention_mask=prompt_mask, position_ids=positions,
                         use_cache=True, logits_to_keep=1)
        for l in range(length):
            dist = Categorical(token_log_probs(out.logits[:, -1], self.temperature))  # (N, V)
            token = torch.where(done, self.pad_token_id, dist.mode() if deterministic else dist.sample_wide())  # (N,)
            tokens[:, l] = token
            log_prob[:, l] = torch.where(done, 0.0, dist.log_prob(token))
            done = done | (token == self.eos_token_id)
            if l == length - 1 or ((l + 1) % self.exit_check_every == 0 and bool(done.all())):
                break
            out = self.model(input_ids=token[:, None], attention_mask=attention[:, : p + l + 1],
                             position_ids=next_position + l, use_cache=True, **{self.cache_argument: kv_cache(out)})
        return Completion(tokens, completion_mask(tokens, self.eos_token_id), log_prob)

    @torch.no_grad()
    def act(self, obs: Observation, deterministic: bool = False) -> PolicyStep:
        """Sample completions, then score them with a fresh ``_forward`` (the one ``evaluate`` uses):
        packed, or on the columns the batch uses unless ``trim_padding="none"``."""
        completion = self.sample(obs, deterministic)
        evaluation = self._evaluate(obs, completion.tokens, self.trim_padding != "none")
        return PolicyStep(completion.tokens, evaluation.log_prob, evaluation.value, completion.mask,
                          evaluation.distribution)

    def env_action(self, step: PolicyStep) -> dict[str, Tensor]:
        """The completion, its log π(y_l|x, y_<l) per token and, for exact KLs, the full log π(·|x, y_<l)
        (N, L, V) that the scoring pass computed anyway (a reference, not a copy)."""
        action = {"tokens": step.action, "mask": step.mask, "log_prob": step.log_prob}
        if step.distribution is not None:
            action["log_probs"] = step.distribution.log_probs
        return action

    # ----------------------------------------------------------------------------- parameters
    def actor_parameters(self) -> list[nn.Parameter]:
        """The policy's trainable parameters: all of them, or a LoRA policy's adapters."""
        return [p for p in self.model.parameters() if p.requires_grad]

    def critic_parameters(self) -> list[nn.Parameter]:
        """critic="head": the value head alone (PPO's joint loss still trains the shared trunk through
        the value loss); critic="separate": the value trunk and head."""
        trunk = list(self.value_trunk.parameters()) if self.value_trunk is not None else []
        return [*trunk, *self.value_head.parameters()]
