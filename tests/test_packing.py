"""Packing: every kept token lands once at its own position, rows never overflow, and a packed forward
gives each sequence what a forward over that sequence alone, unpadded, gives."""

import pytest
import torch
from transformers import BloomConfig, BloomForSequenceClassification, BloomModel, masking_utils

from agents.lm import LMActorCritic, packed_completion_hidden
from agents.packing import first_fit_decreasing, pack, packing_error
from agents.reward_model import RewardModel
from tests.lm_fixtures import EOS, PAD, make_lm
from tests.test_lm_policy import tiny_llama

FILL = 99


def random_runs(n: int, t: int) -> torch.Tensor:
    """(n, t) bool with one contiguous run of at least one True per row."""
    starts = torch.randint(0, t, (n,))
    ends = starts + 1 + (torch.rand(n) * (t - starts)).long()  # in (start, t]
    columns = torch.arange(t)
    return (columns >= starts[:, None]) & (columns < ends[:, None])


def test_pack_places_every_kept_token_once_at_its_position_in_its_sequence():
    torch.manual_seed(0)
    for _ in range(30):
        keep = random_runs(7, 12)
        ids = torch.randint(3, 50, (7, 12))
        packed = pack(ids, keep, FILL)
        rows, width = packed.input_ids.shape
        assert width == int(keep.sum(1).max())
        seen = set()
        for i in range(7):
            kept = keep[i].nonzero().flatten().tolist()
            for position, column in enumerate(kept):
                row, col = int(packed.rows[i, column]), int(packed.cols[i, column])
                assert packed.input_ids[row, col] == ids[i, column] and packed.position_ids[row, col] == position
                assert (row, col) not in seen
                seen.add((row, col))
        for row in range(rows):
            for col in range(width):
                if (row, col) not in seen:
                    assert packed.input_ids[row, col] == FILL and packed.position_ids[row, col] == 0
        assert len(seen) == int(keep.sum())


def test_first_fit_decreasing_against_a_hand_packing():
    # longest first, each into the first row with room: 5 | 4 1 | 3 2 | 3 | 3, five rows of 5 for 21 tokens (the fewest)
    rows, offsets = first_fit_decreasing([3, 5, 1, 3, 4, 2, 3], capacity=5)
    assert rows == [2, 0, 1, 3, 1, 2, 4]
    assert offsets == [0, 0, 4, 0, 0, 3, 0]


def test_pack_refuses_kept_tokens_that_are_not_one_run():
    keep = torch.tensor([[1, 0, 1, 1], [0, 1, 1, 0]])
    with pytest.raises(ValueError, match="one contiguous run"):
        pack(torch.zeros(2, 4, dtype=torch.long), keep, FILL)


UNEVEN = ([[5, 6, 7, 8, 9, 10], [11, 12], [13, 14, 15], [16]],
          [[20, 21, EOS], [22, 23, 24, 25, EOS], [EOS], [26, 27, 28, 29, 30]])  # the last without EOS
EVEN = ([[5, 6, 7], [11, 12, 13]], [[20, EOS], [22, 23]])  # one sequence per row: a plain causal mask


@pytest.mark.parametrize("sequences", [UNEVEN, EVEN], ids=["uneven", "even"])
@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_packed_hidden_states_equal_each_sequence_alone(family, sequences):
    model = make_lm(0) if family == "gpt2" else tiny_llama()
    prompts, completions = sequences
    width = max(map(len, prompts))
    prompt_ids = torch.tensor([[PAD] * (width - len(p)) + p for p in prompts])
    prompt_mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    length = max(map(len, completions))
    tokens = torch.tensor([c + [PAD] * (length - len(c)) for c in completions])
    mask = torch.tensor([[True] * len(c) + [False] * (length - len(c)) for c in completions])
    with torch.no_grad():
        hidden = packed_completion_hidden(model.base_model, prompt_ids, prompt_mask, tokens, mask, EOS)  # (N, L, H)
        for i, (prompt, completion) in enumerate(zip(prompts, completions)):
            alone = model.base_model(input_ids=torch.tensor([prompt + completion[:-1]])).last_hidden_state[0]
            torch.testing.assert_close(hidden[i, : len(completion)], alone[len(prompt) - 1 :], atol=1e-5, rtol=0)


def test_a_trunk_that_lets_packed_sequences_see_each_other_is_caught(monkeypatch):
    assert packing_error(make_lm(0).base_model, EOS) < 1e-5
    monkeypatch.setattr(masking_utils, "find_packed_sequence_indices", lambda position_ids: None)  # plain causal
    assert packing_error(make_lm(0).base_model, EOS) > 1e-2
    with pytest.raises(ValueError, match=r"trim_padding='pack': the policy's packed forward differs .* use 'minibatch'"):
        LMActorCritic(make_lm(0), PAD, EOS, max_new_tokens=4, trim_padding="pack")
    rm = RewardModel.from_causal_lm(make_lm(1))
    assert not rm.packed  # it scores the padded batch instead
    ids, mask = torch.tensor([[5, 6, 7], [8, 9, PAD]]), torch.tensor([[1, 1, 1], [1, 1, 0]])
    with torch.no_grad():
        alone = torch.stack([rm(ids[:1], mask[:1])[0], rm(ids[1:, :2], mask[1:, :2])[0]])
        torch.testing.assert_close(rm(ids, mask), alone, atol=1e-5, rtol=0)


def test_a_value_trunk_that_cannot_be_packed_is_refused():
    bloom = RewardModel(BloomForSequenceClassification(
        BloomConfig(vocab_size=100, hidden_size=32, n_layer=2, n_head=2, pad_token_id=PAD, num_labels=1)))
    assert not bloom.packed  # its attention ignores packed position ids
    with pytest.raises(ValueError, match=r"trim_padding='pack': the value trunk's packed forward differs"):
        LMActorCritic(make_lm(0), PAD, EOS, max_new_tokens=4, critic="separate", value_init=bloom, trim_padding="pack")
    LMActorCritic(make_lm(0), PAD, EOS, max_new_tokens=4, critic="separate", value_init=bloom, trim_padding="minibatch")


def test_an_empty_prompt_is_an_error_naming_its_row():
    prompt_ids, prompt_mask = torch.tensor([[PAD, 5], [PAD, PAD]]), torch.tensor([[0, 1], [0, 0]])
    tokens, mask = torch.tensor([[6, EOS], [7, EOS]]), torch.ones(2, 2, dtype=torch.bool)
    with pytest.raises(ValueError, match=r"column 1 in every row; rows \[1\] lack it"):
        packed_completion_hidden(make_lm(0).base_model, prompt_ids, prompt_mask, tokens, mask, EOS)
