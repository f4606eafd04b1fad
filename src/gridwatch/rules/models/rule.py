"""The rule, what it applies to, and the pack-level settings around rules."""

import string
from datetime import datetime
from typing import Self

from pydantic import AwareDatetime, Field, model_validator

from gridwatch.domain import Sensor, Severity
from gridwatch.rules.models.common import Model, Predicate
from gridwatch.rules.models.conditions import HEALTH_TYPES, Condition

TITLE_FIELDS = frozenset(
    {"sensor_id", "grid", "kind", "field", "value", "severity", "rule_id", "window", "why"}
)
MAINTENANCE_PREFIX = "maintenance:"


class AppliesTo(Model):
    """Which sensors a rule watches; every given criterion must match, empty means all."""

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


class Escalation(Model):
    """Raise the alarm's severity by `by` steps while `condition` holds (wind on a billboard)."""

    condition: Condition
    by: int = Field(default=1, ge=1, le=3)


class Inhibition(Model):
    """While this rule's alarm is active at `min_severity` or above, the listed rules on the
    same sensor raise nothing (Alertmanager-style inhibition)."""

    rules: frozenset[str] = Field(min_length=1)
    min_severity: Severity = Severity.BLUE


class Rule(Model):
    """One alarm rule: what it watches, when it fires, and the case it opens."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")
    title: str = Field(min_length=1)
    category: str = Field(min_length=1)
    description: str = ""
    applies_to: AppliesTo = AppliesTo()
    condition: Condition
    enabled: bool = True
    # A device-health rule: its alarms open maintenance (维保) cases, not city cases.
    maintenance: bool = False
    escalate_when: Escalation | None = None
    inhibits: Inhibition | None = None
    # No alarm while the sensor's last reported values match (an elevator in inspection).
    suppress_when: Predicate | None = None
    # Rules of one group fold into one case per sensor: one phenomenon (a storm at a gauge)
    # is one case that escalates, whichever of its signals fired first.
    case_group: str | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")

    @model_validator(mode="after")
    def _check_rule(self) -> Self:
        names = {name for _, name, _, _ in string.Formatter().parse(self.title) if name}
        unknown = names - TITLE_FIELDS
        if unknown:
            raise ValueError(
                f"title uses unknown placeholders {sorted(unknown)}; known: {sorted(TITLE_FIELDS)}"
            )
        if self.condition.type in HEALTH_TYPES and not self.maintenance:
            raise ValueError(f"a {self.condition.type} rule must be a maintenance rule")
        if self.maintenance != self.category.startswith(MAINTENANCE_PREFIX):
            raise ValueError(
                f"maintenance rules, and only they, use a '{MAINTENANCE_PREFIX}…' category"
            )
        if self.inhibits is not None and self.id in self.inhibits.rules:
            raise ValueError("a rule cannot inhibit itself")
        return self


class MaintenanceWindow(Model):
    """Scheduled work: the matching sensors raise nothing between start and end."""

    sensors: frozenset[str] = frozenset()
    tags: dict[str, str] = Field(default_factory=dict)
    rules: frozenset[str] = frozenset()  # empty: every rule
    start: AwareDatetime
    end: AwareDatetime
    note: str = ""

    @model_validator(mode="after")
    def _check_window(self) -> Self:
        if self.end <= self.start:
            raise ValueError("end must be after start")
        if not self.sensors and not self.tags:
            raise ValueError("name 'sensors' or 'tags': a window over every sensor is an outage")
        return self

    def covers(self, sensor: Sensor, rule_id: str, at: datetime) -> bool:
        """True when this window silences `rule_id` on `sensor` at `at`."""
        return (
            self.start <= at < self.end
            and (not self.rules or rule_id in self.rules)
            and (not self.sensors or sensor.id in self.sensors)
            and all(sensor.tags.get(key) == value for key, value in self.tags.items())
        )
