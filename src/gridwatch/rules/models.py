"""Typed rule models, validated from YAML."""

import itertools
import string
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from gridwatch.domain import Sensor, Severity

TITLE_FIELDS = frozenset({"sensor_id", "grid", "kind", "field", "value", "severity", "rule_id"})


class AppliesTo(BaseModel):
    """Which sensors a rule watches; every given criterion must match, empty means all."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kinds: frozenset[str] = frozenset()
    models: frozenset[str] = frozenset()
    sensors: frozenset[str] = frozenset()
    grids: frozenset[str] = frozenset()
    tags: dict[str, str] = Field(default_factory=dict)

    def matches(self, sensor: Sensor) -> bool:
        """True when the sensor meets every criterion given."""
        return (
            (not self.kinds or sensor.kind in self.kinds)
            and (not self.models or sensor.model in self.models)
            and (not self.sensors or sensor.id in self.sensors)
            and (not self.grids or sensor.grid in self.grids)
            and all(sensor.tags.get(key) == value for key, value in self.tags.items())
        )


class ThresholdCondition(BaseModel):
    """Value above (or below) per-severity thresholds, cleared only past a separate threshold."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: Literal["threshold"]
    field: str = Field(min_length=1)
    direction: Literal["above", "below"] = "above"
    levels: dict[Severity, float] = Field(min_length=1)
    clear: float

    @model_validator(mode="after")
    def _check_order(self) -> Self:
        ordered = [self.levels[s] for s in sorted(self.levels)]
        sign = 1 if self.direction == "above" else -1
        if any(sign * (b - a) <= 0 for a, b in itertools.pairwise(ordered)):
            raise ValueError(
                f"levels must grow more severe in the '{self.direction}' direction: {ordered}"
            )
        # Hysteresis: the clear point must lie on the safe side of the lowest level,
        # otherwise a value between the two would raise and clear on alternate readings.
        if sign * (ordered[0] - self.clear) <= 0:
            raise ValueError(
                f"clear ({self.clear}) must be on the safe side of the lowest level "
                f"({ordered[0]}) for direction '{self.direction}'"
            )
        return self


class Rule(BaseModel):
    """One alarm rule: what it watches, when it fires, and the case it opens."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")
    title: str = Field(min_length=1)
    category: str = Field(min_length=1)
    applies_to: AppliesTo = AppliesTo()
    condition: ThresholdCondition
    enabled: bool = True

    @model_validator(mode="after")
    def _check_title(self) -> Self:
        names = {name for _, name, _, _ in string.Formatter().parse(self.title) if name}
        unknown = names - TITLE_FIELDS
        if unknown:
            raise ValueError(
                f"title uses unknown placeholders {sorted(unknown)}; known: {sorted(TITLE_FIELDS)}"
            )
        return self
