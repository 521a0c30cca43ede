"""The layers import downwards only (docs/architecture.md): the RL core knows nothing of language
models, agents/ and envs/ build on the core's interfaces, the alignment wing sits on top."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("ppo_core", "envs", "agents")

CORE, IMPLEMENTATIONS, FRONT_DOORS, WING = 0, 1, 2, 3
LAYER_NAMES = {CORE: "the RL core", IMPLEMENTATIONS: "agents/envs", FRONT_DOORS: "the builder and CLIs",
               WING: "the alignment wing"}
INTERFACES = {"agents.base", "agents.distributions", "envs.base"}  # what the core's trainer and algorithms see
FRONT_DOOR_MODULES = {"ppo_core.build", "ppo_core.train", "ppo_core.evaluate", "ppo_core.compare", "ppo_core.api",
                      "ppo_core.seeds"}
LM_LIBRARIES = {"transformers", "tokenizers", "safetensors", "peft", "datasets", "accelerate"}


def layer(module: str) -> int:
    if module.startswith("ppo_core.align"):
        return WING
    if module in FRONT_DOOR_MODULES:
        return FRONT_DOORS
    if module.startswith("ppo_core") or module in INTERFACES:
        return CORE
    return IMPLEMENTATIONS


def imported_modules(source: str, module: str) -> set[str]:
    """Every module ``source`` imports, at the top or inside a function (a lazy import is an import)."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against the importing package
                base = ".".join(module.split(".")[: -node.level] + ([base] if base else []))
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)  # `from pkg import submodule`
    return names


def violations(module: str, source: str, known: set[str]) -> list[str]:
    """Why ``module``'s imports break the layering: an import from a higher layer, or an LM library
    in the core or its front doors."""
    problems = []
    for name in sorted(imported_modules(source, module)):
        top = name.split(".")[0]
        if top in LM_LIBRARIES and layer(module) in (CORE, FRONT_DOORS):
            problems.append(f"{module} ({LAYER_NAMES[layer(module)]}) imports {name}")
        if name in known and layer(name) > layer(module):
            problems.append(f"{module} ({LAYER_NAMES[layer(module)]}) imports {name} ({LAYER_NAMES[layer(name)]})")
    return problems


def project_modules() -> dict[str, str]:
    modules = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            modules[name] = path.read_text()
    return modules


def test_every_import_points_down_a_layer():
    modules = project_modules()
    problems = [p for name, source in modules.items() for p in violations(name, source, set(modules))]
    assert problems == []


@pytest.mark.parametrize("module, source, expected", [
    ("ppo_core.trainer", "from ppo_core.align.rl_build import make_text_env", "imports ppo_core.align.rl_build"),
    ("ppo_core.losses", "def f():\n    import transformers", "imports transformers"),
    ("envs.text_bandit", "from ppo_core.align import data", "imports ppo_core.align.data"),
    ("ppo_core.kl", "from ppo_core import build", "imports ppo_core.build"),
    ("agents.mlp", "from ppo_core.evaluate import main", "imports ppo_core.evaluate"),
])
def test_the_check_catches_an_upward_import(module, source, expected):
    known = {"ppo_core.align.rl_build", "ppo_core.align.data", "ppo_core.build", "ppo_core.evaluate", "ppo_core.align"}
    assert any(expected in problem for problem in violations(module, source, known))


def test_downward_and_sideways_imports_pass():
    known = {"ppo_core.kl", "agents.base", "ppo_core.build", "envs.text_encoding"}
    assert violations("ppo_core.align.plugin", "from ppo_core.build import EnvKind\nimport transformers", known) == []
    assert violations("envs.text_bandit", "from ppo_core.kl import k1\nimport transformers", known) == []
    assert violations("ppo_core.algorithms", "from agents.base import ActorCritic", known) == []


def test_a_cartpole_iteration_never_imports_transformers():
    """Import every module of the core and its front doors, run a CartPole iteration: the LM stack
    (seconds to import) stays out of the process."""
    core = sorted(name for name in project_modules() if layer(name) in (CORE, FRONT_DOORS))
    code = (f"import importlib, sys, tempfile, pathlib\nfor name in {core!r}: importlib.import_module(name)\n"
            "from ppo_core.api import make_config, train\n"
            "train(make_config('total_timesteps=256', 'algo.num_steps=32', 'eval_episodes=1', 'progress=false'),"
            " run_dir=pathlib.Path(tempfile.mkdtemp()))\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('transformers', 'tokenizers')))")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert result.stdout.strip().splitlines()[-1] == "[]"
