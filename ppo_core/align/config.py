"""Typed settings of the supervised alignment stages, registered in hydra's ConfigStore.

YAML under `conf/` holds values (`conf/align.yaml`, `conf/size/*.yaml`); these dataclasses hold types,
so an unknown key or a wrong type fails when hydra composes the config. Library code receives these
dataclasses, never a DictConfig.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Optional

from ppo_core.validation import setting, validate


@dataclass
class ModelConfig:
    preset: str = "small"
    """Key of `models.MODEL_PRESETS` used when the base model is built from scratch."""
    init: str = ""
    """Local Hugging Face causal-LM directory to continue pretraining from; "" builds from scratch."""
    vocab_size: int = setting(2048, ge=1)
    """Vocabulary size of the tokenizer trained here (ignored when `init` brings its own)."""


@dataclass
class WorldConfig:
    seed: int = setting(0, ge=0)
    """Seed of the generated language world, its corpus, prompts, splits and labeler."""
    size: str = "small"
    """Size preset of `envs.language_world.build_world` ("tiny" or "small")."""
    n_prompts: int = setting(3000, ge=0)
    """Instruction prompts generated (then split by user id); 0 uses the world size's default."""
    corpus_chars: int = setting(0, ge=0)
    """Characters of pretraining text; 0 uses the world size's default."""
    split: list[float] = setting(factory=lambda: [0.7, 0.15, 0.15], ge=0, le=1)
    """Fractions of users in train / validation / test."""
    disagreement: float = setting(0.164, ge=0, le=1)
    """Gold labeler's per-pair flip rate p against the gold order; (1-p)^2 + p^2 = 0.726 is InstructGPT's
    inter-labeler agreement (Sec. 3.4), see envs/language_world/labeler.py."""
    demo_slips: dict[str, float] = field(default_factory=dict)
    """{task kind: rate} of the labeler's habits in SFT demonstrations (harmful: no redirect fact;
    open_qa: "I do not know" about a known entity), envs/language_world/demonstrations.py."""


@dataclass
class PretrainConfig:
    steps: int = setting(700, ge=0)
    """Optimizer steps."""
    batch_size: int = setting(16, ge=1)
    """Blocks per step."""
    block_size: int = setting(128, ge=2)
    """Tokens per packed block (at most the model context)."""
    lr: float = setting(2.0e-3, gt=0)
    """Peak AdamW learning rate."""
    warmup_steps: int = setting(50, ge=0)
    """Linear warm-up steps before the cosine decay."""
    min_lr_ratio: float = setting(0.1, ge=0, le=1)
    """Final learning rate as a fraction of `lr`."""
    weight_decay: float = setting(0.1, ge=0)
    """AdamW weight decay on matrices (not on biases, norms or embeddings of positions)."""
    grad_clip: float = 1.0
    """Global gradient-norm clip; 0 disables."""
    val_fraction: float = setting(0.05, gt=0, lt=1)
    """Fraction of corpus documents held out for validation loss."""
    eval_every: int = setting(100, ge=1)
    """Steps between validation evaluations."""


@dataclass
class SFTConfig:
    epochs: int = setting(12, ge=1)
    """Passes over the train-split demonstrations (InstructGPT Appendix C.1: 16)."""
    batch_size: int = setting(32, ge=1)
    """Demonstrations per step."""
    lr: float = setting(1.0e-3, gt=0)
    """Initial AdamW learning rate (no warm-up)."""
    min_lr_ratio: float = setting(0.1, ge=0, le=1)
    """Cosine decay to this fraction of `lr` (InstructGPT Appendix C.1)."""
    resid_pdrop: float = setting(0.2, ge=0, lt=1)
    """Residual dropout during SFT (InstructGPT Appendix C.1)."""
    weight_decay: float = setting(0.0, ge=0)
    """AdamW weight decay."""
    grad_clip: float = 1.0
    """Global gradient-norm clip; 0 disables."""
    eval_every: int = setting(100, ge=1)
    """Steps between validation evaluations (also at the end of each epoch)."""
    max_prompt_tokens: int = setting(96, ge=1)
    """Longer prompts are truncated from the left (logged)."""
    max_completion_tokens: int = setting(40, ge=1)
    """Longer demonstrations are truncated from the right and lose their EOS (logged)."""
    data: str = ""
    """Demonstrations: "" = the embedded world's; else a .jsonl, .json, .parquet or .csv file of
    ``prompt``/``completion`` rows or chat ``messages`` rows (ppo_core/align/user_data.py)."""
    val_fraction: float = setting(0.1, gt=0, lt=1)
    """Share of the rows of ``data`` held out for the validation loss that picks the kept checkpoint."""
    overflow: str = setting("truncate", choices=("truncate", "error"))
    """A row of ``data`` longer than max_prompt_tokens / max_completion_tokens: truncate (counted and
    logged) | error (naming the file, row and column)."""


@dataclass
class RewardConfig:
    k: int = 4
    """Completions sampled and ranked per prompt (InstructGPT used K = 4..9, Sec. 3.5)."""
    ties: bool = True
    """The labeler marks equally good completions as tied, and tied pairs leave the loss."""
    epochs: int = setting(1, ge=1)
    """Passes over the ranked prompts (InstructGPT trains one epoch to avoid overfitting, Sec. 3.5)."""
    batch_size: int = setting(16, ge=1)
    """Prompts per step; each carries all K completions and C(K,2) comparisons."""
    lr: float = setting(1.0e-4, gt=0)
    """Initial AdamW learning rate."""
    min_lr_ratio: float = setting(0.1, ge=0, le=1)
    """Cosine decay to this fraction of `lr` (InstructGPT Appendix C.2)."""
    weight_decay: float = setting(0.0, ge=0)
    """AdamW weight decay."""
    grad_clip: float = 1.0
    """Global gradient-norm clip; 0 disables."""
    max_new_tokens: Optional[int] = setting(None, ge=1)
    """Tokens sampled per completion; None: the RL stage's ``env.max_new_tokens`` (with ``rl.overrides``),
    so the reward model learns on completions as long as those it scores in RL."""
    normalize_std: bool = False
    """Also scale the reward model's scores to standard deviation 1 on the SFT samples that set its
    offset (``scale`` beside ``offset`` in reward_config.json), so that β weighs the KL against the same
    spread of reward whatever the reward model; off: mean 0 only (InstructGPT Sec. 3.5)."""
    temperature: float = setting(1.0, gt=0)
    """Sampling temperature of the SFT policy when collecting comparisons."""
    gen_batch_size: int = setting(128, ge=1)
    """Sequences per `generate` call."""
    max_prompt_tokens: int = setting(96, ge=1)
    """Longer prompts are truncated from the left (logged)."""
    n_val_prompts: int = setting(300, ge=0)
    """Validation prompts ranked for accuracy; 0 uses the whole validation split."""
    data: str = ""
    """Comparisons: "" = K samples per world prompt from the SFT policy, ranked by the world's labeler;
    else a .jsonl, .json, .parquet or .csv file of pairwise ``prompt``/``chosen``/``rejected`` rows or
    K-wise ``prompt``/``completions``/``ranking`` rows (ppo_core/align/user_data.py)."""
    val_fraction: float = setting(0.1, gt=0, lt=1)
    """Share of the rows of ``data`` held out for the validation accuracy."""
    overflow: str = setting("truncate", choices=("truncate", "error"))
    """A row of ``data`` longer than the model's context: truncate (the prompt from the left to
    max_prompt_tokens, the completion from the right; counted and logged) | error (naming the row)."""


@dataclass
class PathsConfig:
    root: str = "artifacts/small"
    """Artifact root; each stage writes `<root>/<stage dir>` unless given below."""
    base: str = ""
    """Base (pretrained) model dir: written by pretrain, read by sft. "" = `<root>/base`."""
    sft: str = ""
    """SFT model dir: written by sft, read by rm. "" = `<root>/sft`."""
    rm: str = ""
    """Reward model dir: written by rm. "" = `<root>/rm`."""
    rl: str = ""
    """RL run dir (checkpoint, TensorBoard, the policy as an HF dir in `policy/`): written by rl. "" = `<root>/rl`."""
    eval: str = ""
    """Evaluation report dir: written by eval. "" = `<root>/eval`."""

    def resolve(self, name: str) -> str:
        """The directory of stage output `name` ("base", "sft", "rm", "rl" or "eval")."""
        return getattr(self, name) or os.path.join(self.root, name)


@dataclass
class RLStageConfig:
    """InstructGPT's step 3 through the training app: `python -m ppo_core.train env=text_bandit agent=lm`."""

    algo: str = setting("ppo", choices=("ppo", "trpo", "reinforce"))
    """ppo | trpo | reinforce."""
    prompts: str = ""
    """Training prompts (``env.prompts``): "" = the embedded world's train split; else a data file."""
    reward: Any = ""
    """``env.reward``: "" = the reward model the rm stage wrote; else a source or a list of them."""
    overrides: list[str] = field(default_factory=list)
    """More training-app overrides, e.g. ["objective.ptx_coef=1.0", "total_timesteps=4096"]."""


@dataclass
class EvalStageConfig:
    """Held-out comparison of the RL policy with SFT and the base model (ppo_core/align/evaluation.py)."""

    split: str = "test"
    """World split of the evaluation prompts: train | validation | test."""
    max_prompts: int = setting(0, ge=0)
    """Evaluate the first this many prompts of the split; 0 = all."""
    batch_size: int = setting(64, ge=1)
    """Prompts answered per batch."""
    samples_per_kind: int = setting(2, ge=0)
    """Completions shown per task kind in the sample table."""
    best_of: int = setting(16, ge=0)
    """Sampled SFT completions per prompt for the best-of-n baseline (n = 1, 2, 4, ... up to this); 0: none."""


@dataclass
class AlignConfig:
    stage: str = "all"
    """Stage to run: see `ppo_core.align.stages.STAGES`."""
    seed: int = setting(0, ge=0)
    """Seed of model initialisation, batching and sampling."""
    device: str = "cpu"
    """torch device; "auto" picks cuda when available."""
    threads: int = setting(2, ge=1)
    """torch CPU threads."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """The base model: a GPT-2 preset to build, or a local checkpoint to start from."""
    world: WorldConfig = field(default_factory=WorldConfig)
    """The embedded language world: its corpus, prompts, demonstrations and labeler."""
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    """Stage ``pretrain``: next-token training of the base model on the world's corpus."""
    sft: SFTConfig = field(default_factory=SFTConfig)
    """Stage ``sft``: supervised fine-tuning on demonstrations."""
    rm: RewardConfig = field(default_factory=RewardConfig)
    """Stage ``rm``: the reward model, trained on rankings of K completions per prompt."""
    rl: RLStageConfig = field(default_factory=RLStageConfig)
    """Stage ``rl``: the training app on the text bandit over this pipeline's SFT and RM."""
    eval: EvalStageConfig = field(default_factory=EvalStageConfig)
    """Stage ``eval``: the RL policy against SFT and base on held-out prompts."""
    paths: PathsConfig = field(default_factory=PathsConfig)
    """Where each stage reads and writes its models."""


def register_configs() -> None:
    """Register `AlignConfig` as `align_schema` so `conf/align.yaml` is validated against it."""
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name="align_schema", node=AlignConfig)


def to_align_config(cfg) -> AlignConfig:
    """The typed `AlignConfig` of a composed hydra DictConfig (the only place a DictConfig is read),
    every setting checked against its declared valid values (a ConfigError naming the key)."""
    from omegaconf import OmegaConf

    config = OmegaConf.to_object(cfg)
    validate(config)
    return config


def compose_align_config(overrides: list[str] | None = None) -> AlignConfig:
    """Compose `conf/align.yaml` with command-line style `overrides` outside a hydra app."""
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module="conf", version_base="1.3"):
        return to_align_config(compose(config_name="align", overrides=list(overrides or [])))
