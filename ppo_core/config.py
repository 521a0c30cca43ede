"""Typed schemas of the training app. YAML in conf/ holds values; these hold types, so a typo or a
wrong type fails at composition with a message naming the key. The library below the front door
receives these dataclasses, never a DictConfig."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


@dataclass
class EnvConfig:
    kind: str = "gym"
    """Which environment family builds this config."""
    id: str = "CartPole-v1"
    """Any Gymnasium id, including a user's own ``package.module:MyEnv-v0``."""
    num_envs: int = 8
    """Copies stepped in lockstep."""
    vectorization: str = "auto"
    """auto (the env's own vectorised implementation when it has one, else the batched NumPy envs of
    envs/classic_vector.py for Acrobot, MountainCar and Pendulum, else sync) | sync | async |
    vector_entry_point | batched."""
    normalize_obs: bool = False
    """Running mean/std observation normalisation; its statistics are saved with the model."""
    normalize_reward: bool = False
    """Scale rewards by the running std of the discounted return."""
    clip_obs: float = 10.0
    clip_reward: float = 10.0
    kwargs: dict[str, Any] = field(default_factory=dict)
    """Passed to ``gymnasium.make_vec`` (e.g. ``max_episode_steps``)."""


@dataclass
class AgentConfig:
    name: str = "mlp"
    hidden_sizes: list[int] = field(default_factory=lambda: [64, 64])
    activation: str = "tanh"
    shared_trunk: bool = False
    """One trunk for actor and critic; the default keeps them separate."""
    log_std_init: float = 0.0
    """Initial log-std of the Gaussian head (Box actions); with ``gsde``, of every σ_ij."""
    ortho_init: bool = True
    gsde: bool = False
    """Box actions: generalized state-dependent exploration (Raffin et al. 2022), noise φ(s)·W linear in
    the actor's last features, W redrawn every ``sde_sample_freq`` steps (SB3's use_sde)."""
    sde_sample_freq: int = 4
    """Env steps between draws of gSDE's noise matrices (one per env)."""


@dataclass
class TextEnvConfig:
    """The text bandit (envs/text_bandit.py): one prompt in, one completion out, rewarded by the reward
    model minus β times the KL to the SFT policy (InstructGPT, Ouyang et al. 2022, §3.5).

    It reads the artifacts of ``python -m ppo_core.align``: ``<artifacts>/sft`` (π_SFT, its tokenizer
    and, for the embedded world's prompts, its ``stage_summary.json``) and ``<artifacts>/rm``.
    ``max_new_tokens`` and ``temperature`` live here only; the LM agent is built with the same values.
    """

    kind: str = "text_bandit"
    """Which environment family builds this config."""
    artifacts: str = "artifacts/small"
    """Root written by ``python -m ppo_core.align`` (its ``paths.root``)."""
    sft_path: str = ""
    """π_SFT dir: the frozen KL reference and, unless ``agent.model_path`` says otherwise, the policy's
    initial weights. "" = ``<artifacts>/sft``."""
    rm_path: str = ""
    """Reward-model dir (agents/reward_model.py layout). "" = ``<artifacts>/rm``."""
    prompts: str = "train"
    """Training prompts: an embedded-world split (train | validation | test) or a .jsonl of {"prompt": ...}."""
    eval_prompts: str = "validation"
    """Evaluation prompts, in order from the first; same forms as ``prompts``."""
    num_envs: int = 32
    """Prompts answered per env step."""
    max_new_tokens: int = 28
    """L: tokens per completion (the action length), shared with the policy."""
    temperature: float = 1.0
    """Sampling temperature T of the policy; the KL compares π and π_SFT both at T."""
    beta: float = 0.05
    """β: weight of the KL penalty (InstructGPT: 0.02, which over-optimises this world's reward model,
    benchmarks/RESULTS.md); the initial β when ``kl_target`` is set."""
    kl_placement: str = "reward"
    """reward: subtract β·Σ_l KL_l from the reward (InstructGPT) | loss: reward = RM score, and the
    algorithm adds β · (mean per-token KL) to its loss, outside the importance ratio."""
    kl_estimator: str = "k1"
    """Per-token KL: k1 (InstructGPT) | k2 | k3 | exact (over the vocabulary); see ppo_core/kl.py."""
    kl_direction: str = "reverse"
    """reverse: KL(π‖π_SFT) (InstructGPT, conservative) | forward: KL(π_SFT‖π) (PPO's, exploration-friendly)."""
    kl_target: Optional[float] = None
    """None: fixed β. Else adapt β after every step towards this KL per completion (Ziegler et al. 2019)."""
    kl_horizon: float = 10000.0
    """Completions over which the adaptive controller corrects a KL error (Ziegler et al.'s horizon)."""
    ptx_coef: float = 0.0
    """PPO-ptx γ: weight of the pretraining log-likelihood mixed into every update (InstructGPT: 27.8)."""
    ptx_batch_size: int = 8
    """Pretraining blocks per gradient step of the ptx term."""
    ptx_data: str = "corpus"
    """Pretraining text for ptx: corpus (the embedded world's, as the base model saw it) | a .txt file
    (one document per line)."""
    no_eos_penalty: float = 1.0
    """Subtracted from the score of a completion without EOS (TRL's missing_eos_penalty)."""
    empty_penalty: float = 1.0
    """Subtracted from the score of an empty completion (EOS first)."""
    nonfinite_penalty: float = 10.0
    """A non-finite RM score is replaced by −nonfinite_penalty (and counted)."""
    prompt_overflow: str = "error"
    """A prompt longer than the context minus max_new_tokens: error | truncate (from the left, logged)."""
    gold: bool = False
    """Also score training completions with the gold labeler (a decode on the host every step);
    evaluation always does when the prompts come from the embedded world."""
    reward_source: str = "rm"
    """rm: the reward model scores completions | gold: the gold labeler does (an oracle upper bound,
    embedded-world prompts only; implies ``gold``)."""


@dataclass
class LMAgentConfig:
    """A causal LM with a value head (agents/lm.py); sampling length and temperature come from the env."""

    name: str = "lm"
    model_path: str = ""
    """Initial policy weights, a local Hugging Face causal-LM dir; "" = the env's SFT dir."""
    critic: str = "head"
    """head: value head on the policy's trunk | separate: its own trunk and head."""
    value_init_path: str = ""
    """critic=separate: a reward-model dir to start the value function from (InstructGPT §3.5); "rm" =
    the env's reward model; "" = a copy of the policy's initial trunk with a zero head."""
    exit_check_every: int = 4
    """Tokens between the sampling loop's checks that every completion has ended (one host sync each)."""
    trim_padding: str = "pack"
    """How scoring forwards skip padding (agents/lm.py): pack (no padding at all: each batch's sequences
    laid end to end, logits only where a token is predicted; the fastest, first PPO ratio 1 to ~1e-6) |
    rollout (the rollout's scoring forward and every minibatch forward see the columns the rollout uses;
    the first PPO ratio exactly 1; rollouts of one env step only, else as none) | minibatch (each forward
    its own batch's columns; first ratio 1 to ~1e-6) | none."""
    attn_implementation: str = "auto"
    """auto (eager for algo=trpo, whose Fisher-vector product needs attention twice differentiable;
    else the model's own) | eager | sdpa | any transformers attention implementation."""


@dataclass
class AlgoConfig:
    """Settings every algorithm shares: the rollout and the advantage estimate."""

    name: str = MISSING
    num_steps: int = 128
    """Env steps per environment in one rollout."""
    gamma: float = 0.99
    gae_lambda: float = 0.95
    advantage_level: str = "decision"
    """decision: GAE over every decision (over the tokens of a completion) | step: one advantage per env
    step, from V before its first decision, shared by its decisions (the text bandit's r − V(x))."""
    learning_rate: float = 3e-4
    anneal_lr: bool = True
    """Decay the learning rate linearly to 0 over ``total_timesteps``."""
    max_grad_norm: float = 0.5
    """Global gradient-norm clip; <= 0 turns it off."""
    normalize_advantages: bool = True
    """Whiten advantages (per minibatch in PPO, over the whole batch in TRPO and REINFORCE)."""
    ent_coef: float = 0.0
    """Entropy-bonus weight."""
    adam_eps: float = 1e-5


@dataclass
class PPOConfig(AlgoConfig):
    name: str = "ppo"
    vf_coef: float = 0.5
    """Value-loss weight in the joint loss."""
    vf_learning_rate: Optional[float] = None
    """The critic's own parameters (``critic_parameters()``: a value head, or a separate critic) get
    this Adam rate; None: ``learning_rate``. A fresh value head on a pretrained LM needs far more."""
    update_epochs: int = 10
    num_minibatches: int = 4
    objective: str = "clip"
    """clip (L^CLIP) | kl_penalty (adaptive β, PPO paper §4)."""
    clip_eps: float = 0.2
    anneal_clip: bool = False
    """Decay clip_eps linearly to 0 with the learning rate (rl-zoo's ``lin_`` schedules)."""
    clip_value_loss: bool = False
    target_kl: Optional[float] = None
    """Stop the epochs of an update once approx_kl exceeds this (None: never)."""
    kl_target: float = 0.01
    """objective=kl_penalty: the KL the adaptive β steers towards."""
    kl_beta_init: float = 1.0


@dataclass
class TRPOConfig(AlgoConfig):
    """TRPO (Schulman et al. 2015): ``learning_rate``, ``anneal_lr`` and ``max_grad_norm`` apply to the
    critic's own Adam; the actor moves only by the natural-gradient step."""

    name: str = "trpo"
    max_kl: float = 0.01
    """δ: bound on the mean KL(π_old‖π_θ) over the batch's decisions (§6)."""
    damping: float = 0.1
    """Added to the Fisher-vector product, F + damping·I (App. C.1)."""
    cg_iters: int = 10
    """Conjugate-gradient iterations for F⁻¹g (App. C)."""
    max_backtracks: int = 10
    """Line-search candidates tried; 0 never moves the actor."""
    backtrack_ratio: float = 0.5
    """Step shrink factor between line-search candidates."""
    accept_ratio: float = 0.1
    """A candidate must gain this fraction of the first-order prediction (0: any gain)."""
    vf_iters: int = 5
    """Epochs of critic regression per rollout."""
    num_minibatches: int = 4
    """Critic minibatches per epoch."""


@dataclass
class ReinforceConfig(AlgoConfig):
    """REINFORCE (Williams 1992) with a learned value baseline trained by its own Adam."""

    name: str = "reinforce"
    baseline: bool = True
    """A = G − V(s); false: A = G (the critic is still fitted and bootstraps cut-off episodes)."""
    update_epochs: int = 1
    """Full-batch policy-gradient steps per rollout; > 1 reuses samples without importance weights."""
    vf_learning_rate: float = 1e-3
    """Adam step size of the critic."""
    vf_iters: int = 5
    """Epochs of critic regression per rollout."""
    num_minibatches: int = 4
    """Critic minibatches per epoch."""


@dataclass
class TrainConfig:
    algo: Any = MISSING
    env: Any = MISSING
    agent: Any = MISSING
    seed: int = 0
    device: str = "auto"
    """auto (CUDA when present) | cpu | cuda | cuda:N."""
    total_timesteps: int = 100_000
    torch_threads: int = 1
    """Intra-op CPU threads; small MLPs run fastest on one."""
    eval_every: int = 10_000
    """Env steps between deterministic evaluations (0: only at the end)."""
    eval_episodes: int = 10
    stop_at_return: Optional[float] = None
    """Stop once the deterministic evaluation mean has reached this ``stop_after_evals`` times in a row
    (None: always train for ``total_timesteps``)."""
    stop_after_evals: int = 3
    """Consecutive evaluations at or above ``stop_at_return`` that end a run; one lucky evaluation does not."""
    checkpoint_every: int = 50_000
    """Env steps between checkpoints (the final one is always written)."""
    resume: Optional[str] = None
    """Path of a checkpoint to continue from."""
    progress: bool = True
    """Show a progress bar."""


SCHEMAS: dict[str, dict[str, type]] = {
    "algo": {"ppo": PPOConfig, "trpo": TRPOConfig, "reinforce": ReinforceConfig},
    "env": {"gym": EnvConfig, "text_bandit": TextEnvConfig},
    "agent": {"mlp": AgentConfig, "lm": LMAgentConfig},
}


def config_from_dict(values: dict[str, Any]) -> TrainConfig:
    """Rebuild a ``TrainConfig`` saved with ``dataclasses.asdict`` (checkpoints, summaries)."""
    algo, env, agent = values["algo"], values["env"], values["agent"]
    return TrainConfig(**{
        **values,
        "algo": SCHEMAS["algo"][algo["name"]](**algo),
        "env": SCHEMAS["env"][env["kind"]](**env),
        "agent": SCHEMAS["agent"][agent["name"]](**agent),
    })


def register_configs() -> None:
    """Put the schemas in hydra's ConfigStore; the YAML files extend them."""
    store = ConfigStore.instance()
    store.store(name="train_schema", node=TrainConfig)
    store.store(group="env", name="env_schema", node=EnvConfig)
    store.store(group="env", name="text_bandit_schema", node=TextEnvConfig)
    store.store(group="agent", name="mlp_schema", node=AgentConfig)
    store.store(group="agent", name="lm_schema", node=LMAgentConfig)
    for name, schema in SCHEMAS["algo"].items():
        store.store(group="algo", name=f"{name}_schema", node=schema)


def compose_train_config(overrides: list[str]) -> TrainConfig:
    """The ``TrainConfig`` that ``python -m ppo_core.train <overrides>`` would run, composed from
    conf/ inside a running hydra app (e.g. ``python -m ppo_core.align``, whose search path is the same
    package) or outside one."""
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    register_configs()
    if GlobalHydra.instance().is_initialized():
        cfg = compose(config_name="config", overrides=list(overrides))
    else:
        with initialize_config_module(config_module="conf", version_base="1.3"):
            cfg = compose(config_name="config", overrides=list(overrides))
    return OmegaConf.to_object(cfg)  # type: ignore[return-value]
