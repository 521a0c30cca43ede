"""From ppo-core 0.1's settings to 0.2's: renamed keys refused by their new name on the command line,
and configs saved by 0.1 (checkpoints, summaries) read under the new names."""

from __future__ import annotations

from typing import Any

from ppo_core.errors import ConfigError


RENAMED_KEYS = {
    "env.beta": "objective.kl_coef",
    "env.kl_target": "objective.kl_coef_target",
    **{f"env.{key}": f"objective.{key}" for key in ("kl_horizon", "kl_estimator", "kl_direction", "kl_placement",
                                                     "ptx_coef", "ptx_batch_size", "ptx_data")},
    "algo.target_kl": "algo.early_stop_kl",
    "algo.kl_target": "algo.penalty_kl_target",
    "algo.kl_beta_init": "algo.penalty_coef_init",
    "algo.objective": "algo.surrogate",
    "env.reward_source": "env.reward",
}
"""Keys of ppo-core 0.1 and 0.2 and their names since: one name for the KL coefficient to the reference
policy, one unmistakable name for each KL target, the objective's terms in the objective group (0.2);
every reward source under ``env.reward`` (0.3)."""
RENAMED_IN = {"env.reward_source": "0.3"}
"""The version of renames after 0.2."""
REMOVED_KEYS = {"algo.advantage_level": ("decision", "GAE always runs over every decision (0.1's advantage_level=decision)")}
"""Keys 0.2 dropped: the one value that still describes what runs, and what does."""
OLD_VALUES = {"agent.trim_padding": {"rollout": "minibatch", "true": "minibatch", "false": "none"}}
"""Values of 0.1 checkpoints and what computes the same function now, to ~1e-6 (0.1 ran ``rollout``
with ``algo.num_steps > 1`` as ``none``; the two agree to the same tolerance)."""


def reject_old_keys(overrides: list[str]) -> None:
    """A ConfigError naming the new key (or value) for an override of a renamed or removed one."""
    for override in overrides:
        target, has_value, value = override.partition("=")
        key = target.lstrip("+~")
        prefix = target[: len(target) - len(key)]
        if key in RENAMED_KEYS:
            new = f"{prefix}{RENAMED_KEYS[key]}" + (f"={value}" if has_value else "")
            raise ConfigError(f"{key} was renamed {RENAMED_KEYS[key]} in ppo-core {RENAMED_IN.get(key, '0.2')}; "
                              f"write {new}")
        if key in REMOVED_KEYS:
            raise ConfigError(f"{key} was removed in ppo-core 0.2: {REMOVED_KEYS[key][1]}")
        if value.lower() in OLD_VALUES.get(key, {}):
            raise ConfigError(f"{key}={value} was removed in ppo-core 0.2; {key}={OLD_VALUES[key][value.lower()]} "
                              "computes the same function (to ~1e-6)")


def migrate(values: dict[str, Any]) -> dict[str, Any]:
    """A config saved by ppo-core 0.1 (a checkpoint's or a summary's) in 0.2's keys; a removed setting
    whose value no longer describes any code path is a ConfigError naming the version."""
    values = {**values, **{group: dict(values[group]) for group in ("algo", "env", "agent")}}
    if "objective" not in values:  # 0.1 kept the objective's terms in the text env's settings
        values["objective"] = {"name": "rlhf" if values["env"].get("kind") == "text_bandit" else "none"}
    values["objective"] = dict(values["objective"])
    for old, new in RENAMED_KEYS.items():
        (group, key), (new_group, new_key) = old.split("."), new.split(".")
        if key in values[group]:
            old_value = values[group].pop(key)
            values[new_group].setdefault(new_key, old_value)
    for old, (kept, meaning) in REMOVED_KEYS.items():
        group, key = old.split(".")
        if key in values[group] and values[group].pop(key) != kept:
            raise ConfigError(f"this run was written by ppo-core 0.1 with {old}; 0.2 removed it ({meaning})")
    for old, mapping in OLD_VALUES.items():
        group, key = old.split(".")
        if str(values[group].get(key)).lower() in mapping:
            values[group][key] = mapping[str(values[group][key]).lower()]
    return values
