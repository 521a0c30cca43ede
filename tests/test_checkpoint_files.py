"""Every way a checkpoint file can be bad is one line naming the file and what is wrong with it; an
unsafe pickle is refused without running it; a checkpoint damaged after it was written fails its
checksum; 0.1's checkpoints (no checksum) still load."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ppo_core import api, checkpoint
from ppo_core.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
SHORT = ("total_timesteps=256", "algo.num_steps=32", "eval_episodes=0", "progress=false")


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("run")
    api.train(api.make_config(*SHORT), run_dir=run)
    return run / "checkpoint.pt"


class Payload:
    """Unpickling this would create ``marker``: safe loading must never get that far."""

    marker = None

    def __reduce__(self):
        return (open, (str(Payload.marker), "w"))


def bad_files(tmp_path: Path, good: Path) -> dict[str, Path]:
    files = {name: tmp_path / f"{name}.pt" for name in ("empty", "text", "random", "truncated", "unsafe", "keys",
                                                      "newer", "damaged")}
    files["empty"].write_bytes(b"")
    files["text"].write_text("step,return\n1,9.0\n")
    files["random"].write_bytes(os.urandom(4096))
    data = good.read_bytes()
    files["truncated"].write_bytes(data[: len(data) // 2])
    Payload.marker = tmp_path / "pwned"
    torch.save({"model": Payload()}, files["unsafe"])
    torch.save({"weights": torch.zeros(3)}, files["keys"])
    state = torch.load(good, weights_only=True)
    torch.save({**state, "format": 99}, files["newer"])
    first = next(key for key, value in state["model"].items() if isinstance(value, torch.Tensor))
    state["model"][first] = state["model"][first] + 1.0  # a flipped weight; the stored checksum stays
    torch.save(state, files["damaged"])
    return files


EXPECTED = {
    "empty": r"is not a checkpoint \(0 bytes that are not a torch.save archive\)",
    "text": r"is not a checkpoint \(\d+ bytes",
    "random": r"is not a checkpoint \(4096 bytes",
    "truncated": r"is truncated or damaged \(\d+ bytes\)",
    "unsafe": r"holds objects that safe loading refuses \(weights_only=True\), so it was not written by ppo-core",
    "keys": r"is not a ppo-core training checkpoint: expected the keys model, algorithm, .* found \['weights'\]",
    "newer": r"has layout version 99, newer than this ppo-core reads \(2\); upgrade ppo-core",
    "damaged": r"is damaged: its checksum does not match its contents",
}


@pytest.mark.parametrize("kind", sorted(EXPECTED))
def test_each_bad_file_is_one_line_naming_it(tmp_path, good, kind):
    path = bad_files(tmp_path, good)[kind]
    with pytest.raises(ConfigError, match=rf"^checkpoint {str(path)!r} {EXPECTED[kind]}") as error:
        checkpoint.load(path)
    assert "\n" not in str(error.value)
    assert not (tmp_path / "pwned").exists()  # the unsafe payload never ran


@pytest.mark.parametrize("kind", ["truncated", "unsafe", "damaged"])
def test_resume_and_evaluate_refuse_a_bad_file_in_one_line(tmp_path, good, kind):
    path = bad_files(tmp_path, good)[kind]
    with pytest.raises(ConfigError, match=EXPECTED[kind]):
        api.resume(path)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-m", "ppo_core.evaluate", f"checkpoint={path}"], cwd=tmp_path, env=env,
                            capture_output=True, text=True)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith(f"error: checkpoint {str(path)!r}"), result.stderr


def test_a_directory_given_as_a_checkpoint_names_the_file_inside(tmp_path):
    with pytest.raises(ConfigError, match=rf"checkpoint {str(tmp_path)!r} is a directory; expected the checkpoint.pt a "
                                          rf"run writes, e.g. {str(tmp_path / 'checkpoint.pt')!r}"):
        checkpoint.load(tmp_path)


def test_a_0_1_checkpoint_without_checksum_still_loads(tmp_path, good):
    state = torch.load(good, weights_only=True)
    assert state["format"] == checkpoint.FORMAT and state["checksum"] == checkpoint.checksum(
        {k: v for k, v in state.items() if k not in ("format", "checksum")})
    old = {k: v for k, v in state.items() if k not in ("format", "checksum")}
    torch.save(old, tmp_path / "old.pt")
    loaded = checkpoint.load(tmp_path / "old.pt")
    assert loaded.keys() == old.keys() and torch.equal(loaded["rng"]["torch"], old["rng"]["torch"])


def test_the_checksum_sees_any_change_of_value_dtype_or_shape():
    base = {"a": torch.arange(4.0), "b": [1, (2, 3)], "c": {"x": torch.zeros(2, 2)}}
    same = {"c": {"x": torch.zeros(2, 2)}, "b": [1, (2, 3)], "a": torch.arange(4.0)}  # key order is irrelevant
    assert checkpoint.checksum(base) == checkpoint.checksum(same)
    for changed in ({**base, "a": torch.arange(4.0) + 1e-7}, {**base, "a": torch.arange(4)},
                    {**base, "c": {"x": torch.zeros(4)}}, {**base, "b": [1, (3, 2)]}):
        assert checkpoint.checksum(changed) != checkpoint.checksum(base)
