"""Many runs through hydra's submitit launcher: submitit_local runs a seed sweep as separate jobs whose
run directories ``ppo_core.compare`` reads like any multirun; the SLURM preset composes to the
documented job settings."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ppo_core import compare

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_a_submitit_local_seed_sweep_writes_runs_that_compare_reads(tmp_path):
    sweep = tmp_path / "sweep"
    args = [sys.executable, "-m", "ppo_core.train", "-m", "seed=0,1", "hydra/launcher=submitit_local",
            "total_timesteps=2048", "eval_every=1024", "eval_episodes=2", "progress=false",
            f"hydra.sweep.dir={sweep}"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    summaries = sorted(sweep.glob("*/summary.json"))
    assert [p.parent.name for p in summaries] == ["0", "1"]
    seeds = [json.loads(p.read_text())["config"]["seed"] for p in summaries]
    assert seeds == [0, 1]
    assert (sweep / ".submitit").is_dir()  # the jobs went through submitit, one folder per job
    compare.main([str(sweep), "--out", str(tmp_path / "compare")])
    with open(tmp_path / "compare" / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1 and rows[0]["task"] == "CartPole-v1" and int(rows[0]["runs"]) == 2


def test_the_slurm_preset_composes_to_its_documented_job_settings(tmp_path):
    args = [sys.executable, "-m", "ppo_core.train", "hydra/launcher=slurm", "hydra.launcher.partition=gpu",
            "hydra.launcher.gpus_per_node=1", "--cfg", "hydra", "-p", "hydra.launcher"]
    done = subprocess.run(args, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    settings = dict(line.split(": ", 1) for line in done.stdout.splitlines() if ": " in line and not line.startswith("#"))
    assert settings["_target_"] == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert (settings["partition"], settings["gpus_per_node"], settings["timeout_min"],
            settings["array_parallelism"]) == ("gpu", "1", "120", "64")
