"""Any local Hugging Face causal LM loads by path and trains one SFT step and one reward-model step."""

import os

import pytest
import torch
from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

from agents.reward_model import RewardModel
from ppo_core.align.config import RewardConfig, SFTConfig
from ppo_core.align.errors import AlignError
from ppo_core.align.models import build_model, context_length, count_parameters, load_causal_lm
from ppo_core.align.reward import RankedPrompt, check_k, train_reward_model
from ppo_core.align.sft import sft
from ppo_core.align.tokenizer import train_tokenizer

TEXTS = [f"User: what colour is the {n}?\nAssistant: The {n} is {c}." for n in ("zorb", "plim", "quax")
         for c in ("red", "blue", "green")] * 5
PAIRS = [(t.split(" The ")[0], " The " + t.split(" The ")[1]) for t in TEXTS[:9]]


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(TEXTS, vocab_size=300)


def save_random_lm(path, arch: str, tokenizer) -> str:
    torch.manual_seed(0)
    ids = dict(vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
               pad_token_id=tokenizer.pad_token_id)
    if arch == "gpt2":
        model = GPT2LMHeadModel(GPT2Config(n_layer=2, n_head=2, n_embd=16, n_positions=64, **ids))
    else:
        model = LlamaForCausalLM(LlamaConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                             num_attention_heads=2, num_key_value_heads=2,
                                             max_position_embeddings=64, **ids))
    model.save_pretrained(str(path))
    tokenizer.save_pretrained(str(path))
    return str(path)


def test_tokenizer_special_tokens_round_trip(tokenizer, tmp_path):
    assert tokenizer.pad_token_id != tokenizer.eos_token_id
    tokenizer.save_pretrained(str(tmp_path))
    loaded = AutoTokenizer.from_pretrained(str(tmp_path))
    assert (loaded.pad_token, loaded.eos_token) == (tokenizer.pad_token, tokenizer.eos_token)
    assert loaded.decode(loaded(TEXTS[0])["input_ids"]) == TEXTS[0]


def test_tiny_preset_size(tokenizer):
    assert 20_000 < count_parameters(build_model("tiny", tokenizer)) < 100_000


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_local_checkpoint_trains_sft_and_rm_step(arch, tokenizer, tmp_path):
    path = save_random_lm(tmp_path / arch, arch, tokenizer)
    model, tok = load_causal_lm(path, resid_pdrop=0.2)
    assert context_length(model) == 64
    cfg = SFTConfig(epochs=1, batch_size=16, max_prompt_tokens=24, max_completion_tokens=16, eval_every=1)
    result = sft(model, tok, PAIRS, PAIRS[:2], cfg, str(tmp_path / "sft"))
    assert result.steps == 1 and os.path.isfile(tmp_path / "sft" / "config.json")

    model, tok = load_causal_lm(str(tmp_path / "sft"))
    rm = RewardModel.from_causal_lm(model)
    prompt = tok("User: what colour is the zorb?\nAssistant:")["input_ids"]
    ranked = [RankedPrompt(prompt, [tok(" The zorb is red.")["input_ids"] + [tok.eos_token_id],
                                    tok(" blue")["input_ids"], tok(" The")["input_ids"]], [3.0, 1.0, 0.0])]
    rm_result = train_reward_model(rm, tok, ranked, ranked, RewardConfig(k=3, batch_size=1), str(tmp_path / "rm"))
    assert rm_result.steps == 1
    loaded = RewardModel.from_pretrained(str(tmp_path / "rm"))
    assert loaded.offset == pytest.approx(rm_result.offset)


def test_gpt2_residual_dropout_is_set(tokenizer, tmp_path):
    model, _ = load_causal_lm(save_random_lm(tmp_path, "gpt2", tokenizer), resid_pdrop=0.2)
    assert model.config.resid_pdrop == 0.2
    assert model.transformer.h[0].mlp.dropout.p == 0.2


def test_tokenizer_without_pad_gets_one_and_embeddings_grow(tokenizer, tmp_path):
    path = save_random_lm(tmp_path, "llama", tokenizer)
    no_pad = AutoTokenizer.from_pretrained(path)
    no_pad.pad_token = None
    no_pad.save_pretrained(path)
    model, tok = load_causal_lm(path)
    assert tok.pad_token_id is not None and tok.pad_token_id != tok.eos_token_id
    assert model.get_input_embeddings().num_embeddings >= len(tok)


def test_missing_path_is_a_clear_error(tmp_path):
    with pytest.raises(AlignError, match="does not exist"):
        load_causal_lm(str(tmp_path / "nowhere"))


def test_directory_without_config_is_a_clear_error(tmp_path):
    with pytest.raises(AlignError, match="no config.json"):
        load_causal_lm(str(tmp_path))


@pytest.mark.parametrize("k", [0, 1, 10])
def test_k_outside_2_to_9_is_rejected(k):
    with pytest.raises(AlignError, match=f"rm.k={k}"):
        check_k(k)


def test_empty_sft_data_is_a_clear_error(tokenizer, tmp_path):
    model, tok = load_causal_lm(save_random_lm(tmp_path, "gpt2", tokenizer))
    with pytest.raises(AlignError, match="demonstrations"):
        sft(model, tok, [], PAIRS, SFTConfig(), str(tmp_path / "sft"))


def test_lengths_beyond_context_are_rejected(tokenizer, tmp_path):
    model, tok = load_causal_lm(save_random_lm(tmp_path, "gpt2", tokenizer))
    with pytest.raises(AlignError, match="exceeds the model context 64"):
        sft(model, tok, PAIRS, PAIRS, SFTConfig(max_prompt_tokens=60, max_completion_tokens=40), str(tmp_path / "s"))
