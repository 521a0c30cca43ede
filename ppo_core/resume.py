"""What a resumed run may change: it continues with its own saved config, in its own directory; an
override of a setting that built the checkpoint's policy, optimiser or env is refused by name."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ppo_core import checkpoint
from ppo_core.config import TrainConfig, config_from_dict
from ppo_core.errors import ConfigError

log = logging.getLogger(__name__)

RESUMABLE_KEYS = ("total_timesteps", "eval_every", "eval_episodes", "checkpoint_every", "stop_at_return",
                  "stop_after_evals", "torch_threads", "device", "progress", "resume")
"""Settings a resumed run may change (extend a run, evaluate or checkpoint it differently); every other
one built the checkpoint's policy, optimiser or env and stays the run's own."""

ABSENT = object()
GROUP_IDENTITY = {"algo": ("name",), "env": ("kind", "id"), "agent": ("name",), "objective": ("name",)}
"""What a group override (``env=cartpole``) selects: its option, not every value the option presets."""


def setting_of(config: Any, key: str) -> Any:
    """The value at a dotted ``key`` (``algo.learning_rate``, ``env.kwargs.max_episode_steps``), through
    schemas and dicts; a group's identity for a bare group key; ``ABSENT`` where there is none."""
    if key in GROUP_IDENTITY:
        group = getattr(config, key)
        return tuple(getattr(group, field, None) for field in GROUP_IDENTITY[key])
    for part in key.split("."):
        config = config.get(part, ABSENT) if isinstance(config, dict) else getattr(config, part, ABSENT)
        if config is ABSENT:
            return ABSENT
    return config


def resumed_config(config: TrainConfig, overrides: Sequence[str] = ()) -> tuple[TrainConfig, Path]:
    """A resumed run continues with its own saved config, in its own directory, changed by the
    ``overrides`` (``key=value``) of ``RESUMABLE_KEYS``; an override of any other key is refused by name."""
    saved = config_from_dict(checkpoint.load(config.resume)["config"])
    keys = [override.split("=", 1)[0].lstrip("+~") for override in overrides]
    refused = [key for key in keys if key not in RESUMABLE_KEYS and not key.startswith("hydra")
               and setting_of(config, key) != setting_of(saved, key)]  # repeating the run's own value is fine
    if refused:
        raise ConfigError(f"resume={config.resume} continues the run with its own settings; {', '.join(refused)} "
                          f"cannot change on resume (only {', '.join(RESUMABLE_KEYS)} can)")
    changes = {key: getattr(config, key) for key in keys if key in RESUMABLE_KEYS}
    changes = {"progress": config.progress, **changes, "resume": config.resume}
    for key, value in changes.items():
        if getattr(saved, key) != value and key not in ("progress", "resume"):
            log.info("resume: %s=%s (the run had %s)", key, value, getattr(saved, key))
    return dataclasses.replace(saved, **changes), Path(config.resume).parent
