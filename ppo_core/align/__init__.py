"""Supervised stages of InstructGPT-style alignment (Ouyang et al. 2022, Sec. 3.5): a base causal LM
pretrained on plain text, supervised fine-tuning on demonstrations, and a reward model trained on
rankings of sampled completions. Run them with `python -m ppo_core.align stage=...`.

Modules: `tokenizer` (byte-level BPE), `models` (GPT-2 presets, loading local HF checkpoints), `data`
(packing, prompt/completion encoding), `generation` (batched sampling), `pretrain`, `sft`,
`ranking_loss`, `reward` (comparison data and RM training), `world` (the embedded language world),
`gold` (gold-labeler evaluation), `stages` (stage registry), `config` (typed settings).
"""

from ppo_core.align.config import AlignConfig, compose_align_config
from ppo_core.align.errors import AlignError
from ppo_core.align.ranking_loss import ranking_loss, ranking_pairs
from ppo_core.align.stages import STAGES, register_stage, run_stage

__all__ = [
    "STAGES",
    "AlignConfig",
    "AlignError",
    "compose_align_config",
    "ranking_loss",
    "ranking_pairs",
    "register_stage",
    "run_stage",
]
