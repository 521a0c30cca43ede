"""Typed schemas of the training app. YAML in conf/ holds values; these hold types, so a typo or a
wrong type fails at composition with a message naming the key. The library below the front door
receives these dataclasses, never a DictConfig."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from ppo_core.advantages import ADVANTAGES
from ppo_core.errors import ConfigError
from ppo_core.migration import migrate, reject_old_keys
from ppo_core.plugins import load_plugins
from ppo_core.validation import setting

ACTIVATIONS = ("tanh", "relu", "elu")
"""agents/mlp.py's hidden-layer nonlinearities (a test keeps the two lists equal)."""


@dataclass
class EnvSchema:
    """What every env family's settings hold; a family registers its subclass (``register_schema``)."""

    kind: str = MISSING
    """Which environment family builds this config: a kind registered in ``ppo_core.build``."""
    num_envs: int = setting(8, ge=1)
    """Copies stepped in lockstep (the text bandit: prompts answered per env step)."""


@dataclass
class AgentSchema:
    """What every agent's settings hold; an agent registers its subclass (``register_schema``)."""

    name: str = MISSING
    """Which policy builds this config: an agent registered in ``ppo_core.build``."""


@dataclass
class ObjectiveSchema:
    """Terms an objective adds to the algorithm's own loss and to the env's reward (``objective=``)."""

    name: str = "none"
    """none: the algorithm's objective alone (every control task) | a registered objective (rlhf)."""


@dataclass
class EnvConfig(EnvSchema):
    """Any Gymnasium environment (``env=gym env.id=...``; the classic-control groups preset it)."""

    kind: str = "gym"
    """Which environment family builds this config."""
    id: str = MISSING
    """Required: any Gymnasium id, including a user's own ``package.module:MyEnv-v0`` (the classic-control
    groups, e.g. ``env=cartpole``, set it)."""
    num_envs: int = setting(8, ge=1)
    """Copies stepped in lockstep."""
    vectorization: str = setting("auto", choices=("auto", "sync", "async", "vector_entry_point", "batched", "torch"))
    """auto (on CUDA the torch ports of envs/torch_classic for the five classic-control tasks; otherwise
    the env's own vectorised implementation when it has one, else the batched NumPy envs of
    envs/classic_vector.py for Acrobot, MountainCar and Pendulum, else sync) | sync | async |
    vector_entry_point | batched | torch (the classic-control tasks as tensors on the run's device)."""
    normalize_obs: bool = False
    """Running mean/std observation normalisation; its statistics are saved with the model."""
    normalize_reward: bool = False
    """Scale rewards by the running std of the discounted return."""
    clip_obs: float = setting(10.0, gt=0)
    """Normalised observations are clipped to ±clip_obs."""
    clip_reward: float = setting(10.0, gt=0)
    """Scaled rewards are clipped to ±clip_reward."""
    kwargs: dict[str, Any] = field(default_factory=dict)
    """Passed to ``gymnasium.make_vec`` (e.g. ``max_episode_steps``)."""


@dataclass
class AgentConfig(AgentSchema):
    """Multilayer-perceptron actor and critic over a flat observation (agents/mlp.py)."""

    name: str = "mlp"
    """Selects this schema (``agent=mlp``)."""
    hidden_sizes: list[int] = setting(factory=lambda: [64, 64], ge=1)
    """Widths of the hidden layers of each network (actor, critic, or the shared trunk)."""
    activation: str = setting("tanh", choices=ACTIVATIONS)
    """Hidden-layer nonlinearity: tanh | relu | elu (SB3's default for PPO: tanh)."""
    shared_trunk: bool = False
    """One trunk for actor and critic; the default keeps them separate."""
    log_std_init: float = setting(0.0)
    """Initial log-std of the Gaussian head (Box actions); with ``gsde``, of every σ_ij."""
    ortho_init: bool = True
    """Orthogonal initialisation, gain √2 in the trunk, 0.01 on the policy head, 1 on the value head (SB3, CleanRL)."""
    gsde: bool = False
    """Box actions: generalized state-dependent exploration (Raffin et al. 2022), noise φ(s)·W linear in
    the actor's last features, W redrawn every ``sde_sample_freq`` steps (SB3's use_sde)."""
    sde_sample_freq: int = setting(4, ge=1)
    """Env steps between draws of gSDE's noise matrices (one per env)."""


@dataclass
class AlgoConfig:
    """Settings every algorithm shares: the rollout and the advantage estimate."""

    name: str = MISSING
    """Which update rule: ppo | trpo | reinforce (a key of ``ppo_core.algorithms.ALGORITHMS``)."""
    num_steps: int = setting(128, ge=1)
    """Env steps per environment in one rollout."""
    gamma: float = setting(0.99, ge=0, le=1)
    """Discount factor γ of the return."""
    gae_lambda: float = setting(0.95, ge=0, le=1)
    """λ of GAE (Schulman et al. 2016): 0 is the one-step TD error, 1 the Monte-Carlo return minus V."""
    advantage: str = setting("gae", choices=ADVANTAGES)
    """gae: GAE(λ) against the learned V | leave_one_out: the return minus the mean return of the other
    copies that started from the same state (RLOO, Ahmadian et al. 2024) | group_mean: minus the group's
    mean (GRPO, Shao et al. 2024). The groups are the env's (``start_groups``), single-step episodes
    only; every valid decision of an episode gets its advantage, and V is still fitted to the λ-returns."""
    group_std: bool = False
    """advantage=group_mean: also divide by the group's standard deviation (GRPO)."""
    learning_rate: float = setting(3e-4, gt=0)
    """Adam step size (of the critic alone for TRPO, of the actor for REINFORCE)."""
    anneal_lr: bool = True
    """Decay the learning rate linearly to 0 over ``total_timesteps``."""
    max_grad_norm: float = setting(0.5)
    """Global gradient-norm clip; <= 0 turns it off."""
    normalize_advantages: bool = True
    """Whiten advantages (per minibatch in PPO, over the whole batch in TRPO and REINFORCE)."""
    ent_coef: float = setting(0.0, ge=0)
    """Entropy-bonus weight."""
    adam_eps: float = setting(1e-5, gt=0)
    """Adam's ε (1e-5 as in CleanRL and SB3, not torch's 1e-8)."""


@dataclass
class PPOConfig(AlgoConfig):
    name: str = "ppo"
    """Selects this schema (``algo=ppo``)."""
    vf_coef: float = setting(0.5, ge=0)
    """Value-loss weight in the joint loss."""
    vf_learning_rate: Optional[float] = setting(None, gt=0)
    """The critic's own parameters (``critic_parameters()``: a value head, or a separate critic) get
    this Adam rate; None: ``learning_rate``. A fresh value head on a pretrained LM needs far more."""
    update_epochs: int = setting(10, ge=1)
    """Passes over each rollout batch."""
    num_minibatches: int = setting(4, ge=1)
    """Minibatches per pass; each is one gradient step."""
    surrogate: str = setting("clip", choices=("clip", "kl_penalty"))
    """clip (L^CLIP) | kl_penalty (adaptive β, PPO paper §4)."""
    clip_eps: float = setting(0.2, gt=0)
    """ε of the clipped surrogate (§3): ratios outside [1 − ε, 1 + ε] earn nothing more."""
    anneal_clip: bool = False
    """Decay clip_eps linearly to 0 with the learning rate (rl-zoo's ``lin_`` schedules)."""
    clip_value_loss: bool = False
    """Clip V's change to ±clip_eps around the rollout's value (CleanRL's clip_vloss)."""
    early_stop_kl: Optional[float] = setting(None, gt=0)
    """Stop the epochs of an update once an epoch's mean approx_kl exceeds this (SB3's ``target_kl``;
    None: never)."""
    penalty_kl_target: float = 0.01
    """surrogate=kl_penalty: d_targ, the KL(π_old‖π) per update the penalty coefficient steers towards (§4)."""
    penalty_coef_init: float = setting(1.0, ge=0)
    """surrogate=kl_penalty: the initial β of the KL(π_old‖π) penalty, halved or doubled after each update."""


@dataclass
class TRPOConfig(AlgoConfig):
    """TRPO (Schulman et al. 2015): ``learning_rate``, ``anneal_lr`` and ``max_grad_norm`` apply to the
    critic's own Adam; the actor moves only by the natural-gradient step."""

    name: str = "trpo"
    """Selects this schema (``algo=trpo``)."""
    max_kl: float = setting(0.01, gt=0)
    """δ: bound on the mean KL(π_old‖π_θ) over the batch's decisions (§6)."""
    damping: float = setting(0.1, ge=0)
    """Added to the Fisher-vector product, F + damping·I (App. C.1)."""
    cg_iters: int = setting(10, ge=1)
    """Conjugate-gradient iterations for F⁻¹g (App. C)."""
    max_backtracks: int = setting(10, ge=0)
    """Line-search candidates tried; 0 never moves the actor."""
    backtrack_ratio: float = setting(0.5, gt=0, lt=1)
    """Step shrink factor between line-search candidates."""
    accept_ratio: float = setting(0.1, ge=0)
    """A candidate must gain this fraction of the first-order prediction (0: any gain)."""
    vf_iters: int = setting(5, ge=0)
    """Epochs of critic regression per rollout."""
    num_minibatches: int = setting(4, ge=1)
    """Critic minibatches per epoch."""


@dataclass
class ReinforceConfig(AlgoConfig):
    """REINFORCE (Williams 1992) with a learned value baseline trained by its own Adam."""

    name: str = "reinforce"
    """Selects this schema (``algo=reinforce``)."""
    baseline: bool = True
    """A = G − V(s); false: A = G (the critic is still fitted and bootstraps cut-off episodes)."""
    update_epochs: int = setting(1, ge=1)
    """Full-batch policy-gradient steps per rollout; > 1 reuses samples without importance weights."""
    vf_learning_rate: float = setting(1e-3, gt=0)
    """Adam step size of the critic."""
    vf_iters: int = setting(5, ge=0)
    """Epochs of critic regression per rollout."""
    num_minibatches: int = setting(4, ge=1)
    """Critic minibatches per epoch."""


@dataclass
class TrainConfig:
    algo: AlgoConfig = MISSING
    """The update rule's settings (conf/algo/): PPOConfig, TRPOConfig or ReinforceConfig."""
    env: EnvSchema = MISSING
    """The environment family's settings (conf/env/): EnvConfig or a registered family's schema."""
    agent: AgentSchema = MISSING
    """The policy's settings (conf/agent/): AgentConfig or a registered agent's schema."""
    objective: ObjectiveSchema = MISSING
    """Loss and reward terms beside the algorithm's (conf/objective/): none, or a registered objective."""
    seed: int = setting(0, ge=0)
    """Seeds torch, Python, NumPy and the environments."""
    seeds: Optional[list[int]] = setting(None, ge=0)
    """A seed batch: one run per seed, trained in one process as one computation, each into
    ``seed_<s>/`` of the run directory (ppo_core/seeds.py); replaces ``seed``. None: one run."""
    device: str = "auto"
    """auto (CUDA when present) | cpu | cuda | cuda:N."""
    total_timesteps: int = setting(100_000, ge=1)
    """Env steps over all copies; rounded down to whole rollouts of num_steps × num_envs (at least one)."""
    torch_threads: int = setting(1, ge=1)
    """Intra-op CPU threads; small MLPs run fastest on one."""
    eval_every: int = setting(10_000, ge=0)
    """Env steps between deterministic evaluations (0: only at the end)."""
    eval_episodes: int = setting(10, ge=0)
    """Episodes per evaluation, from new start states each time (0: no evaluation)."""
    stop_at_return: Optional[float] = setting(None)
    """Stop once the deterministic evaluation mean has reached this ``stop_after_evals`` times in a row
    (None: always train for ``total_timesteps``)."""
    stop_after_evals: int = setting(3, ge=1)
    """Consecutive evaluations at or above ``stop_at_return`` that end a run; one lucky evaluation does not."""
    checkpoint_every: int = setting(50_000, ge=0)
    """Env steps between checkpoints (the final one is always written)."""
    resume: Optional[str] = None
    """Path of a checkpoint to continue from."""
    progress: bool = True
    """Show a progress bar."""


SCHEMAS: dict[str, dict[str, type]] = {
    "algo": {"ppo": PPOConfig, "trpo": TRPOConfig, "reinforce": ReinforceConfig},
    "env": {"gym": EnvConfig},
    "agent": {"mlp": AgentConfig},
    "objective": {"none": ObjectiveSchema},
}
"""Schema of each config group's options, by ``algo.name``, ``env.kind``, ``agent.name`` and ``objective.name``."""


def register_schema(group: str, name: str, schema: type) -> None:
    """Make ``schema`` the settings of option ``name`` of ``group`` (algo, env, agent or objective);
    hydra finds it as ``<name>_schema`` in that group, which the option's YAML names in its defaults."""
    bases = {"algo": AlgoConfig, "env": EnvSchema, "agent": AgentSchema, "objective": ObjectiveSchema}
    if group not in bases or not issubclass(schema, bases[group]):
        raise TypeError(f"a schema of group {group!r} must subclass {bases.get(group, 'a known group').__name__}")
    SCHEMAS[group][name] = schema


def schema(group: str, name: str) -> type:
    """The registered schema of option ``name`` of ``group``; a ConfigError names the known ones."""
    load_plugins()
    if name not in SCHEMAS[group]:
        key = {"algo": "algo.name", "env": "env.kind", "agent": "agent.name", "objective": "objective.name"}[group]
        raise ConfigError(f"{key}={name!r} is unknown; expected one of {sorted(SCHEMAS[group])}")
    return SCHEMAS[group][name]


def config_from_dict(values: dict[str, Any]) -> TrainConfig:
    """Rebuild a ``TrainConfig`` saved with ``dataclasses.asdict`` (checkpoints, summaries)."""
    values = migrate(values)
    algo, env, agent, objective = values["algo"], values["env"], values["agent"], values["objective"]
    return TrainConfig(**{
        **values,
        "algo": schema("algo", algo["name"])(**algo),
        "env": schema("env", env["kind"])(**env),
        "agent": schema("agent", agent["name"])(**agent),
        "objective": schema("objective", objective["name"])(**objective),
    })


def register_configs() -> None:
    """Put the schemas, the plugins' included, in hydra's ConfigStore; the YAML files extend them."""
    load_plugins()
    store = ConfigStore.instance()
    store.store(name="train_schema", node=TrainConfig)
    for group, schemas in SCHEMAS.items():
        for name, node in schemas.items():
            store.store(group=group, name=f"{name}_schema", node=node)


def compose_train_config(overrides: list[str]) -> TrainConfig:
    """The ``TrainConfig`` that ``python -m ppo_core.train <overrides>`` would run, composed from
    conf/ inside a running hydra app (e.g. ``python -m ppo_core.align``, whose search path is the same
    package) or outside one."""
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    reject_old_keys(list(overrides))
    register_configs()
    try:
        if GlobalHydra.instance().is_initialized():
            cfg = compose(config_name="config", overrides=list(overrides))
        else:
            with initialize_config_module(config_module="conf", version_base="1.3"):
                cfg = compose(config_name="config", overrides=list(overrides))
    except (HydraException, OmegaConfBaseException) as error:
        raise ConfigError(composition_error(error)) from None
    return to_train_config(cfg)


def composition_error(error: Exception) -> str:
    """Hydra's composition error in one line: the override, and OmegaConf's reason where it has one."""
    missing = getattr(error, "missing_cfg_file", None)
    if missing is not None:
        group, _, option = str(missing).rpartition("/")
        if option.endswith("_schema"):
            return (f"the schema {missing!r} is not registered: plugins register through the package's metadata, "
                    "so install the project (`pip install -e .`)")
        options = [o for o in getattr(error, "options", None) or [] if not o.endswith("_schema")]
        return f"{group}={option} is unknown; expected one of {', '.join(options)}" if group else str(error).splitlines()[0]
    cause = error.__cause__
    reason = str(cause).splitlines()[0] if cause is not None else ""
    head = str(error).splitlines()[0].rstrip(".")
    return f"{head}: {reason}" if reason else head


def to_train_config(cfg) -> TrainConfig:
    """The composed DictConfig as a ``TrainConfig``; a required key left unset is a ConfigError naming it."""
    from omegaconf import OmegaConf
    from omegaconf.errors import MissingMandatoryValue

    try:
        return OmegaConf.to_object(cfg)  # type: ignore[return-value]
    except MissingMandatoryValue as error:
        key = getattr(error, "full_key", "") or str(error).rsplit(": ", 1)[-1]
        raise ConfigError(f"{key} is required and has no value; set it, e.g. {key}=...") from None
