"""Typed schemas of the settings the alignment wing adds to the training app: the text bandit env
(``env=text_bandit``), InstructGPT's objective (``objective=rlhf``) and the language-model agent
(``agent=lm``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from ppo_core.config import AgentSchema, EnvSchema, ObjectiveSchema
from ppo_core.kl import KL_DIRECTIONS, KL_ESTIMATORS, KL_PLACEMENTS
from ppo_core.validation import setting

CRITICS = ("head", "separate")
TRIM_MODES = ("pack", "minibatch", "none")
"""agents/lm.py's critics and padding modes, named here so registering the plugin never imports
transformers (a test keeps the lists equal)."""


@dataclass
class TextEnvConfig(EnvSchema):
    """The text bandit (envs/text_bandit.py): one prompt in, one completion out, rewarded by the reward
    model minus β times the KL to the SFT policy (InstructGPT, Ouyang et al. 2022, §3.5).

    It reads the artifacts of ``python -m ppo_core.align``: ``<artifacts>/sft`` (π_SFT, its tokenizer
    and, for the embedded world's prompts, its ``stage_summary.json``) and ``<artifacts>/rm``.
    ``max_new_tokens`` and ``temperature`` live here only; the LM agent is built with the same values.
    The KL to π_SFT that the reward may hold is the objective's (``RLHFObjectiveConfig``).
    """

    kind: str = "text_bandit"
    """Which environment family builds this config."""
    artifacts: str = "artifacts/small"
    """Root written by ``python -m ppo_core.align`` (its ``paths.root``)."""
    sft_path: str = ""
    """π_SFT dir: the frozen KL reference and, unless ``agent.model_path`` says otherwise, the policy's
    initial weights. "" = ``<artifacts>/sft``."""
    rm_path: str = ""
    """The reward model ``env.reward=rm`` names: a local one-label ``AutoModelForSequenceClassification``
    dir (what the ``rm`` stage writes, TRL's and OpenRLHF's format) or the earlier trunk +
    ``reward_head.safetensors`` layout. "" = ``<artifacts>/rm``."""
    reward: Any = "rm"
    """What scores a completion: one source or a list, summed with ``reward_weights``, each logged as
    ``objective/reward/<name>``. A source is ``rm`` (the model at ``rm_path``), ``gold`` (the embedded
    world's labeler: an oracle, world prompts only), a reward-model dir, or ``module:function``, a
    Python function ``fn(prompts, completions, **columns) -> list[float]`` importable from the working
    directory or PYTHONPATH, ``columns`` the prompt rows' extra fields. A reward model with another
    tokenizer than the policy's reads the text re-tokenised its way."""
    reward_weights: list[float] = field(default_factory=list)
    """One weight per ``reward`` source; [] = all 1."""
    prompts: str = "train"
    """Training prompts: an embedded-world split (train | validation | test), or a .jsonl, .json,
    .parquet or .csv file with a ``prompt`` column (or chat ``messages`` ending before the answer);
    the other columns go to reward functions."""
    eval_prompts: str = "validation"
    """Evaluation prompts, in order from the first; same forms as ``prompts``."""
    num_envs: int = setting(32, ge=1)
    """Completions per env step (prompts answered, times ``samples_per_prompt``)."""
    samples_per_prompt: int = setting(1, ge=1)
    """K: completions of each prompt in one step, adjacent (``num_envs`` a multiple of it), for a group
    baseline (``algo.advantage=leave_one_out`` or ``group_mean``); evaluation answers each prompt once."""
    max_new_tokens: int = setting(28, ge=1)
    """L: tokens per completion (the action length), shared with the policy."""
    temperature: float = setting(1.0, gt=0)
    """Sampling temperature T of the policy; the KL compares π and π_SFT both at T."""
    no_eos_penalty: float = setting(1.0, ge=0)
    """Subtracted from the score of a completion without EOS (TRL's missing_eos_penalty)."""
    empty_penalty: float = setting(1.0, ge=0)
    """Subtracted from the score of an empty completion (EOS first)."""
    nonfinite_penalty: float = setting(10.0, ge=0)
    """A non-finite RM score is replaced by −nonfinite_penalty (and counted)."""
    prompt_overflow: str = setting("error", choices=("error", "truncate"))
    """A prompt longer than the context minus max_new_tokens: error | truncate (from the left, logged)."""
    gold: bool = False
    """Also score training completions with the gold labeler (a decode on the host every step);
    evaluation always does when the prompts come from the embedded world."""


@dataclass
class LMAgentConfig(AgentSchema):
    """A causal LM with a value head (agents/lm.py); sampling length and temperature come from the env."""

    name: str = "lm"
    """Selects this schema (``agent=lm``)."""
    model_path: str = ""
    """Initial policy weights, a local Hugging Face causal-LM dir; "" = the env's SFT dir."""
    critic: str = setting("head", choices=CRITICS)
    """head: value head on the policy's trunk | separate: its own trunk and head."""
    value_init_path: str = ""
    """critic=separate: a reward-model dir to start the value function from (InstructGPT §3.5); "rm" =
    the env's reward model; "" = a copy of the policy's initial trunk with a zero head."""
    exit_check_every: int = setting(4, ge=1)
    """Tokens between the sampling loop's checks that every completion has ended (one host sync each)."""
    trim_padding: str = setting("pack", choices=TRIM_MODES)
    """How scoring forwards skip padding (agents/lm.py): pack (no padding at all: each batch's sequences
    laid end to end, logits only where a token is predicted; the fastest, first PPO ratio 1 to ~1e-6;
    refused for a model whose packed forward is not its padded one) | minibatch (each forward cut to
    its own batch's columns; the fastest for a model packing refuses) | none (full width)."""
    lora_r: int = setting(0, ge=0)
    """LoRA rank (peft); 0 = fine-tune every weight. With LoRA the frozen reference π_SFT is the same
    model with its adapters off (one copy in memory) and the value head sits on the adapted trunk."""
    lora_alpha: float = setting(16.0, gt=0)
    """LoRA scaling numerator: the update is (alpha / r) · B A."""
    lora_dropout: float = setting(0.0, ge=0, lt=1)
    """Dropout on the LoRA path (off in rollouts and updates alike: the policy runs in eval mode)."""
    lora_target_modules: list[str] = field(default_factory=list)
    """Module names the adapters go on; [] = peft's default for the architecture (GPT-2: c_attn; Llama: q_proj, v_proj)."""
    lora_save: str = setting("merged", choices=("merged", "adapters"))
    """What the RL stage saves as the policy: merged weights (a plain HF model) | the adapters alone (peft's format)."""
    mixed_precision: str = setting("none", choices=("none", "bf16"))
    """bf16: the policy's forwards under bf16 autocast on CUDA (log-probs still in float32); ignored,
    with a warning, on the CPU."""
    gradient_checkpointing: bool = False
    """Recompute the policy's transformer blocks in the backward pass instead of keeping their activations."""
    attn_implementation: str = "auto"
    """auto (eager for algo=trpo, whose Fisher-vector product needs attention twice differentiable;
    else the model's own) | eager | sdpa | any transformers attention implementation."""


@dataclass
class RLHFObjectiveConfig(ObjectiveSchema):
    """InstructGPT's objective (Ouyang et al. 2022, eq. 2) around the algorithm's surrogate:

        E_(x,y)~π [RM(x, y) − β log(π(y|x) / π_SFT(y|x))] + γ E_x~D_pretrain [log π(x)].

    The KL term goes into the text bandit's reward (``kl_placement=reward``) or into the loss; the
    γ-term (PPO-ptx) is a loss term. ``env=text_bandit`` selects this objective.
    """

    name: str = "rlhf"
    """Selects this schema (``objective=rlhf``)."""
    kl_coef: float = setting(0.05, ge=0)
    """β: weight of the KL penalty (InstructGPT: 0.02, which over-optimises this world's reward model,
    benchmarks/RESULTS.md); the initial β when ``kl_coef_target`` is set."""
    kl_placement: str = setting("reward", choices=KL_PLACEMENTS)
    """reward: subtract β·Σ_l KL_l from the reward, credited to the last token (InstructGPT) |
    token_reward: the same reward spread over the tokens, −β·KL_l at token l and the score at the last
    (TRL's PPO), which GAE over the tokens then carries | loss: reward = RM score, and the algorithm adds
    β · (mean per-token KL) to its loss, outside the importance ratio."""
    kl_estimator: str = setting("k1", choices=KL_ESTIMATORS)
    """Per-token KL: k1 (InstructGPT) | k2 | k3 | exact (over the vocabulary); see ppo_core/kl.py. In the
    reward k1 only (the others give a biased gradient there); in the loss k2 or exact (reverse), k3 or
    exact (forward)."""
    kl_direction: str = setting("reverse", choices=KL_DIRECTIONS)
    """reverse: KL(π‖π_SFT) (InstructGPT, conservative) | forward: KL(π_SFT‖π) (PPO's, exploration-friendly;
    in the loss only)."""
    kl_coef_target: Optional[float] = setting(None, gt=0)
    """None: fixed β. Else adapt β after every step towards this KL per completion (Ziegler et al. 2019)."""
    kl_horizon: float = setting(10000.0, gt=0)
    """Completions over which the adaptive kl_coef corrects a KL error (Ziegler et al.'s horizon)."""
    ptx_coef: float = setting(0.0, ge=0)
    """PPO-ptx γ: weight of the pretraining log-likelihood mixed into every update (InstructGPT: 27.8)."""
    ptx_batch_size: int = setting(8, ge=1)
    """Pretraining blocks per gradient step of the ptx term."""
    ptx_data: str = "corpus"
    """Pretraining text for ptx: corpus (the embedded world's, as the base model saw it) | a .txt file
    (one document per line)."""
