"""Valid values declared next to each schema field, checked in one place before anything is built.

    gamma: float = setting(0.99, ge=0, le=1)
    surrogate: str = setting("clip", choices=("clip", "kl_penalty"))

``validate(config)`` walks a ``TrainConfig`` (or any schema) and raises one ``ConfigError`` naming the
key, the value and what is expected. NaN fails every range; ``None`` passes where the field allows it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ppo_core.errors import ConfigError


@dataclass(frozen=True)
class Rule:
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    choices: tuple[Any, ...] | None = None

    def expected(self) -> str:
        if self.choices is not None:
            return "one of " + ", ".join(map(str, self.choices))
        bounds = [f"{op} {bound:g}" for op, bound in ((">=", self.ge), (">", self.gt), ("<=", self.le), ("<", self.lt))
                  if bound is not None]
        return " and ".join(bounds) if bounds else "a finite number"

    def holds(self, value: Any) -> bool:
        if self.choices is not None:
            return value in self.choices
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return False
        return ((self.ge is None or value >= self.ge) and (self.gt is None or value > self.gt)
                and (self.le is None or value <= self.le) and (self.lt is None or value < self.lt))


def setting(default: Any = dataclasses.MISSING, *, factory: Any = dataclasses.MISSING, ge: float | None = None,
            gt: float | None = None, le: float | None = None, lt: float | None = None,
            choices: Sequence[Any] | None = None) -> Any:
    """A dataclass field whose values must satisfy the given bounds or be one of ``choices``
    (each element of a list field is checked)."""
    rule = Rule(ge, gt, le, lt, tuple(choices) if choices is not None else None)
    if factory is not dataclasses.MISSING:
        return field(default_factory=factory, metadata={"rule": rule})
    return field(default=default, metadata={"rule": rule})


def violations(config: Any, prefix: str = "") -> list[str]:
    """Every field of ``config`` (and of the schemas it holds) outside its declared rule."""
    problems = []
    for spec in dataclasses.fields(config):
        value, key = getattr(config, spec.name), f"{prefix}{spec.name}"
        if dataclasses.is_dataclass(value):
            problems += violations(value, f"{key}.")
            continue
        rule = spec.metadata.get("rule")
        if rule is None or value is None:
            continue
        for item in value if isinstance(value, (list, tuple)) else [value]:
            if not rule.holds(item):
                problems.append(f"{key}={value!r} is invalid; expected {rule.expected()}")
                break
    return problems


def validate(config: Any, prefix: str = "") -> None:
    """A ConfigError listing every setting of ``config`` outside its declared valid values."""
    problems = violations(config, prefix)
    if problems:
        raise ConfigError("; ".join(problems))
