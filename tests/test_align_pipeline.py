"""pretrain -> SFT -> reward model on the tiny language world, through the functions the CLI calls."""

import json
import os

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from agents.reward_model import RewardModel
from ppo_core.align.config import compose_align_config
from ppo_core.align.data import pad_sequences
from ppo_core.align.errors import AlignError
from ppo_core.align.stages import SUMMARY_FILE, run_stage



@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("artifacts"))
    summary = run_stage(compose_align_config(["size=tiny", "stage=all_supervised", f"paths.root={root}"]))
    return root, summary


def test_each_stage_writes_hugging_face_outputs(artifacts):
    root, summary = artifacts
    assert set(summary) == {"pretrain", "sft", "rm"}
    for stage in ("base", "sft"):
        path = os.path.join(root, stage)
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path)
        assert tokenizer.pad_token_id != tokenizer.eos_token_id
        assert model.config.vocab_size == len(tokenizer)
        assert json.load(open(os.path.join(path, SUMMARY_FILE)))["config"]["paths"]["root"] == root
        assert os.listdir(os.path.join(path, "tb"))
    assert summary["sft"]["steps"] >= summary["sft"]["best_step"] >= 0


def test_reward_model_is_normalised_and_scores_batches(artifacts):
    root, summary = artifacts
    rm = RewardModel.from_pretrained(os.path.join(root, "rm"))
    assert rm.offset == pytest.approx(summary["rm"]["offset"])
    assert 0.0 <= summary["rm"]["val"]["distinct_accuracy"] <= 1.0
    assert summary["rm"]["agreement_ceiling"] == pytest.approx(0.836)
    tokenizer = AutoTokenizer.from_pretrained(os.path.join(root, "rm"))
    ids, mask = pad_sequences([tokenizer("User: hi\nAssistant: hello")["input_ids"], [5, 6]],
                              tokenizer.pad_token_id, "left")
    with torch.no_grad():
        assert rm.score(ids, mask).shape == (2,)


def test_sft_reads_a_missing_base_as_a_clear_error(tmp_path):
    with pytest.raises(AlignError, match="does not exist"):
        run_stage(compose_align_config(["size=tiny", "stage=sft", f"paths.root={tmp_path}"]))


def test_k_outside_range_fails_before_any_work(artifacts, tmp_path):
    root, _ = artifacts
    with pytest.raises(AlignError, match="rm.k=12"):
        run_stage(compose_align_config(["size=tiny", "stage=rm", "rm.k=12", f"paths.root={root}",
                                        f"paths.rm={tmp_path}/rm"]))
