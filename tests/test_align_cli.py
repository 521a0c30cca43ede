"""The `python -m ppo_core.align` front door: typed config, and one clear line on bad input."""

import os
import re
import subprocess
import sys

import pytest

from envs.language_world.template import COMPLETION_SEPARATOR
from ppo_core.align.config import AlignConfig, compose_align_config
from ppo_core.align.errors import AlignError
from ppo_core.align.stages import STAGES, run_stage
from ppo_core.align.world import load_world

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_cli(tmp_path, *overrides: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=REPO, HYDRA_FULL_ERROR="0")
    return subprocess.run(
        [sys.executable, "-m", "ppo_core.align", f"hydra.run.dir={tmp_path}/hydra", *overrides],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )


def test_size_group_sets_sizes_and_paths():
    tiny, small = compose_align_config(["size=tiny"]), compose_align_config([])
    assert isinstance(tiny, AlignConfig)
    assert (tiny.model.preset, tiny.paths.root, small.model.preset) == ("tiny", "artifacts/tiny", "small")
    assert tiny.paths.resolve("sft") == os.path.join("artifacts/tiny", "sft")
    assert {"pretrain", "sft", "rm", "all_supervised"} <= set(STAGES)


@pytest.mark.parametrize("override, message", [("sft.nonsense=1", "nonsense"), ("sft.epochs=many", "epochs")])
def test_unknown_key_or_wrong_type_is_rejected(override, message):
    with pytest.raises(Exception, match=message):
        compose_align_config([override])


def test_demonstration_slips_reach_the_sft_data_and_a_bad_kind_is_named():
    cfg = compose_align_config(["size=tiny", "world.demo_slips.harmful=1.0", "world.demo_slips.open_qa=0.0"])
    world = load_world(cfg.world)
    demonstrations = dict(world.demonstrations("train"))
    harmful = [p for p in world.splits["train"] if p.kind == "harmful" and p.spec["redirect"] is not None]
    assert harmful
    for prompt in harmful:  # every one a bare refusal: polite, no redirect fact, gold 0.8
        answer = demonstrations[world.prompt_text(prompt)].removeprefix(COMPLETION_SEPARATOR)
        assert world.gold_total(prompt, answer) == 0.8, answer
    with pytest.raises(AlignError, match="poetry"):
        load_world(compose_align_config(["size=tiny", "+world.demo_slips.poetry=0.5"]).world)


def test_unknown_stage_names_the_known_ones():
    with pytest.raises(AlignError, match="stage=.rlhf. is unknown.*all_supervised.*eval.*rl"):
        run_stage(AlignConfig(stage="rlhf"))


def test_cli_bad_input_prints_one_line_and_fails(tmp_path):
    result = run_cli(tmp_path, "stage=sft", "size=tiny", f"paths.base={tmp_path}/missing")
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [f"error: model path '{tmp_path}/missing' does not exist "
                                                  "(run the previous stage or set its path)"]
    assert "Traceback" not in result.stdout + result.stderr


def test_cli_unknown_key_fails_naming_it(tmp_path):
    result = run_cli(tmp_path, "stage=sft", "sft.epochz=3")
    assert result.returncode != 0 and "epochz" in result.stderr and "Traceback" not in result.stderr


def test_cli_default_runs_every_stage_and_prints_the_evaluation(tmp_path):
    result = run_cli(tmp_path, "size=tiny", f"paths.root={tmp_path}/art")
    assert result.returncode == 0, result.stderr[-2000:]
    for stage in ("base", "sft", "rm", "rl/policy", "eval"):
        assert os.path.isfile(os.path.join(tmp_path, "art", stage, "stage_summary.json" if stage != "rl/policy"
                                           else "config.json"))
    assert "| all |" in result.stdout and "win_vs_sft" in result.stdout
    for stage, out in (("pretrain", "base"), ("sft", "sft"), ("rm", "rm"), ("rl", "rl"), ("eval", "eval")):
        assert f"stage {stage}: writing {tmp_path}/art/{out}" in result.stdout  # hydra's console log
        assert re.search(rf"stage {stage} done in \d+ s: {tmp_path}/art/{out}", result.stdout)
    assert "  win_vs_sft: share of prompts where the RL policy's greedy answer" in result.stdout
    assert "size=tiny is a smoke run" in result.stdout
    assert "evaluation at env step" in result.stdout  # the RL stage reports its evaluations
