"""What the rules engine tells the case domain."""

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from gridwatch.domain.readings import Value
from gridwatch.domain.severity import Severity


class AlarmTransition(StrEnum):
    """How an alarm's state changed with the reading that was evaluated."""

    RAISED = "raised"
    ESCALATED = "escalated"
    REPEATED = "repeated"
    CLEARED = "cleared"


@dataclass(frozen=True, slots=True)
class AlarmEvent:
    """An alarm change for one (sensor, rule) fingerprint, with the values that caused it."""

    sensor_id: str
    rule_id: str
    transition: AlarmTransition
    severity: Severity
    category: str
    title: str
    at: datetime
    values: dict[str, Value] = field(default_factory=dict)
    # A device-health alarm (offline, stuck, battery, clock): a maintenance case, not a city one.
    maintenance: bool = False
    # The window the tripping values were aggregated over ("3h"), if any, and why in words,
    # so a case shows what raised it: "rain_mm sum over 3h 104.2 ≥ 100 (red)".
    window: str | None = None
    why: str = ""

    @property
    def fingerprint(self) -> str:
        """One open case per (sensor, rule): this is its key."""
        return f"{self.sensor_id}/{self.rule_id}"
