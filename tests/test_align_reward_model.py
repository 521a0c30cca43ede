"""The reward model reads the hidden state of the last non-pad token, whatever the padding side."""

import json
import os

import pytest
import torch
from safetensors.torch import save_file
from transformers import (AutoModelForSequenceClassification, GPT2Config, GPT2LMHeadModel, LlamaConfig,
                          LlamaForCausalLM)

from agents.reward_model import CONFIG_FILE, RewardModel, last_token_index
from ppo_core.align.data import pad_sequences

SEQUENCES = [[5, 6, 7, 8, 9], [10, 11], [12, 13, 14]]
PAD = 0


def tiny_lms():
    torch.manual_seed(0)
    gpt2 = GPT2LMHeadModel(GPT2Config(n_layer=2, n_head=2, n_embd=16, vocab_size=32, n_positions=32,
                                      bos_token_id=1, eos_token_id=1, pad_token_id=PAD))
    llama = LlamaForCausalLM(LlamaConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                         num_attention_heads=2, num_key_value_heads=2, vocab_size=32,
                                         max_position_embeddings=32, bos_token_id=1, eos_token_id=1,
                                         pad_token_id=PAD))
    return {"gpt2": gpt2, "llama": llama}


def test_last_token_index_left_and_right():
    _, right = pad_sequences(SEQUENCES, PAD, "right")
    _, left = pad_sequences(SEQUENCES, PAD, "left")
    assert last_token_index(right).tolist() == [4, 1, 2]
    assert last_token_index(left).tolist() == [4, 4, 4]


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
@pytest.mark.parametrize("side", ["right", "left"])
def test_reads_last_non_pad_token(arch, side):
    rm = RewardModel.from_causal_lm(tiny_lms()[arch]).eval()
    ids, mask = pad_sequences(SEQUENCES, PAD, side)
    with torch.no_grad():
        got = rm(ids, mask)  # (B,)
        hidden = rm.trunk(input_ids=ids, attention_mask=mask,
                          position_ids=(mask.cumsum(-1) - 1).clamp(min=0)).last_hidden_state  # (B, T, H)
        last = torch.tensor([len(s) - 1 if side == "right" else ids.shape[1] - 1 for s in SEQUENCES])
        manual = rm.head(hidden.gather(1, last[:, None, None].expand(-1, 1, hidden.shape[-1])).squeeze(1))
        alone = torch.stack([rm(torch.tensor([s]), torch.ones(1, len(s), dtype=torch.long))[0] for s in SEQUENCES])
    torch.testing.assert_close(got, manual.squeeze(-1))
    torch.testing.assert_close(got, alone, atol=1e-5, rtol=1e-5)


def test_save_and_load_round_trip(tmp_path):
    rm = RewardModel.from_causal_lm(tiny_lms()["gpt2"]).eval()
    rm.offset = -0.25
    rm.save_pretrained(str(tmp_path))
    assert json.load(open(os.path.join(tmp_path, CONFIG_FILE)))["offset"] == -0.25
    loaded = RewardModel.from_pretrained(str(tmp_path))
    ids, mask = pad_sequences(SEQUENCES, PAD, "left")
    with torch.no_grad():
        torch.testing.assert_close(loaded.score(ids, mask), rm(ids, mask) - 0.25)


def test_a_scale_multiplies_the_shifted_score_and_round_trips(tmp_path):
    rm = RewardModel.from_causal_lm(tiny_lms()["gpt2"]).eval()
    rm.offset, rm.scale = -0.25, 4.0
    rm.save_pretrained(str(tmp_path))
    assert json.load(open(os.path.join(tmp_path, CONFIG_FILE)))["scale"] == 4.0
    loaded = RewardModel.from_pretrained(str(tmp_path))
    ids, mask = pad_sequences(SEQUENCES, PAD, "left")
    with torch.no_grad():
        torch.testing.assert_close(loaded.score(ids, mask), 4.0 * (rm(ids, mask) - 0.25))
    saved = json.load(open(os.path.join(tmp_path, CONFIG_FILE)))
    del saved["scale"]  # a reward model written before scales existed
    json.dump(saved, open(os.path.join(tmp_path, CONFIG_FILE), "w"))
    assert RewardModel.from_pretrained(str(tmp_path)).scale == 1.0


def test_normalize_std_gives_the_sft_samples_mean_0_and_sd_1(tmp_path):
    """After training with rm.normalize_std, every training completion scored one at a time, unpadded:
    mean 0 (the offset) and sample standard deviation 1 (the scale); without it, mean 0 and scale 1."""
    from ppo_core.align.config import RewardConfig
    from ppo_core.align.reward import RankedPrompt, train_reward_model
    from tests.lm_fixtures import make_lm, make_tokenizer

    generator = torch.Generator().manual_seed(0)
    ranked = [RankedPrompt(torch.randint(3, 40, (3 + i % 3,), generator=generator).tolist(),
                           [torch.randint(3, 99, (1 + (i + j) % 4,), generator=generator).tolist() + [1] for j in range(3)],
                           None) for i in range(6)]
    for normalize in (True, False):
        rm = RewardModel.from_causal_lm(make_lm(1))
        result = train_reward_model(rm, make_tokenizer(), ranked, ranked[:2], RewardConfig(k=3, batch_size=2, normalize_std=normalize),
                                    str(tmp_path / str(normalize)))
        loaded = RewardModel.from_pretrained(str(tmp_path / str(normalize)))
        with torch.no_grad():
            scores = torch.stack([loaded.score(torch.tensor([r.prompt_ids + c]), torch.ones(1, len(r.prompt_ids + c),
                                                                                           dtype=torch.long))[0]
                                  for r in ranked for c in r.completions])
        assert abs(float(scores.mean())) < 1e-5
        if normalize:
            assert float(scores.std()) == pytest.approx(1.0, abs=1e-4) and result.scale == loaded.scale != 1.0
            assert loaded.scale == pytest.approx(1 / result.reward_std)
        else:
            assert loaded.scale == result.scale == 1.0 and float(scores.std()) == pytest.approx(result.reward_std, abs=1e-4)


def test_load_rejects_a_plain_model_dir(tmp_path):
    tiny_lms()["gpt2"].save_pretrained(str(tmp_path))
    with pytest.raises(ValueError, match="holds a GPT2LMHeadModel model, not a reward model"):
        RewardModel.from_pretrained(str(tmp_path))


def test_load_rejects_a_classifier_with_two_labels(tmp_path):
    config = tiny_lms()["gpt2"].config
    config.num_labels = 2
    AutoModelForSequenceClassification.from_config(config).save_pretrained(str(tmp_path))
    with pytest.raises(ValueError, match="num_labels=2; a reward model has one"):
        RewardModel.from_pretrained(str(tmp_path))


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_saved_reward_model_is_a_transformers_classifier_with_equal_scores(arch, tmp_path):
    """What TRL and OpenRLHF load: plain transformers reads the directory, and its .logits on a
    right-padded batch of mixed lengths are our rewards."""
    rm = RewardModel.from_causal_lm(tiny_lms()[arch]).eval()
    rm.offset = 0.7
    rm.save_pretrained(str(tmp_path))
    plain = AutoModelForSequenceClassification.from_pretrained(str(tmp_path)).eval()
    assert type(plain).__name__.endswith("ForSequenceClassification") and plain.config.num_labels == 1
    ids, mask = pad_sequences(SEQUENCES, PAD, "right")
    left_ids, left_mask = pad_sequences(SEQUENCES, PAD, "left")
    with torch.no_grad():
        logits = plain(input_ids=ids, attention_mask=mask).logits.squeeze(-1)  # (B,)
        torch.testing.assert_close(rm(ids, mask), logits, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(rm(left_ids, left_mask), logits, atol=1e-5, rtol=1e-5)  # our read ignores the side
        loaded = RewardModel.from_pretrained(str(tmp_path))
        torch.testing.assert_close(loaded.score(ids, mask), logits + 0.7, atol=1e-5, rtol=1e-5)


def test_a_classifier_without_our_config_loads_with_offset_zero(tmp_path):
    config = tiny_lms()["llama"].config
    config.num_labels = 1
    torch.manual_seed(3)
    AutoModelForSequenceClassification.from_config(config).save_pretrained(str(tmp_path))
    plain = AutoModelForSequenceClassification.from_pretrained(str(tmp_path)).eval()
    loaded = RewardModel.from_pretrained(str(tmp_path))
    ids, mask = pad_sequences(SEQUENCES, PAD, "right")
    with torch.no_grad():
        torch.testing.assert_close(loaded.score(ids, mask), plain(input_ids=ids, attention_mask=mask).logits[:, 0],
                                   atol=1e-5, rtol=1e-5)


def test_the_earlier_layout_still_loads_with_the_same_scores(tmp_path):
    """A trunk saved as a base model beside reward_head.safetensors (weight and bias): r = w·h + b + offset."""
    lm = tiny_lms()["gpt2"].eval()
    lm.base_model.save_pretrained(str(tmp_path))
    torch.manual_seed(1)
    weight, bias = torch.randn(1, 16), torch.tensor([0.3])
    save_file({"weight": weight, "bias": bias}, os.path.join(tmp_path, "reward_head.safetensors"))
    json.dump({"offset": -0.1}, open(os.path.join(tmp_path, CONFIG_FILE), "w"))
    loaded = RewardModel.from_pretrained(str(tmp_path))
    ids, mask = pad_sequences(SEQUENCES, PAD, "right")
    with torch.no_grad():
        hidden = lm.base_model(input_ids=ids, attention_mask=mask).last_hidden_state  # (B, T, H)
        last = torch.tensor([len(s) - 1 for s in SEQUENCES])
        expected = hidden[torch.arange(3), last] @ weight[0] + 0.3 - 0.1
        torch.testing.assert_close(loaded.score(ids, mask), expected, atol=1e-5, rtol=1e-5)


def test_a_classifier_that_pads_with_eos_is_read_where_transformers_reads_it(tmp_path):
    """TRL's usual GPT-2 / Llama reward models pad with EOS: transformers then scores the last token
    that is not EOS, and so do we, whatever the padding side."""
    config = tiny_lms()["gpt2"].config
    config.num_labels, config.pad_token_id, config.eos_token_id = 1, 1, 1
    torch.manual_seed(4)
    AutoModelForSequenceClassification.from_config(config).save_pretrained(str(tmp_path))
    plain = AutoModelForSequenceClassification.from_pretrained(str(tmp_path)).eval()
    loaded = RewardModel.from_pretrained(str(tmp_path))
    ended = [s + [1] for s in SEQUENCES]  # each completion ends with EOS, then EOS pads
    ids, mask = pad_sequences(ended, 1, "right")
    left_ids, left_mask = pad_sequences(ended, 1, "left")
    with torch.no_grad():
        logits = plain(input_ids=ids, attention_mask=mask).logits[:, 0]
        torch.testing.assert_close(loaded.score(ids, mask), logits, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(loaded.score(left_ids, left_mask), logits, atol=1e-5, rtol=1e-5)
