"""Token-level data: left truncation of prompts, completion-only labels, packing, the LR schedule."""

import pytest
import torch

from ppo_core.align.data import IGNORE_INDEX, Example, collate_examples, encode_examples, encode_prompt, pack_blocks
from ppo_core.align.errors import AlignError
from ppo_core.align.generation import strip_after_eos
from ppo_core.align.tokenizer import train_tokenizer
from ppo_core.align.training import cosine_lr

TEXTS = ["The quick brown fox jumps over the lazy dog.", "User: name three colours\nAssistant: red, blue, green"] * 20


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(TEXTS, vocab_size=300)


def test_long_prompt_is_truncated_from_the_left(tokenizer):
    ids = tokenizer(TEXTS[1])["input_ids"]
    cut, truncated = encode_prompt(tokenizer, TEXTS[1], 4)
    assert truncated and cut == ids[-4:]
    assert encode_prompt(tokenizer, TEXTS[1], 100) == (ids, False)


def test_completion_ends_with_eos_unless_truncated(tokenizer):
    [full] = encode_examples(tokenizer, [("User: hi\nAssistant:", " red, blue, green")], 32, 32)
    [cut] = encode_examples(tokenizer, [("User: hi\nAssistant:", " red, blue, green")], 32, 3)
    assert full.completion_ids[-1] == tokenizer.eos_token_id
    assert len(cut.completion_ids) == 3 and cut.completion_ids[-1] != tokenizer.eos_token_id


def test_labels_cover_completion_tokens_only():
    batch = collate_examples([Example([1, 2, 3], [4, 5]), Example([6], [7, 8, 9])], pad_id=0)
    assert batch["input_ids"].tolist() == [[1, 2, 3, 4, 5], [6, 7, 8, 9, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1, 1], [1, 1, 1, 1, 0]]
    i = IGNORE_INDEX
    assert batch["labels"].tolist() == [[i, i, i, 4, 5], [i, 7, 8, 9, i]]


def test_pack_blocks_separates_documents_with_eos(tokenizer):
    stream = []
    for text in TEXTS:
        stream += tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    blocks = pack_blocks(tokenizer, TEXTS, 16)  # (N, 16)
    assert blocks.shape == (len(stream) // 16, 16)
    assert blocks.flatten().tolist() == stream[: blocks.numel()]
    with pytest.raises(AlignError, match="fewer than one block"):
        pack_blocks(tokenizer, ["a"], 16)


def test_strip_after_eos():
    assert strip_after_eos([4, 5, 1, 0, 0], eos_id=1) == [4, 5, 1]
    assert strip_after_eos([4, 5], eos_id=1) == [4, 5]


def test_cosine_schedule_without_warmup_decays_to_ten_percent():
    assert cosine_lr(0, 100, 0, 0.1) == pytest.approx(1.0)
    assert cosine_lr(50, 100, 0, 0.1) == pytest.approx(0.55)
    assert cosine_lr(100, 100, 0, 0.1) == pytest.approx(0.1)
    assert cosine_lr(0, 100, 10, 0.1) == pytest.approx(0.1)
    assert all(cosine_lr(s, 100) >= cosine_lr(s + 1, 100) for s in range(100))


def test_generation_left_padding_matches_unpadded(tokenizer):
    from ppo_core.align.generation import generate_completions
    from ppo_core.align.models import build_model

    torch.manual_seed(0)
    model = build_model("tiny", tokenizer).eval()
    prompts = [tokenizer(TEXTS[1])["input_ids"], tokenizer("The quick")["input_ids"]]
    batched = generate_completions(model, tokenizer, prompts, 1, 6, temperature=0.0)
    alone = [generate_completions(model, tokenizer, [p], 1, 6, temperature=0.0)[0] for p in prompts]
    assert batched == alone


def test_length_grouped_batches_cover_every_item_once_and_pad_little():
    import random

    from ppo_core.align.training import shuffled_batches

    items = [random.Random(i).randint(1, 100) for i in range(1000)]
    plain = list(shuffled_batches(items, 10, random.Random(0)))
    grouped = list(shuffled_batches(items, 10, random.Random(0), length=lambda x: x, group=20))
    for batches in (plain, grouped):
        assert sorted(x for batch, _ in batches for x in batch) == sorted(items)
        assert [last for _, last in batches] == [False] * (len(batches) - 1) + [True]
    padding = lambda batches: sum(len(b) * max(b) - sum(b) for b, _ in batches)  # noqa: E731
    assert padding(grouped) < 0.2 * padding(plain)
