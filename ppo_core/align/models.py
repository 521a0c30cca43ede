"""Causal LMs for the alignment stages: GPT-2 presets built from scratch, or any local HF checkpoint.

Loading never reaches a model hub and never runs repository code (`local_files_only=True`,
`trust_remote_code=False`).
"""

from __future__ import annotations

import logging
import os

from safetensors import SafetensorError
import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    GPT2Config,
    GPT2LMHeadModel,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from ppo_core.align.errors import AlignError

log = logging.getLogger(__name__)

MODEL_PRESETS: dict[str, dict[str, int]] = {
    "tiny": dict(n_layer=2, n_head=2, n_embd=32, n_positions=128),
    "small": dict(n_layer=4, n_head=4, n_embd=160, n_positions=192),
}
"""GPT-2 shapes by name: `tiny` (~46k parameters with a 512-token vocabulary) for tests, `small`
(~1.6M with a 2k-token vocabulary) for the default pipeline."""

RESIDUAL_DROPOUT_KEYS = ("resid_pdrop", "resid_dropout", "hidden_dropout", "hidden_dropout_prob", "dropout")
"""Config attributes that control residual/hidden dropout in common transformers architectures."""


def build_model(preset: str, tokenizer: PreTrainedTokenizerBase, dropout: float = 0.0) -> GPT2LMHeadModel:
    """A randomly initialised GPT-2 of shape `MODEL_PRESETS[preset]` for `tokenizer`'s vocabulary.

    `dropout` applies to embeddings, attention and residuals; pretraining a small model on a small
    corpus underfits, so it defaults to 0 (SFT sets residual dropout itself). Exact GELU replaces
    GPT-2's tanh approximation, which is slower on CPU.
    """
    if preset not in MODEL_PRESETS:
        raise AlignError(f"model.preset={preset!r} is unknown; choose one of {sorted(MODEL_PRESETS)}")
    config = GPT2Config(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        resid_pdrop=dropout,
        embd_pdrop=dropout,
        attn_pdrop=dropout,
        activation_function="gelu",
        **MODEL_PRESETS[preset],
    )
    return GPT2LMHeadModel(config)


def set_residual_dropout(config: PretrainedConfig, p: float) -> list[str]:
    """Set every residual/hidden dropout attribute `config` has to `p`; returns the names set."""
    names = [k for k in RESIDUAL_DROPOUT_KEYS if isinstance(getattr(config, k, None), float)]
    for k in names:
        setattr(config, k, p)
    if not names:
        log.warning("%s has no residual dropout setting; dropout %.2f not applied", config.model_type, p)
    return names


def check_model_dir(path: str) -> None:
    """Raise `AlignError` unless `path` is a local directory holding a transformers `config.json`."""
    if not path:
        raise AlignError("model path is empty")
    if not os.path.exists(path):
        raise AlignError(f"model path {path!r} does not exist (run the previous stage or set its path)")
    if not os.path.isdir(path) or not os.path.isfile(os.path.join(path, "config.json")):
        raise AlignError(f"model path {path!r} is not a Hugging Face model directory (no config.json)")


def load_tokenizer(path: str) -> PreTrainedTokenizerBase:
    """Load the tokenizer saved in `path`, giving it a pad token if it has none.

    A tokenizer without a pad token gets a new special token `<|pad|>` (logged); the caller must then
    resize the model's embeddings, which `load_causal_lm` does. Padding side is set to "left".
    """
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True, trust_remote_code=False)
    except (OSError, ValueError) as e:
        raise AlignError(f"no usable tokenizer in {path!r}: {str(e).splitlines()[0]}") from e
    if tokenizer.eos_token_id is None:
        raise AlignError(f"tokenizer in {path!r} has no EOS token; completions could never end")
    if tokenizer.pad_token_id is None:
        tokenizer.add_special_tokens({"pad_token": "<|pad|>"})
        log.warning("tokenizer in %s has no pad token: added <|pad|> (id %d)", path, tokenizer.pad_token_id)
    elif tokenizer.pad_token_id == tokenizer.eos_token_id:
        log.warning("tokenizer in %s pads with EOS; masks, not pad ids, mark padding here", path)
    tokenizer.padding_side = "left"
    return tokenizer


def load_causal_lm(
    name_or_path: str, resid_pdrop: float | None = None, device: str | torch.device = "cpu"
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a local Hugging Face causal LM and its tokenizer from `name_or_path`.

    `resid_pdrop`, when given, is written to every residual dropout setting the architecture has
    (`set_residual_dropout`) before the modules are built. Embeddings grow when the tokenizer needed a
    new pad token.
    """
    check_model_dir(name_or_path)
    tokenizer = load_tokenizer(name_or_path)
    try:
        config = AutoConfig.from_pretrained(name_or_path, local_files_only=True, trust_remote_code=False)
    except (OSError, ValueError, KeyError) as e:
        raise AlignError(f"cannot read config in {name_or_path!r}: {str(e).splitlines()[0]}") from e
    if resid_pdrop is not None:
        set_residual_dropout(config, resid_pdrop)
    try:
        model = AutoModelForCausalLM.from_pretrained(
            name_or_path, config=config, local_files_only=True, trust_remote_code=False, dtype=torch.float32
        )
    except (OSError, ValueError, SafetensorError) as e:  # SafetensorError: a truncated or damaged weights file
        raise AlignError(f"cannot load a causal LM from {name_or_path!r}: {str(e).splitlines()[0]}") from e
    if len(tokenizer) > model.get_input_embeddings().num_embeddings:
        model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
        log.warning("resized embeddings of %s to %d tokens", name_or_path, len(tokenizer))
    model.config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model.to(device), tokenizer


def context_length(model: PreTrainedModel) -> int:
    """The longest sequence `model` accepts (`max_position_embeddings`, `n_positions` for GPT-2)."""
    n = getattr(model.config, "max_position_embeddings", None) or getattr(model.config, "n_positions", None)
    if not n:
        raise AlignError(f"cannot tell the context length of {model.config.model_type}")
    return int(n)


def count_parameters(model: torch.nn.Module) -> int:
    """Distinct parameters (tied embeddings counted once)."""
    return sum(p.numel() for p in model.parameters())
